"""Checkpoints on disk: which are complete, the one to resume (run_qa.py's choice; every DDP rank the same), what
a failed run cut short (deleted; a failed write named with its free space), and the final model swapped in as one
set at the output root."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from tasks.core.config import TrainConfig
from tasks.core.io import OutputSet, remove_orphans
from tasks.core.layout import TrainPaths, model_files
from tasks.core.model_spec import check_weights

log = logging.getLogger(__name__)

CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


def is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint a kill or a failed write (a full disk) could not have cut short: readable weights, every state
    file Trainer writes, and its trainer_state.json (written last) whole and of this checkpoint's step."""
    has_weights = any(path.glob("model*.safetensors")) or (path / "pytorch_model.bin").exists()
    if not has_weights or not all((path / name).exists() for name in CHECKPOINT_FILES):
        return False
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        check_weights(path)
    except (OSError, ValueError):  # a truncated state file or weights header (CheckpointError is a ValueError)
        return False
    return isinstance(state, dict) and str(state.get("global_step")) == path.name.split("-")[-1]


def last_complete_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete `checkpoint-N`. Incomplete ones (killed mid-save) can never be resumed: they are deleted
    (with a warning), as are the `incomplete-*` directories earlier versions set aside."""
    if not checkpoints_dir.is_dir():
        return None
    for stale in checkpoints_dir.glob("incomplete-checkpoint-*"):
        shutil.rmtree(stale, ignore_errors=True)
    found = sorted(
        (p for p in checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    for path in reversed(found):
        if is_complete_checkpoint(path):
            return path
        log.warning("deleting incomplete checkpoint %s (interrupted while saving; resuming from an earlier one)", path)
        shutil.rmtree(path, ignore_errors=True)
    return None


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, a read-only mount, ...): its partial files were deleted."""


def after_failed_training(checkpoints_dir: Path, exc: BaseException) -> None:
    """Delete what a failure cut short (never resumed); a failed write is re-raised naming the directory and its
    free space (torch's own message, e.g. "unexpected pos 7822976 vs 7822864", says neither)."""
    if not checkpoints_dir.is_dir():
        return
    before = {p.name for p in checkpoints_dir.glob("checkpoint-*")}
    free_mb = shutil.disk_usage(checkpoints_dir).free / 2**20
    last_complete_checkpoint(checkpoints_dir)
    deleted = sorted(before - {p.name for p in checkpoints_dir.glob("checkpoint-*")})
    if deleted and isinstance(exc, OSError | RuntimeError):
        raise CheckpointWriteError(
            f"{checkpoints_dir / deleted[0]}: writing the checkpoint failed ({' '.join(str(exc).split())[:200]}) "
            f"with {free_mb:.0f} MB free on its disk; the partial checkpoint was deleted"
        ) from exc


def checkpoint_to_resume(t: TrainConfig, checkpoints_dir: Path) -> Path | None:
    """run_qa.py's choice: --resume_from_checkpoint, else the last complete checkpoint, unless overwriting."""
    if t.overwrite_output_dir:
        if checkpoints_dir.exists():
            log.info("overwrite_output_dir: deleting %s and training from the start", checkpoints_dir)
            shutil.rmtree(checkpoints_dir)
        return None
    if t.resume_from_checkpoint:
        return Path(t.resume_from_checkpoint)
    return last_complete_checkpoint(checkpoints_dir)


def broadcast_resume(resume: Path | None) -> Path | None:
    """Under DDP every rank must resume from the checkpoint rank 0 chose."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return resume
    box = [str(resume) if resume else ""]
    torch.distributed.broadcast_object_list(box, src=0)
    return Path(box[0]) if box[0] else None


def save_final_model(trainer: Any, paths: TrainPaths) -> None:
    """run_qa.py's `trainer.save_model(output_dir)` + `trainer.save_state()`: the model, its tokenizer (the
    Trainer's processing_class) and `trainer_state.json` at the output root, written beside and swapped in as one
    set (`core.io.OutputSet`); files of the previous model that this one does not have (other weight shards) go."""
    remove_orphans(paths.root, ".model.pid*.tmp")
    staging = paths.root / f".model.pid{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    trainer.save_model(str(staging))
    trainer.state.save_to_json(str(staging / paths.state_file.name))
    written = sorted(path.name for path in staging.iterdir())
    previous = [path.name for path in model_files(paths.root)]
    swap = OutputSet(paths.root, tuple(dict.fromkeys([*written, *previous])))
    for name in written:
        os.replace(staging / name, swap.stage(name))
    swap.commit()
    shutil.rmtree(staging, ignore_errors=True)
