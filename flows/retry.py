"""When a Prefect task may retry: only on transient failures (a busy database, a network hiccup, a lock timeout).

Bad input and bad configuration fail the same way every time; retrying them only repeats the error and delays
the one line the user needs, so those are never retried.
"""

from __future__ import annotations

from typing import Any

from tasks.core.config import ConfigError
from tasks.core.data import DataError
from tasks.versioning import RemoteConfigError

DETERMINISTIC: tuple[type[BaseException], ...] = (
    ConfigError, DataError, ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError, PermissionError,
    RemoteConfigError,
)  # fmt: skip


def is_transient(exc: BaseException | None) -> bool:
    return exc is not None and not isinstance(exc, DETERMINISTIC)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry unless the task failed with a deterministic error."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # noqa: BLE001 - a result that cannot be read: treat the failure as transient
        exc = err
    return is_transient(exc if isinstance(exc, BaseException) else None)
