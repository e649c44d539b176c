"""The retrain run's figures as DVC metrics and plots: `metrics/retrain.json` and `metrics/train_history.csv`.

Training runs in the Prefect flow, not in a DVC stage, so dvc.yaml declares these two files at its top level
(`metrics:`, `plots:`): they are small, git-tracked (not in the DVC cache) and rewritten by each retrain that
trains. Commit them with the params: `dvc metrics diff` then compares EM/F1 and throughput with the last commit,
`dvc exp show` lists them per commit, and `dvc plots show` / `dvc plots diff` draw the loss, learning-rate and
steps/s curves.

No MLflow run id is written: a run id exists only in the store that made it, while these files travel with every
clone. The run key (data version + model parameters, `tasks.pipeline.runplan.run_key`) names the run instead: the
same in every clone, and `tags.qaflow.run_key = '<key>'` finds the run in whichever store trained it.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.core.io import atomic_path, write_json_atomic
from tasks.core.layout import experiment_metrics_file, training_history_file

THROUGHPUT = (
    "train_samples_per_second", "train_steps_per_second", "train_tokens_per_second", "train_runtime",
    "predict_samples_per_second", "predict_features_per_second",
)  # fmt: skip
HISTORY_COLUMNS = ("step", "loss", "learning_rate", "grad_norm", "steps_per_second")


def history_rows(log_history: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per Trainer log entry with a training loss; steps/s between consecutive rows (from their
    `elapsed_seconds`), blank for the first."""
    rows: list[dict[str, Any]] = []
    previous: tuple[int, float] | None = None
    for entry in log_history:
        if "loss" not in entry:
            continue
        step, elapsed = int(entry.get("step", 0)), entry.get("elapsed_seconds")
        rate = ""
        if elapsed is not None and previous is not None and step > previous[0] and elapsed > previous[1]:
            rate = (step - previous[0]) / (elapsed - previous[1])
        rows.append({"step": step, **{k: entry.get(k, "") for k in HISTORY_COLUMNS[1:4]}, "steps_per_second": rate})
        if elapsed is not None:
            previous = (step, float(elapsed))
    return rows


def write_dvc_metrics(
    root: Path,
    *,
    data_version: str,
    run_key: str,
    scores: Mapping[str, float],
    figures: Mapping[str, float],
    log_history: Sequence[Mapping[str, Any]],
) -> tuple[Path, Path]:
    """Write the metrics file (scores + the `THROUGHPUT` figures + data version + run key) and the history CSV."""
    metrics = {
        **{k: float(v) for k, v in scores.items()},
        **{k: float(figures[k]) for k in THROUGHPUT if k in figures},
        "data_version": data_version,
        "run_key": run_key,
    }
    metrics_file = write_json_atomic(metrics, experiment_metrics_file(root), indent=2)
    history_file = training_history_file(root)
    with atomic_path(history_file) as tmp, open(tmp, "x", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_COLUMNS)
        writer.writeheader()
        writer.writerows(history_rows(log_history))
    return metrics_file, history_file
