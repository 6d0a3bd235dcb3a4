"""What the client prints of a server's words: terminal control sequences removed.

A server (or whoever wrote the keys, names and error texts it relays) must not be able to move
the cursor, retitle the window, hide text or plant a hyperlink in the user's terminal. Escape
sequences go whole (CSI, OSC, DCS, APC, PM, SOS and two-character ones), then every remaining C0
and C1 control character and DEL, and the bidirectional overrides that reorder what is shown.
Newline and tab stay only where a caller allows multi-line text.
"""
from __future__ import annotations

import re

# ESC [ ... final byte; ESC ] / P / X / ^ / _ ... up to BEL or ST (ESC \); the 8-bit CSI (0x9b) and
# the 8-bit OSC/DCS/SOS/PM/APC openers with their strings; ESC followed by one byte
_SEQUENCES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d\x9e\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?")
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"[\t\n\r\u2028\u2029]+")


def safe_text(text: object, *, multiline: bool = False) -> str:
    """`text` without escape sequences or control characters; one line unless `multiline`."""
    cleaned = _CONTROLS.sub("", _SEQUENCES.sub("", str(text)))
    return cleaned if multiline else _LINE_BREAKS.sub(" ", cleaned)
