"""The console qaflow writes to: log records carry no ANSI colour codes where it is not a terminal.

transformers styles the title of its LOAD REPORT with ANSI codes whatever the output is (its table checks for a
terminal, the title does not), and offers no setting to turn that off. Instead of patching transformers,
`plain_log_records` installs a log-record factory (the standard library's hook for this) that removes the codes
from every record's message where stderr is not a terminal or NO_COLOR is set (https://no-color.org); a Prefect
flow run's log, read in a browser, is never a terminal.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Any, TextIO

ANSI_CODE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def wants_plain(stream: TextIO | None = None) -> bool:
    """No colour: NO_COLOR is set, or the stream (stderr) is not a terminal."""
    stream = stream if stream is not None else sys.stderr
    return bool(os.environ.get("NO_COLOR")) or stream is None or not stream.isatty()


def plain_log_records(*, always: bool = False) -> bool:
    """Strip ANSI codes from every log record's message from now on (where `wants_plain()`, or `always`); whether
    it is on. Installed once per process."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "strips_ansi", False):
        return True
    if not (always or wants_plain()):
        return False

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if isinstance(record.msg, str) and "\x1b[" in record.msg:
            record.msg = ANSI_CODE.sub("", record.msg)
        return record

    factory.strips_ansi = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
    return True
