"""The runs a comparison shows: `RunRow` (one run's model, family, backend, run mode, data version, throughput,
EM/F1 and loss history) read from the tracker (`collect_runs`, best first) and, for two runs, their F1 by error
slice side by side (`slice_comparison`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.slices import compare_slices
from tasks.tracking import tags as tag
from tasks.tracking.records import RunRecord
from tasks.tracking.tracker import Tracker

LOSS_METRIC = "loss"
MODE_ORDER = ("eager", "compile", "compile-max-autotune")


@dataclass
class RunRow:
    """One run as the comparison shows it (None where the run does not report the value)."""

    run_id: str
    name: str
    kind: str
    model: str | None
    family: str | None
    backend: str | None
    device: str | None
    run_mode: str
    data_version: str | None
    train_steps_per_second: float | None
    train_samples_per_second: float | None
    exact: float | None  # v1 `exact_match`, v2 `exact`
    f1: float | None
    has_ans_exact: float | None = None
    has_ans_f1: float | None = None
    no_ans_exact: float | None = None
    no_ans_f1: float | None = None
    metrics: dict[str, float] = field(default_factory=dict, repr=False)
    loss: list[tuple[int, float]] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        """Short run id, plus the run name where it says more than the run key (benchmark-eager, ...)."""
        informative = self.name and not self.name.startswith("retrain-") and len(self.name) <= 32
        return f"{self.run_id[:8]} {self.name}" if informative else self.run_id[:8]


def _first(metrics: dict[str, float], *names: str) -> float | None:
    return next((float(metrics[n]) for n in names if n in metrics), None)


def _short_model(value: str | None) -> str | None:
    if not value:
        return None
    path = Path(value)
    return path.name if path.is_absolute() else value


def row_of(run: RunRecord, loss: Sequence[tuple[int, float]] = ()) -> RunRow:
    tags, params, m = run.tags, run.params, run.metrics
    return RunRow(
        run_id=run.run_id,
        name=run.name,
        kind=tag.run_kind(tags),
        model=_short_model(tags.get(tag.MODEL) or params.get("model.model_name_or_path")),
        family=tags.get(tag.FAMILY) or params.get("model.model_family"),
        backend=tags.get(tag.BACKEND) or params.get("train.backend"),
        device=tags.get(tag.DEVICE),
        run_mode=tag.run_mode_of(tags, params),
        data_version=tags.get(tag.DATA_VERSION),
        train_steps_per_second=_first(m, "train_steps_per_second"),
        train_samples_per_second=_first(m, "train_samples_per_second"),
        exact=_first(m, "exact_match", "exact"),
        f1=_first(m, "f1"),
        has_ans_exact=_first(m, "HasAns_exact"),
        has_ans_f1=_first(m, "HasAns_f1"),
        no_ans_exact=_first(m, "NoAns_exact"),
        no_ans_f1=_first(m, "NoAns_f1"),
        metrics=m,
        loss=list(loss),
    )


def collect_runs(
    tracker: Tracker, *, run_ids: Sequence[str] = (), metric: str = "f1", max_runs: int = 200
) -> list[RunRow]:
    """The given runs, or the tracker's experiment's runs (comparison runs excluded), best `metric` first."""
    if run_ids:
        runs = [tracker.get_run(r) for r in run_ids]
    else:
        runs = [r for r in tracker.search_runs(max_runs) if r.tags.get(tag.KIND) != tag.KIND_COMPARISON]
    rows = []
    for run in runs:
        history = tracker.metric_history(run.run_id, LOSS_METRIC) if LOSS_METRIC in run.metrics else []
        rows.append(row_of(run, history))
    return sort_rows(rows, metric)


def sort_rows(rows: Iterable[RunRow], metric: str) -> list[RunRow]:
    """Rows reporting `metric` first, highest first; the rest keep their order."""

    def key(row: RunRow) -> tuple[int, float]:
        value = row.metrics.get(metric)
        return (0, -float(value)) if value is not None and math.isfinite(value) else (1, 0.0)

    return sorted(rows, key=key)


def slice_comparison(tracker: Tracker, a: RunRow, b: RunRow) -> list[dict[str, Any]]:
    """F1 by error slice of run `a` and run `b` side by side (with b - a); [] unless both logged slices."""
    table_a, table_b = tracker.slice_table(a.run_id), tracker.slice_table(b.run_id)
    return compare_slices(table_a, table_b) if table_a and table_b else []
