"""The console qaflow writes to: log records carry no ANSI colour codes where it is not a terminal.

transformers styles the title of its LOAD REPORT with ANSI codes whatever the output is (its table checks for a
terminal, the title does not), and offers no setting to turn that off. Instead of patching transformers,
`plain_log_records` installs a log-record factory (the standard library's hook for this) that removes the codes
from every record's message where stderr is not a terminal or NO_COLOR is set (https://no-color.org); a Prefect
flow run's log, read in a browser, is never a terminal.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from typing import Any, TextIO

from tasks.core.progress import progress_mode

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


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(run)s%(message)s"


class RunNameFormatter(logging.Formatter):
    """qaflow's console line, where Prefect's task and flow run records name their run: Prefect puts the names on
    its records (`task_run_name`, `flow_run_name`) and prints them only with its own console handler, which it does
    not install when the root logger is configured already (as `qaflow` does)."""

    def __init__(self, fmt: str = LOG_FORMAT) -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        task, flow = getattr(record, "task_run_name", None), getattr(record, "flow_run_name", None)
        record.run = f"task run {task!r}: " if task else f"flow run {flow!r}: " if flow else ""
        return super().format(record)


def quiet_library_bars() -> None:
    """No carriage-return bars from the Hugging Face libraries: the environment for those not imported yet (they
    read it on import), their switches for those already imported (the CLI's flag parser imports transformers)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:  # its `utils` loads lazily: import it rather than read an attribute
        importlib.import_module("huggingface_hub.utils").disable_progress_bars()
    if "transformers.utils.logging" in sys.modules:
        sys.modules["transformers.utils.logging"].disable_progress_bar()


def console_logging(level: int) -> None:
    """The root logger's one console handler (stderr), with `RunNameFormatter` and no ANSI codes in a pipe; where
    progress is not a bar (`QAFLOW_PROGRESS`, default: not a terminal), no carriage-return bars from the Hugging Face
    libraries either (`quiet_library_bars`)."""
    if progress_mode() != "bar":
        quiet_library_bars()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RunNameFormatter())
    logging.basicConfig(level=level, handlers=[handler])
    plain_log_records()
