"""Deciding what a retrain must do: skip (nothing changed), resume (an unfinished run) or start a new run.

The run key is a hash of the data version and every parameter that can change the trained model, so a re-run with
nothing changed is recognised across processes and machines sharing the tracking store.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tasks.core.config import QAFlowConfig
from tasks.tracking.records import RunRecord

# Parameters that never change the model: where things go, how they are tracked, how fast they are computed.
NON_MODEL_KEYS = {
    ("train", "output_dir"),
    ("train", "logging_steps"),
    ("train", "save_steps"),
    ("train", "save_total_limit"),
    ("train", "save_strategy"),
    ("train", "dataloader_num_workers"),
    ("train", "compile_cache"),
    ("features", "preprocessing_num_workers"),
}
NON_MODEL_SECTIONS = {"tracking", "tune", "evaluation"}


def model_params(cfg: QAFlowConfig) -> dict[str, dict[str, Any]]:
    """The parameters that define the trained model and its evaluation (the cache key's inputs)."""
    return {
        section: {k: v for k, v in values.items() if (section, k) not in NON_MODEL_KEYS}
        for section, values in cfg.to_dict().items()
        if section not in NON_MODEL_SECTIONS
    }


def run_key(cfg: QAFlowConfig, data_version: str) -> str:
    """A short, stable id for (data version, model parameters)."""
    blob = json.dumps({"data": data_version, "params": model_params(cfg)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class RunPlan:
    action: str  # "new" | "resume" | "skip"
    run_key: str
    run_id: str | None = None
    reason: str = ""


def plan_run(key: str, existing_run: RunRecord | None, *, registered: bool, force: bool = False) -> RunPlan:
    """What to do given the newest tracked run with this key (or None)."""
    if existing_run is None:
        return RunPlan("new", key, reason="no run with this data version and these parameters yet")
    run_id = existing_run.run_id
    status = existing_run.status
    if status == "FINISHED" and registered and not force:
        return RunPlan(
            "skip", key, run_id,
            reason=f"data version and parameters unchanged since run {run_id} (key {key}); nothing to train",
        )  # fmt: skip
    if status == "FINISHED" and registered:
        return RunPlan("new", key, reason="forced re-run")
    return RunPlan("resume", key, run_id, reason=f"run {run_id} with this key is {status}: resuming it")
