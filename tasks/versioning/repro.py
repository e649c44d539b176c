"""Reproducing `dvc.yaml`: which stages changed and why, `reproduce` (pulling outputs a stage only lacks, as
`dvc repro --pull`), what each stage did, and `restore_outputs` after a failure."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.core.safe_yaml import read_yaml
from tasks.versioning.console import dvc_events, missing_cache_noted, tee_output
from tasks.versioning.errors import StageFailedError, VersioningError
from tasks.versioning.lock import LOCK_FILE, flatten, lock_or_empty
from tasks.versioning.remotes import default_remote, remote_failure
from tasks.versioning.repo import open_repo

if TYPE_CHECKING:
    from dvc.repo import Repo

log = logging.getLogger(__package__)  # "tasks.versioning", as before the package was split

PROJECT_FILE = "dvc.yaml"


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
                    locked = _within(flatten(lock.get(stage, {}).get("params", {}).get(path, {})), state)
                    current = _within(flatten(read_yaml(root / path) or {}), state)
                    reasons.extend(_params_reasons(locked, current) or [f"params {path}: {state}"])
                else:
                    reasons.append(f"{kind.replace('changed ', '')} {path} {state}")
    return reasons


def changed_stages(root: Path) -> dict[str, list[str]]:
    """Stages `dvc repro` would run (or restore), each with human-readable reasons; {} when up to date."""
    root = root.resolve()
    with open_repo(root) as repo:
        status = repo.status()
    lock = lock_or_empty(root)
    return {name: _describe(root, name, changes, lock) for name, changes in status.items()}


def _stage_names(repo: Repo) -> list[str]:
    import networkx as nx

    order = reversed(list(nx.topological_sort(repo.index.graph)))  # edges point from a stage to its deps' stages
    return [stage.addressing for stage in order if stage.cmd]


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
    with open_repo(root) as repo:
        try:
            names = _stage_names(repo)
            lock = lock_or_empty(root)
            reasons = {name: _describe(root, name, ch, lock) for name, ch in repo.status().items()}
            remote = default_remote(repo)
        except DvcException as exc:
            raise VersioningError(f"{root}: cannot read the pipeline: {exc}") from exc
        for name, why in reasons.items():
            log.info("%s: changed (%s)", name, "; ".join(why) or "out of date")
        pull = pull and remote is not None and bool(reasons)
        where = f"DVC remote '{remote[0]}' ({remote[1]})" if remote else "the DVC remote"
        with dvc_events() as events, tee_output() as tail, missing_cache_noted(where):
            try:
                result = repo.reproduce(run_env=run_env, pull=pull)
            except Exception as exc:
                if pull and (failure := remote_failure(exc, root, remote, "pulling stage outputs")):
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
    with open_repo(root) as repo:
        try:
            repo.checkout(force=True)
        except DvcException as exc:
            log.warning("%s: could not restore the stage outputs from the DVC cache: %s", root, exc)
            return False
    return True
