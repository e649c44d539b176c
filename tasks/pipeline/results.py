"""run_qa.py's result files and console blocks: `trainer.save_metrics(split, metrics)` writes
`<output_dir>/{split}_results.json` and merges it into `all_results.json`; `trainer.log_metrics(split, metrics)`
prints `***** {split} metrics *****` with one aligned `key = value` line per metric (transformers' own
`metrics_format`: runtimes as h:mm:ss, FLOPs in GF, floats to 4 decimals).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers.trainer_pt_utils import metrics_format

from tasks.core.artifacts import TrainResult, write_result
from tasks.core.io import write_json_atomic
from tasks.core.layout import TrainPaths

log = logging.getLogger(__name__)

COUNT_SUFFIXES = ("_samples", "_examples", "_features", "_total", "_parameters")  # counts: shown and saved as ints


def _as_written(metrics: dict[str, Any]) -> dict[str, Any]:
    """Sorted keys (as `json.dump(..., sort_keys=True)`), counts as integers."""
    out: dict[str, Any] = {}
    for key in sorted(metrics):
        value = metrics[key]
        if key.endswith(COUNT_SUFFIXES) and isinstance(value, float) and value.is_integer():
            value = int(value)
        out[key] = value
    return out


def save_metrics(paths: TrainPaths, split: str, metrics: dict[str, Any]) -> Path:
    """`{split}_results.json` (train, eval, predict), merged into `all_results.json` (run_qa's combined=True)."""
    written = _as_written(metrics)
    path = write_json_atomic(written, paths.results_file(split), indent=4)
    combined = paths.results_file("all")
    merged: dict[str, Any] = {}
    if combined.is_file():
        try:
            merged = json.loads(combined.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            merged = {}
        if not isinstance(merged, dict):
            log.warning("%s: not a JSON object; replaced by this run's results", combined)
            merged = {}
    write_json_atomic(_as_written({**merged, **written}), combined, indent=4)
    return path


def metrics_block(split: str, metrics: dict[str, Any]) -> str:
    """The text `trainer.log_metrics(split, metrics)` prints."""
    shown = metrics_format(_as_written(metrics))
    if not shown:
        return f"***** {split} metrics *****"
    k_width = max(len(str(k)) for k in shown)
    v_width = max(len(str(v)) for v in shown.values())
    lines = [f"***** {split} metrics *****"]
    lines += [f"  {key: <{k_width}} = {shown[key]:>{v_width}}" for key in sorted(shown)]
    return "\n".join(lines)


def train_metrics(result: TrainResult) -> dict[str, float]:
    """run_qa's train metrics (`train_runtime`, `train_samples_per_second`, `train_loss`, `epoch`, ...) with
    `train_samples` (training windows, as run_qa counts them) and qaflow's throughput figures beside them."""
    metrics = dict(result.metrics)
    if "train_features" in metrics:
        metrics.setdefault("train_samples", metrics["train_features"])
    return metrics


def save_train_outputs(paths: TrainPaths, result: TrainResult) -> dict[str, float]:
    """qaflow's training record plus run_qa's `train_results.json` (and `all_results.json`); the train metrics."""
    write_result(result, paths.result_file)
    metrics = train_metrics(result)
    save_metrics(paths, "train", metrics)
    return metrics
