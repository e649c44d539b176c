"""The data step of a retrain: DVC stages under a lock, then a snapshot of the outputs the run trains on.

Overrides of DVC-tracked parameters (data, model, features) are written to params.yaml first (as
`dvc exp run -S` does), under the same lock, so the stages follow them. The snapshot (`outputs/data/<version>`)
lets later steps read the data of *this* version even when another retrain changes the shared workspace.
"""

from __future__ import annotations

import copy
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock

from tasks.core.artifacts import DataSnapshot
from tasks.core.config import QAFlowConfig
from tasks.core.data import DataError, QADataset, load_dataset_file
from tasks.core.io import write_bytes_atomic
from tasks.core.layout import SNAPSHOT_FILES, snapshot_dir
from tasks.core.params_file import persist_stage_overrides
from tasks.pipeline.stages import load_split
from tasks.versioning import LOCK_FILE, data_version, push, reproduce, restore_outputs

STAGE_LOCK = ".dvc/tmp/qaflow-stages.lock"
LOCK_TIMEOUT_S = 1800


@dataclass(frozen=True)
class StagesReport:
    snapshot: DataSnapshot
    params_changed: dict[str, Any]
    skipped: tuple[str, ...]
    pushed: int
    seconds: float  # the stages (run or pulled), without the snapshot and the push


def _bytes_or_none(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


def _restore_workspace(root: Path, before: dict[Path, bytes | None]) -> None:
    for path, content in before.items():
        if content is None:
            path.unlink(missing_ok=True)
        elif _bytes_or_none(path) != content:
            write_bytes_atomic(content, path)
    restore_outputs(root)


def snapshot_outputs(
    root: Path, version: str, hashes: dict[str, str], ran: tuple[str, ...], pulled: tuple[str, ...] = ()
) -> DataSnapshot:
    """Copy this version's stage outputs to `outputs/data/<version>` (once; written beside, then renamed)."""
    target = snapshot_dir(root, version)
    if not all((target / name).exists() for name in SNAPSHOT_FILES):
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for name, source in SNAPSHOT_FILES.items():
            shutil.copy2(root / source, tmp / name)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return DataSnapshot(version=version, hashes=hashes, dir=target, stages_ran=ran, stages_pulled=pulled)


def check_inputs(cfg: QAFlowConfig, root: Path) -> None:
    """Load and validate both splits the configuration names (DataError naming file, record and field).

    Runs before params.yaml is touched or any stage runs, so bad data fails once, cheaply, and leaves the
    workspace (params.yaml, data/prepared, data/features) as it was. Relative paths are the repository's, as in
    dvc.yaml.
    """
    checked = copy.deepcopy(cfg)
    for key in ("train_file", "validation_file"):
        value = Path(getattr(checked.data, key))
        setattr(checked.data, key, str(value if value.is_absolute() else Path(root) / value))
    for split in ("train", "eval"):
        load_split(checked, split)
    if cfg.postprocess.calibration_file:
        calibration_set(cfg, root)


def calibration_set(cfg: QAFlowConfig, root: Path) -> QADataset:
    """The v2 data `postprocess.calibration_file` names (relative to the repository), checked."""
    path = Path(cfg.postprocess.calibration_file or "")
    path = path if path.is_absolute() else Path(root) / path
    if not path.is_file():
        raise DataError(f"postprocess.calibration_file: {path} is not a file")
    dataset = load_dataset_file(path)
    if dataset.version != "2.0":
        raise DataError(f"postprocess.calibration_file: {path} is SQuAD v{dataset.version}; calibration needs v2.0")
    return dataset


def run_data_stages(root: Path, params_path: Path, overrides: dict[str, Any] | None) -> StagesReport:
    """`dvc repro` (only what changed) and snapshot the outputs, under a lock two retrains share; push to the remote.

    A stage whose outputs alone are missing (a fresh clone) has them pulled from the default DVC remote instead of
    running; a remote without them makes it run (`tasks.versioning.reproduce`).

    A failed (or interrupted: Ctrl-C) stage leaves the workspace as it was: params.yaml and dvc.lock get their
    previous bytes back (an earlier stage of the same run may have succeeded with the new parameters) and the stage
    outputs are checked out again from the DVC cache as that dvc.lock records them (DVC removes them before running
    a stage).
    """
    with FileLock(str(root / STAGE_LOCK), timeout=LOCK_TIMEOUT_S):
        before = {path: _bytes_or_none(path) for path in (Path(params_path), root / LOCK_FILE)}
        try:
            changed = persist_stage_overrides(params_path, overrides)
            stages = reproduce(root, env_path_prefix=str(Path(sys.executable).parent))
        except BaseException:  # a failed stage, or Ctrl-C mid-stage: params.yaml, dvc.lock and data/ as they were
            _restore_workspace(root, before)
            raise
        version = data_version(root)
        snapshot = snapshot_outputs(root, version.id, version.outs, tuple(stages.ran), tuple(stages.pulled))
        pushed = push(root)
    return StagesReport(snapshot, changed, tuple(stages.skipped), pushed, stages.seconds)
