"""Versioned data stages: set up DVC, reproduce `dvc.yaml`, read the data version from `dvc.lock`, push and pull.

Everything goes through DVC's Python API (`dvc.repo.Repo`). The data version is read from `dvc.lock` alone, so
it is cheap and needs no DVC import: one short id over the output hashes, recorded on every training run and
used as a cache key. `reproduce` pulls a stage's outputs from the default remote (local folder, SSH, S3 ...)
when only they are missing, as `dvc repro --pull` does, so a fresh clone downloads a data version instead of
recomputing it. Remote failures are typed: `RemoteConfigError` (the same every time) or `RemoteUnreachableError`.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
import os
import re
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import chdir, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.core.safe_yaml import YAMLInputError, read_yaml

if TYPE_CHECKING:
    from dvc.repo import Repo

log = logging.getLogger(__name__)

REMOTE_NAME = "qaflow-local"
DEFAULT_REMOTE_DIR = ".dvcstore"  # inside the checkout, git-ignored (/.dvcstore/ in .gitignore)
LOCK_FILE = "dvc.lock"
PROJECT_FILE = "dvc.yaml"
TAIL_LINES = 25


class VersioningError(RuntimeError):
    """A DVC repository in a state the asked operation cannot handle; the message says what to do."""


class RemoteConfigError(VersioningError):
    """The DVC remote is misconfigured (unknown name, bad URL, missing plugin, login or host key refused)."""


class RemoteUnreachableError(VersioningError):
    """The DVC remote could not be reached (refused, reset, timed out): transient, worth a retry."""


class StageFailedError(VersioningError):
    """A stage command failed: carries the stage name and the last lines of its output."""

    def __init__(self, stage: str, reason: str, tail: str) -> None:
        self.stage, self.reason, self.tail = stage, reason, tail
        super().__init__(f"stage '{stage}' failed: {reason}\n--- last lines of its output ---\n{tail}".rstrip())


@dataclass(frozen=True)
class StageRun:
    """What one `reproduce` did: stages whose command ran, restored from DVC's run cache, pulled from the remote
    (only their outputs were missing) or left unchanged."""

    ran: tuple[str, ...]
    restored: tuple[str, ...]
    skipped: tuple[str, ...]
    reasons: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    pulled: tuple[str, ...] = ()

    @property
    def changed(self) -> tuple[str, ...]:
        return self.ran + self.restored


@dataclass(frozen=True)
class StageVersion:
    """One stage in `dvc.lock`: output and dependency hashes (md5, `.dir` for directories) and its params."""

    name: str
    outs: dict[str, str]
    deps: dict[str, str]
    params: dict[str, Any]  # flattened: "features.doc_stride" -> 128


@dataclass(frozen=True)
class DataVersion:
    """The data version of a reproduced pipeline: per-stage hashes and params plus one short combined id."""

    id: str
    stages: dict[str, StageVersion]

    @property
    def outs(self) -> dict[str, str]:
        return {path: md5 for stage in self.stages.values() for path, md5 in stage.outs.items()}

    def as_tags(self) -> dict[str, str]:
        """Flat string tags for a tracking run: `data_version` plus `dvc.<out path>` -> md5."""
        return {"data_version": self.id, **{f"dvc.{path}": md5 for path, md5 in sorted(self.outs.items())}}


# ------------------------------------------------------------------------------------------------ setup


def _git_root(root: Path) -> Path | None:
    for directory in (root, *root.parents):
        if (directory / ".git").exists():
            return directory
    return None


def ensure_dvc_repo(root: Path, remote_dir: Path | None = None) -> None:
    """Initialise DVC in `root` if needed (git or not) and configure the default local remote `qaflow-local`.

    Never touches the git index: new files (.dvc/config, .dvc/.gitignore, .dvcignore) are left for you to commit.
    `remote_dir` None keeps an existing `qaflow-local` remote, or else adds `<root>/.dvcstore` (stored relative
    to the repository so the config works on any machine). Analytics are disabled in the repository config.
    """
    from dvc.repo import Repo

    root = root.resolve()
    if not root.is_dir():
        raise VersioningError(f"{root}: not a directory")
    if not (root / Repo.DVC_DIR).is_dir():
        # no_scm init, then switch git on: `dvc init` in a git repo would `git add` its files.
        Repo.init(str(root), no_scm=True).close()
        log.info("initialised DVC in %s", root)
    git = _git_root(root)
    with Repo(str(root), uninitialized=True) as repo:
        current = repo.config.load_one("repo")
        wanted = _wanted_config(current, root, remote_dir, git is not None)
        if _canonical(wanted) != _canonical(current):  # a rewrite drops the file's comments: only on change
            with repo.config.edit() as conf:
                conf.clear()
                conf.update(wanted)
    if git is not None and git != root:
        log.warning("%s is inside the git repository %s: DVC treats it as a sub-repository", root, git)
    with Repo(str(root)):  # opening with git writes .dvc/.gitignore (cache, tmp, config.local)
        pass


def _canonical(conf: dict[str, Any]) -> dict[str, str]:
    """Config values as DVC writes them (configobj keeps strings: False and "false" are the same)."""
    return {k: str(v).lower() for k, v in _flatten(conf).items() if v != {}}


def _wanted_config(current: dict[str, Any], root: Path, remote_dir: Path | None, git: bool) -> dict[str, Any]:
    from dvc.config_schema import RelPath

    conf = copy.deepcopy(current)
    core = conf.setdefault("core", {})
    core["analytics"] = False
    if git:
        core.pop("no_scm", None)
    else:
        core["no_scm"] = True
    remotes = conf.setdefault("remote", {})
    if remote_dir is not None or REMOTE_NAME not in remotes:
        target = Path(remote_dir).resolve() if remote_dir is not None else root / DEFAULT_REMOTE_DIR
        inside = target == root or root in target.parents  # relative to .dvc/: portable across machines
        remotes[REMOTE_NAME] = {**remotes.get(REMOTE_NAME, {}), "url": RelPath(target) if inside else str(target)}
        if remote_dir is not None or not core.get("remote"):
            core["remote"] = REMOTE_NAME
    return conf


@contextmanager
def _quiet_ssh() -> Iterator[None]:
    """asyncssh (DVC's SSH remote) logs every connection and file at INFO: WARNING and up, unless set by the user."""
    ssh_logger = logging.getLogger("asyncssh")
    if ssh_logger.level != logging.NOTSET:
        yield
        return
    ssh_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ssh_logger.setLevel(logging.NOTSET)


DVC_LOGGERS = ("dvc", "dvc_objects", "dvc_data")  # `dvc.logger.setup` gives each DVC's console handlers
MISSING_CACHE = "Some of the cache files do not exist neither locally nor on remote"


@contextmanager
def _dvc_console() -> Iterator[None]:
    """Each DVC line printed once: DVC's loggers print through their own console handlers, so for the block they do
    not also propagate to the root logger (whose handler `qaflow` set up would print every line a second time)."""
    loggers = [logging.getLogger(name) for name in DVC_LOGGERS]
    before = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in zip(loggers, before, strict=True):
            logger.propagate = propagate


class _MissingCacheNote(logging.Filter):
    """DVC warns "Some of the cache files do not exist neither locally nor on remote" with every missing hash, once
    per fetch it tries (several per `repro --pull`). While reproducing, a missing output only means that its stage
    runs instead of being pulled (a fresh clone, or a remote that never got this version): said once, in one line."""

    def __init__(self, remote: str) -> None:
        super().__init__()
        self.remote, self.said = remote, False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(MISSING_CACHE):
            return True
        if self.said:
            return False
        self.said = True
        listed = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        count = len([line for line in listed.splitlines() if line.strip()])
        record.msg = (
            f"DVC: {count or 'some'} cached output file(s) are neither in the local cache nor on {self.remote}: "
            "the stages that made them run again instead of pulling them (expected on a fresh clone, or when the "
            "remote never received this data version)"
        )
        record.args = ()
        return True


@contextmanager
def _missing_cache_noted(remote: str) -> Iterator[None]:
    """`_MissingCacheNote` on DVC's console handlers for the block."""
    note = _MissingCacheNote(remote)
    handlers = {h for name in DVC_LOGGERS for h in logging.getLogger(name).handlers}
    for handler in handlers:
        handler.addFilter(note)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(note)


@contextmanager
def _open(root: Path) -> Iterator[Repo]:
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    if not (root / Repo.DVC_DIR).is_dir():
        raise VersioningError(
            f"{root}: not a DVC repository (no .dvc/); run `dvc init` or tasks.versioning.ensure_dvc_repo"
        )
    with chdir(root), _quiet_ssh(), _dvc_console():  # DVC: targets and stage names relative to the working dir
        try:
            repo = Repo(str(root))
        except NotDvcRepoError as exc:
            raise VersioningError(f"{root}: not a DVC repository ({exc})") from exc
        try:
            yield repo
        finally:
            repo.close()


# ------------------------------------------------------------------------------------------------ reproduce


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(_flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _within(flat: dict[str, Any], keys: dict[str, Any]) -> dict[str, Any]:
    """The flattened entries at or under the given (section or dotted) keys."""
    return {k: v for k, v in flat.items() if any(k == key or k.startswith(f"{key}.") for key in keys)}


def _params_reasons(locked: dict[str, Any], current: dict[str, Any]) -> list[str]:
    reasons = []
    for key in sorted(set(locked) | set(current)):
        if key not in current:
            reasons.append(f"param {key} removed")
        elif key not in locked:
            reasons.append(f"param {key} added ({current[key]!r})")
        elif locked[key] != current[key]:
            reasons.append(f"param {key}: {locked[key]!r} -> {current[key]!r}")
    return reasons


def _describe(root: Path, stage: str, changes: list[Any], lock: dict[str, Any]) -> list[str]:
    """Human reasons for one entry of `repo.status()`, with per-key param diffs against dvc.lock."""
    reasons: list[str] = []
    for change in changes:
        if isinstance(change, str):  # e.g. "changed command", "always changed"
            reasons.append(change)
            continue
        for kind, paths in change.items():
            for path, state in paths.items():
                if isinstance(state, dict):  # params file: {section or key: new|modified|deleted}
                    locked = _within(_flatten(lock.get(stage, {}).get("params", {}).get(path, {})), state)
                    current = _within(_flatten(_read_yaml(root / path) or {}), state)
                    reasons.extend(_params_reasons(locked, current) or [f"params {path}: {state}"])
                else:
                    reasons.append(f"{kind.replace('changed ', '')} {path} {state}")
    return reasons


def changed_stages(root: Path) -> dict[str, list[str]]:
    """Stages `dvc repro` would run (or restore), each with human-readable reasons; {} when up to date."""
    root = root.resolve()
    with _open(root) as repo:
        status = repo.status()
    lock = _lock_or_empty(root)
    return {name: _describe(root, name, changes, lock) for name, changes in status.items()}


class _StageEvents(logging.Handler):
    """Collects DVC's "Running stage" / "is cached" / "Pulling data" log records to tell what each stage did."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.running: list[str] = []
        self.restored: list[str] = []
        self.pulling: list[str] = []
        self.not_pulled: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg, args = str(record.msg), record.args
        if not isinstance(args, tuple) or not args:
            return
        name = str(getattr(args[0], "addressing", args[0]))  # the pull messages carry the Stage itself
        if msg.startswith("Running stage"):
            self.running.append(name)
        elif "is cached - skipping run" in msg:
            self.restored.append(name)
        elif msg.startswith("Pulling data for"):
            self.pulling.append(name)
        elif msg.startswith("Unable to pull data for"):
            self.not_pulled.append(name)


@contextmanager
def _dvc_events() -> Iterator[_StageEvents]:
    dvc_logger = logging.getLogger("dvc")
    handler, level = _StageEvents(), dvc_logger.level
    dvc_logger.addHandler(handler)
    if dvc_logger.getEffectiveLevel() > logging.INFO:
        dvc_logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        dvc_logger.removeHandler(handler)
        dvc_logger.setLevel(level)


class _Tail:
    """The last bytes written to a set of file descriptors (thread-safe ring of chunks)."""

    def __init__(self, limit: int = 64 * 1024) -> None:
        self.chunks: deque[bytes] = deque()
        self.size, self.limit, self.lock = 0, limit, threading.Lock()

    def add(self, chunk: bytes) -> None:
        with self.lock:
            self.chunks.append(chunk)
            self.size += len(chunk)
            while self.size > self.limit and len(self.chunks) > 1:
                self.size -= len(self.chunks.popleft())

    def text(self, lines: int = TAIL_LINES) -> str:
        with self.lock:
            data = b"".join(self.chunks)
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _pump(read_fd: int, write_fd: int, tail: _Tail) -> None:
    while chunk := os.read(read_fd, 65536):
        tail.add(chunk)
        with suppress(OSError):
            os.write(write_fd, chunk)
    os.close(read_fd)


def _flush(stream: Any) -> None:
    with suppress(AttributeError, OSError, ValueError):
        stream.flush()


@contextmanager
def _tee_output() -> Iterator[_Tail]:
    """Merge stdout and stderr (descriptors 1 and 2, so child processes too) into stderr, keeping their tail.

    One pipe keeps the order in which they were written (as a terminal shows it). Without usable descriptors
    (a detached daemon) nothing is captured and the tail stays empty.
    """
    tail = _Tail()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield tail
        return
    _flush(sys.stdout)
    _flush(sys.stderr)
    read_fd, write_fd = os.pipe()
    pump = threading.Thread(target=_pump, args=(read_fd, saved[1], tail), daemon=True)
    pump.start()
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield tail
    finally:
        _flush(sys.stdout)
        _flush(sys.stderr)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)  # the pipe's last write end is gone: the pump sees EOF
        os.close(saved[0])
        pump.join(timeout=10)
        if not pump.is_alive():  # a child still holding the pipe keeps the pump (and its descriptor) alive
            os.close(saved[1])


def _stage_names(repo: Repo) -> list[str]:
    import networkx as nx

    order = reversed(list(nx.topological_sort(repo.index.graph)))  # edges point from a stage to its deps' stages
    return [stage.addressing for stage in order if stage.cmd]


def _default_remote(repo: Repo) -> tuple[str, str] | None:
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
        return _default_remote(repo)
    return name, str(repo.config["remote"].get(name, {}).get("url", "?"))


def _remote_failure(
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


def reproduce(root: Path, *, env_path_prefix: str | None = None, pull: bool = True) -> StageRun:
    """Run the pipeline in `root`; DVC runs only the stages whose deps, params or outputs changed.

    With `pull` (and a default remote configured), a stage whose deps and params match `dvc.lock` but whose
    outputs are missing (a fresh clone) gets them from the remote instead of running (`dvc repro --pull`); a
    remote without them makes it run. Stage commands run `python` from PATH: `env_path_prefix` (default: the
    bin directory of this interpreter, i.e. the project's venv) is put first on PATH for them. While it runs,
    stdout and stderr (DVC's and the commands') are merged, in order, into stderr, so that a failure can quote
    the end of the output. Raises `StageFailedError` (stage name + output tail) when a stage fails,
    `RemoteConfigError` / `RemoteUnreachableError` when pulling fails, `VersioningError` for an unusable
    repository. Not thread-safe: DVC works relative to the current directory, which this sets to `root`.
    """
    from dvc.exceptions import DvcException, ReproductionError

    root = root.resolve()
    if not (root / PROJECT_FILE).exists():
        raise VersioningError(f"{root}: no {PROJECT_FILE}; nothing to reproduce")
    prefix = env_path_prefix if env_path_prefix is not None else str(Path(sys.executable).parent)
    run_env = {"PATH": os.pathsep.join(p for p in (prefix, os.environ.get("PATH", "")) if p), "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    with _open(root) as repo:
        try:
            names = _stage_names(repo)
            lock = _lock_or_empty(root)
            reasons = {name: _describe(root, name, ch, lock) for name, ch in repo.status().items()}
            remote = _default_remote(repo)
        except DvcException as exc:
            raise VersioningError(f"{root}: cannot read the pipeline: {exc}") from exc
        for name, why in reasons.items():
            log.info("%s: changed (%s)", name, "; ".join(why) or "out of date")
        pull = pull and remote is not None and bool(reasons)
        where = f"DVC remote '{remote[0]}' ({remote[1]})" if remote else "the DVC remote"
        with _dvc_events() as events, _tee_output() as tail, _missing_cache_noted(where):
            try:
                result = repo.reproduce(run_env=run_env, pull=pull)
            except Exception as exc:
                if pull and (failure := _remote_failure(exc, root, remote, "pulling stage outputs")):
                    raise failure from exc
                if isinstance(exc, ReproductionError):
                    named = re.search(r"'([^']+)'", str(exc))  # "failed to reproduce 'featurize'"
                    stage = named.group(1) if named else events.running[-1] if events.running else "?"
                    raise StageFailedError(stage, str(exc.__cause__ or exc), tail.text()) from exc
                if isinstance(exc, DvcException):
                    raise VersioningError(f"{root}: dvc repro failed: {exc}") from exc
                raise
    done = [stage.addressing for stage in result]
    restored = tuple(n for n in done if n in events.restored)
    ran = tuple(n for n in done if n not in restored)
    pulled = tuple(n for n in names if n in events.pulling and n not in done)
    skipped = tuple(n for n in names if n not in done and n not in pulled)
    run = StageRun(ran, restored, skipped, {n: reasons.get(n, []) for n in done}, time.perf_counter() - start, pulled)
    for name in names:
        if name in events.not_pulled:
            log.info("%s: the remote %s lacks its outputs; running it", name, remote[0] if remote else "")
        state = (
            "ran" if name in ran else "restored from the run cache" if name in restored
            else "pulled from the remote" if name in pulled else "unchanged, skipped"
        )  # fmt: skip
        log.info("%s: %s", name, state)
    return run


def restore_outputs(root: Path) -> bool:
    """Put the stage outputs back as `dvc.lock` records them (`dvc checkout --force`, from the cache).

    After a failed stage: DVC deletes a stage's outputs before running it, so this returns `data/` to the last
    good version. False (and nothing changed) when the cache does not hold them, e.g. before the first success.
    """
    from dvc.exceptions import DvcException

    root = root.resolve()
    if not (root / LOCK_FILE).exists():
        return False
    with _open(root) as repo:
        try:
            repo.checkout(force=True)
        except DvcException as exc:
            log.warning("%s: could not restore the stage outputs from the DVC cache: %s", root, exc)
            return False
    return True


# ------------------------------------------------------------------------------------------------ version


def _read_yaml(path: Path) -> Any:
    return read_yaml(path)


def _read_lock_stages(root: Path) -> dict[str, Any]:
    path = root / LOCK_FILE
    if not path.exists():
        raise VersioningError(f"{path} not found: run the pipeline first (`dvc repro` or `qaflow` data stages)")
    try:
        lock = _read_yaml(path) or {}
    except YAMLInputError as exc:
        raise VersioningError(str(exc)) from None
    stages = lock.get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict) or not stages:
        raise VersioningError(f"{path}: no stages recorded: run the pipeline first")
    return stages


def _lock_or_empty(root: Path) -> dict[str, Any]:
    try:
        return _read_lock_stages(root)
    except VersioningError:
        return {}


def _hashes(entries: list[dict[str, Any]] | None) -> dict[str, str]:
    return {str(e["path"]): str(e.get("md5") or e.get("hash") or "") for e in entries or []}


def combined_id(outs: dict[str, str]) -> str:
    """First 12 hex digits of sha256 over the sorted `path md5` lines of the outputs."""
    text = "".join(f"{path} {md5}\n" for path, md5 in sorted(outs.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def data_version(root: Path) -> DataVersion:
    """The data version recorded in `root/dvc.lock` (no DVC needed): per-stage hashes, params and a combined id."""
    root = Path(root)
    stages: dict[str, StageVersion] = {}
    for name, entry in _read_lock_stages(root).items():
        params = {k: v for f in (entry.get("params") or {}).values() for k, v in _flatten(f).items()}
        stages[name] = StageVersion(name, _hashes(entry.get("outs")), _hashes(entry.get("deps")), params)
    outs = {path: md5 for stage in stages.values() for path, md5 in stage.outs.items()}
    if not outs:
        raise VersioningError(f"{root / LOCK_FILE}: no stage outputs recorded: run the pipeline first")
    missing = [path for path, md5 in outs.items() if not md5]
    if missing:
        raise VersioningError(f"{root / LOCK_FILE}: outputs without a hash {missing}: run the pipeline again")
    return DataVersion(combined_id(outs), stages)


# ------------------------------------------------------------------------------------------------ remote


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
        if failure := _remote_failure(exc, root, _named_remote(repo, remote), action):
            raise failure from exc
        if isinstance(exc, DvcException):
            raise VersioningError(f"{root}: {action} failed: {exc}") from exc
        raise


def push(root: Path, remote: str | None = None) -> int:
    """Push the cached outputs of the pipeline to `remote` (default: the repository's default); files pushed."""
    root = root.resolve()
    _read_lock_stages(root)
    with _open(root) as repo, _remote_errors(root, repo, remote, "dvc push"):
        count = int(repo.push(remote=remote))
    log.info("pushed %d file(s) to %s", count, remote or "the default remote")
    return count


def pull(root: Path, remote: str | None = None) -> int:
    """Fetch the outputs recorded in dvc.lock from `remote` and check them out; returns the files fetched."""
    root = root.resolve()
    _read_lock_stages(root)
    with _open(root) as repo, _remote_errors(root, repo, remote, "dvc pull"):
        result = repo.pull(remote=remote)
    fetched = int(result.get("stats", {}).get("fetched", 0))
    log.info("pulled %d file(s) from %s", fetched, remote or "the default remote")
    return fetched
