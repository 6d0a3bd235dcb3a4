"""The server's log formatter: the date and time it caches per second read exactly as logging's
own, and control characters from clients are escaped."""
from __future__ import annotations

import logging

from sagestore.cli import EscapingFormatter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def record_at(created: float) -> logging.LogRecord:
    record = logging.LogRecord("sagestore", logging.INFO, __file__, 1, '%s "%s %s"', ("127.0.0.1", "GET", "/a\x1b[2J"),
                               None)
    record.created, record.msecs = created, int((created - int(created)) * 1000) + 0.0
    return record


def test_cached_time_stamps_read_as_loggings_own_across_seconds():
    ours, reference = EscapingFormatter(FORMAT), logging.Formatter(FORMAT)
    base = 1_790_000_000.0
    for offset in (0.001, 0.5, 0.999, 1.0, 1.25, 0.75, 3600.5, 86_400.0, 86_399.999):  # forwards and back
        record = record_at(base + offset)
        assert ours.formatTime(record) == reference.formatTime(record), offset
        assert ours.format(record) == reference.format(record).replace("\x1b", "\\x1b"), offset
