"""Numbers that clients send in paths, query strings and headers: plain ASCII decimal digits only.

`str.isdigit()` alone is not a check: it accepts superscripts ('²') that `int()` then refuses, and
`int()` accepts other scripts' digits and underscores. Every such number is read through here.
"""
from __future__ import annotations

import re

from .errors import BadRequest

# Every number a client sends fits in 20 decimal digits (offsets, lengths: < 2**64); int() of a
# longer one costs quadratic time and, past 4300 digits, raises instead of answering.
MAX_DIGITS = 20
_DECIMAL = re.compile(r"[0-9]+")


def is_decimal(text: object, max_digits: int = MAX_DIGITS) -> bool:
    """Whether `text` is 1 to `max_digits` ASCII digits, nothing else."""
    return isinstance(text, str) and len(text) <= max_digits and _DECIMAL.fullmatch(text) is not None


def decimal_int(text: str, name: str, max_digits: int = MAX_DIGITS) -> int:
    """A plain non-negative decimal integer of at most `max_digits` digits, or 400 naming `name`."""
    if not is_decimal(text, max_digits):
        raise BadRequest(f"{name} must be a non-negative integer of at most {max_digits} digits")
    return int(text)
