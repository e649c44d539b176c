"""DVC remotes: which remote an operation uses, its failures typed (misconfigured or unreachable), and `push` /
`pull` of the outputs `dvc.lock` records."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.versioning.errors import RemoteConfigError, RemoteUnreachableError, VersioningError
from tasks.versioning.lock import read_lock_stages
from tasks.versioning.repo import open_repo

if TYPE_CHECKING:
    from dvc.repo import Repo

log = logging.getLogger(__package__)  # "tasks.versioning", as before the package was split


def default_remote(repo: Repo) -> tuple[str, str] | None:
    """(name, url) of the repository's default remote; None when it has none."""
    name = repo.config["core"].get("remote")
    return _named_remote(repo, str(name)) if name else None


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _named_remote(repo: Repo, name: str | None) -> tuple[str, str] | None:
    """(name, url) of remote `name`, or of the default remote when `name` is None."""
    if name is None:
        return default_remote(repo)
    return name, str(repo.config["remote"].get(name, {}).get("url", "?"))


def remote_failure(
    exc: BaseException, root: Path, remote: tuple[str, str] | None, action: str
) -> VersioningError | None:
    """A remote failure somewhere in `exc`'s chain as `RemoteConfigError` / `RemoteUnreachableError`, else None.

    Misconfigured: DVC config errors (no such remote), a missing plugin (`dvc-ssh` ...), a refused login or host
    key. Unreachable: refused, reset or timed-out connections and lost SSH sessions.
    """
    from dvc.config import ConfigError as DvcConfigError
    from dvc.fs import RemoteMissingDepsError

    try:
        from asyncssh import DisconnectError, HostKeyNotVerifiable, IllegalUserName, KeyImportError, PermissionDenied
    except ImportError:  # no SSH support installed: no SSH errors to tell apart
        refused: tuple[type[BaseException], ...] = ()
        lost: tuple[type[BaseException], ...] = ()
    else:
        refused, lost = (HostKeyNotVerifiable, IllegalUserName, KeyImportError, PermissionDenied), (DisconnectError,)
    where = f"DVC remote '{remote[0]}' ({remote[1]})" if remote else "the DVC remote"
    for error in _exception_chain(exc):
        text = f"{root}: {action} failed: {where}: {type(error).__name__}: {error}"
        if isinstance(error, (DvcConfigError, RemoteMissingDepsError, PermissionError, *refused)):
            return RemoteConfigError(f"{text} (check the remote's URL, user, keyfile and the host's key)")
        if isinstance(error, (ConnectionError, TimeoutError, socket.gaierror, *lost)):
            return RemoteUnreachableError(text)
    return None


def _remote_error(root: Path, exc: Exception) -> VersioningError:
    return VersioningError(
        f"{root}: {exc}. Configure a remote: tasks.versioning.ensure_dvc_repo(root) or `dvc remote add -d NAME URL`"
    )


@contextlib.contextmanager
def _remote_errors(root: Path, repo: Any, remote: str | None, action: str) -> Iterator[None]:
    """Remote failures of `action` (dvc push / dvc pull) as qaflow's typed errors: misconfigured (not retried),
    unreachable (retried), or any other DVC failure as one VersioningError line."""
    from dvc.config import NoRemoteError
    from dvc.exceptions import DvcException

    try:
        yield
    except NoRemoteError as exc:
        raise _remote_error(root, exc) from exc
    except Exception as exc:
        if failure := remote_failure(exc, root, _named_remote(repo, remote), action):
            raise failure from exc
        if isinstance(exc, DvcException):
            raise VersioningError(f"{root}: {action} failed: {exc}") from exc
        raise


def push(root: Path, remote: str | None = None) -> int:
    """Push the cached outputs of the pipeline to `remote` (default: the repository's default); files pushed."""
    root = root.resolve()
    read_lock_stages(root)
    with open_repo(root) as repo, _remote_errors(root, repo, remote, "dvc push"):
        count = int(repo.push(remote=remote))
    log.info("pushed %d file(s) to %s", count, remote or "the default remote")
    return count


def pull(root: Path, remote: str | None = None) -> int:
    """Fetch the outputs recorded in dvc.lock from `remote` and check them out; returns the files fetched."""
    root = root.resolve()
    read_lock_stages(root)
    with open_repo(root) as repo, _remote_errors(root, repo, remote, "dvc pull"):
        result = repo.pull(remote=remote)
    fetched = int(result.get("stats", {}).get("fetched", 0))
    log.info("pulled %d file(s) from %s", fetched, remote or "the default remote")
    return fetched
