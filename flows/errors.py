"""The one error path of the `qaflow` command: which failures are the user's to fix and the one line each gets.

The user's: bad input and parameters (ValueError: ConfigError, DataError, ...), OS errors (a missing, unreadable or
misplaced file, a full disk, a read-only mount: OSError), failed steps (RuntimeError), and the errors of the
libraries that read the user's stores and files (the tracking store, sqlite, YAML, DVC). Each ends the command with
exit 2 and one stderr line naming the file or parameter; Ctrl-C ends it with 130 and SIGTERM (through Prefect) with
143. Anything else is a bug and keeps its traceback, as does everything with `-v` or QAFLOW_DEBUG=1.
"""

from __future__ import annotations

import logging
import os
import sys

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM

BASE_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, RuntimeError, KeyError)
# errors of libraries a command imports late, as (module, class): matched only once their module is loaded, so that
# recognising them never imports them
LIBRARY_ERRORS = (
    ("mlflow.exceptions", "MlflowException"),  # the tracking store: unreachable, corrupt, a missing model
    ("sqlite3", "Error"),
    ("sqlalchemy.exc", "SQLAlchemyError"),
    ("yaml", "YAMLError"),
    ("ruamel.yaml.error", "YAMLError"),
    ("dvc.exceptions", "DvcException"),
    ("safetensors", "SafetensorError"),  # e.g. weights that could not be written (a full disk)
)
TERMINATION_ERRORS = (("prefect.exceptions", "TerminationSignal"),)  # Prefect's SIGTERM, raised in a flow run


def _loaded(names: tuple[tuple[str, str], ...]) -> tuple[type[BaseException], ...]:
    found = (getattr(sys.modules.get(module), name, None) for module, name in names)
    return tuple(cls for cls in found if isinstance(cls, type) and issubclass(cls, BaseException))


def is_user_error(exc: BaseException) -> bool:
    return isinstance(exc, BASE_ERRORS + _loaded(LIBRARY_ERRORS))


def is_termination(exc: BaseException) -> bool:
    return isinstance(exc, _loaded(TERMINATION_ERRORS))


def debugging(verbose: bool = False) -> bool:
    """Full tracebacks wanted: `-v` or QAFLOW_DEBUG=1."""
    return verbose or os.environ.get("QAFLOW_DEBUG", "") not in ("", "0")


def error_line(exc: BaseException) -> str:
    """The error as one line: an OS error as `FILE: what happened`, a store error as its message."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
        if exc.filename2 is not None:
            text += f" (and {exc.filename2})"
    elif isinstance(exc, KeyError):
        text = f"missing key {exc}"
    else:
        text = str(getattr(exc, "message", None) or exc) or type(exc).__name__
    return " ".join(text.split())


def _quiet(exc: BaseException | None) -> bool:
    return exc is not None and (is_user_error(exc) or isinstance(exc, KeyboardInterrupt) or is_termination(exc))


class QuietFormatter(logging.Formatter):
    """Formats a log record of a user error without its traceback, through the `inner` formatter (Prefect logs a
    failed task or flow run with its traceback before the command prints its one line; `-v` keeps them). The
    record itself is left as it was, so other handlers (Prefect's API log) still get the traceback."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        if not _quiet(record.exc_info[1] if record.exc_info else None):
            return self.inner.format(record)
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            return self.inner.format(record)
        finally:
            record.exc_info, record.exc_text = saved


def quiet_console_tracebacks(logger_prefix: str = "prefect") -> None:
    """Put `QuietFormatter` on the terminal handlers of the root logger and of the loggers under `logger_prefix`
    (Prefect's console handlers, set up when Prefect is imported)."""
    loggers = [logging.getLogger()] + [
        logger for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith(logger_prefix) and isinstance(logger, logging.Logger)
    ]  # fmt: skip
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler.formatter, QuietFormatter):
                handler.setFormatter(QuietFormatter(handler.formatter or logging.Formatter()))
