"""When a Prefect task may retry: only on transient failures (a busy database, a network hiccup, a lock timeout).

Bad input, bad configuration and a repository or store in a state that will not change by itself (a DVC cache and
remote that lost the data, a failed stage) fail the same way every time; retrying them only repeats the error and
delays the one line the user needs, so those are never retried. An unreachable DVC remote or server is transient.
"""

from __future__ import annotations

from typing import Any

from tasks.core.config import ConfigError
from tasks.core.data import DataError
from tasks.versioning import RemoteUnreachableError, VersioningError

TRANSIENT: tuple[type[BaseException], ...] = (RemoteUnreachableError, ConnectionError, TimeoutError)
DETERMINISTIC: tuple[type[BaseException], ...] = (
    ConfigError, DataError, ValueError, TypeError, KeyError, FileNotFoundError, NotADirectoryError, PermissionError,
    VersioningError,  # RemoteConfigError, StageFailedError, a lost cache; RemoteUnreachableError is TRANSIENT
)  # fmt: skip


def is_transient(exc: BaseException | None) -> bool:
    if exc is None:
        return False
    return isinstance(exc, TRANSIENT) or not isinstance(exc, DETERMINISTIC)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry unless the task failed with a deterministic error."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # noqa: BLE001 - a result that cannot be read: treat the failure as transient
        exc = err
    return is_transient(exc if isinstance(exc, BaseException) else None)
