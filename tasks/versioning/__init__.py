"""Versioned data stages: set up DVC, reproduce `dvc.yaml`, read the data version from `dvc.lock`, push and pull.

Everything goes through DVC's Python API (`dvc.repo.Repo`). The data version is read from `dvc.lock` alone, so
it is cheap and needs no DVC import: one short id over the output hashes, recorded on every training run and
used as a cache key. `reproduce` pulls a stage's outputs from the default remote (local folder, SSH, S3 ...)
when only they are missing, as `dvc repro --pull` does, so a fresh clone downloads a data version instead of
recomputing it. Remote failures are typed: `RemoteConfigError` (the same every time) or `RemoteUnreachableError`.

The rooms: `errors` (the typed failures), `lock` (the data version from `dvc.lock`), `repo` (set up and open a DVC
repository), `console` (what DVC prints while it runs), `repro` (changed stages, `reproduce`, `restore_outputs`),
`remotes` (remote failures typed, `push`, `pull`). This package re-exports the public names, so callers import
from `tasks.versioning`.
"""

from tasks.versioning.console import DVC_LOGGERS, MISSING_CACHE, TAIL_LINES
from tasks.versioning.errors import (
    RemoteConfigError,
    RemoteUnreachableError,
    StageFailedError,
    VersioningError,
)
from tasks.versioning.lock import LOCK_FILE, DataVersion, StageVersion, combined_id, data_version
from tasks.versioning.remotes import pull, push
from tasks.versioning.repo import DEFAULT_REMOTE_DIR, REMOTE_NAME, ensure_dvc_repo
from tasks.versioning.repro import PROJECT_FILE, StageRun, changed_stages, reproduce, restore_outputs

__all__ = [
    "DEFAULT_REMOTE_DIR",
    "DVC_LOGGERS",
    "LOCK_FILE",
    "MISSING_CACHE",
    "PROJECT_FILE",
    "REMOTE_NAME",
    "TAIL_LINES",
    "DataVersion",
    "RemoteConfigError",
    "RemoteUnreachableError",
    "StageFailedError",
    "StageRun",
    "StageVersion",
    "VersioningError",
    "changed_stages",
    "combined_id",
    "data_version",
    "ensure_dvc_repo",
    "pull",
    "push",
    "reproduce",
    "restore_outputs",
]
