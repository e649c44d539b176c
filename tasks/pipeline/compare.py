"""Comparing MLflow runs: one table (model, family, backend, compile mode, data version, throughput, EM/F1, v2
HasAns/NoAns), the benchmark layout `GPU | Run Mode | train_steps_per_second`, PNG plots and one self-contained HTML
report.

Where the report goes: the output directory, and the artifacts of a new *comparison run* in the experiment
(tagged `qaflow.kind=comparison`, run name `compare-<UTC time>`, the compared run ids in the
`qaflow.compared_runs` tag). A run of its own rather than the experiment's latest run: finished training runs stay
as they were (their run keys decide retrain skips), every comparison is kept with the runs it covered, and
comparison runs are left out of later comparisons.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.core.slices import compare_slices
from tasks.tracking import tags as tag
from tasks.tracking.records import RunRecord
from tasks.tracking.tracker import Tracker

SLICES_COMPARISON = "slices_comparison.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LOSS_METRIC = "loss"
REPORT_FILE = "comparison.html"
THROUGHPUT_PNG = "throughput_by_mode.png"
LOSS_PNG = "loss_curves.png"
MODE_ORDER = ("eager", "compile", "compile-max-autotune")
BENCH_COLUMNS = ("GPU", "Run Mode", "train_steps_per_second", "steady_train_steps_per_second")


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


@dataclass
class Comparison:
    rows: list[RunRow]
    files: dict[str, Path]
    mlflow_run_id: str | None = None
    slices: list[dict[str, Any]] = field(default_factory=list)  # two runs: F1 by slice side by side
    slice_runs: tuple[str, str] | None = None  # (a, b) run labels of `slices`

    @property
    def benchmark_rows(self) -> list[dict[str, Any]]:
        return benchmark_table(self.rows)


# ------------------------------------------------------------------------------------------- rows


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


# ------------------------------------------------------------------------------------------- tables

BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run", "label"), ("kind", "kind"), ("model", "model"), ("family", "family"), ("backend", "backend"),
    ("device", "device"), ("compile mode", "run_mode"), ("data version", "data_version"),
    ("train steps/s", "train_steps_per_second"), ("train samples/s", "train_samples_per_second"),
    ("EM", "exact"), ("F1", "f1"),
)  # fmt: skip
V2_COLUMNS: tuple[tuple[str, str], ...] = (
    ("HasAns EM", "has_ans_exact"), ("HasAns F1", "has_ans_f1"),
    ("NoAns EM", "no_ans_exact"), ("NoAns F1", "no_ans_f1"),
)  # fmt: skip


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def table_columns(rows: Sequence[RunRow]) -> list[tuple[str, str]]:
    """The base columns, plus the v2 HasAns/NoAns ones when any run reports them."""
    v2 = [c for c in V2_COLUMNS if any(getattr(r, c[1]) is not None for r in rows)]
    return [*BASE_COLUMNS, *v2]


def table_cells(rows: Sequence[RunRow]) -> tuple[list[str], list[list[str]]]:
    columns = table_columns(rows)
    return [c[0] for c in columns], [[_fmt(getattr(r, attr)) for _, attr in columns] for r in rows]


def benchmark_table(rows: Sequence[RunRow]) -> list[dict[str, Any]]:
    """The seeds' layout for benchmark runs: GPU | Run Mode | train_steps_per_second (eager, compile, autotune)."""
    bench = [r for r in rows if r.kind == "benchmark" and r.train_steps_per_second is not None]
    order = {m: i for i, m in enumerate(MODE_ORDER)}
    bench.sort(key=lambda r: (r.device or "", order.get(r.run_mode, len(order)), r.run_mode))
    return [
        {
            "GPU": r.device or "-",
            "Run Mode": r.run_mode,
            "train_steps_per_second": round(r.train_steps_per_second, 3),
            "steady_train_steps_per_second": _round(r.metrics.get("steady_train_steps_per_second")),
        }
        for r in bench
        if r.train_steps_per_second is not None
    ]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def rich_tables(rows: Sequence[RunRow], title: str = "qaflow runs") -> list[Any]:
    """The runs table and (if any benchmark runs) the benchmark table, as rich Tables."""
    from rich.table import Table

    header, body = table_cells(rows)
    runs = Table(title=title)
    for name in header:
        runs.add_column(name, justify="right" if name[0].isupper() or "/s" in name else "left")
    for cells in body:
        runs.add_row(*cells)
    tables = [runs]
    bench = benchmark_table(rows)
    if bench:
        t = Table(title="Training throughput by run mode (benchmark runs)")
        for name in BENCH_COLUMNS:
            t.add_column(name, justify="right" if "steps" in name else "left")
        for b in bench:
            t.add_row(*[_fmt(b[c]) for c in BENCH_COLUMNS])
        tables.append(t)
    return tables


def html_table(header: Sequence[str], body: Sequence[Sequence[str]], css_class: str = "runs") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


# ------------------------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_throughput(rows: Sequence[RunRow], path: Path) -> Path:
    """Grouped bars per device, one bar per run mode: train_steps_per_second (benchmark runs if any) and, where
    runs report it, the steady-state rate without the first (compiling) step in a second panel."""
    plt = _pyplot()
    pool = [r for r in rows if r.train_steps_per_second is not None]
    bench = [r for r in pool if r.kind == "benchmark"]
    pool = bench or pool
    panels = [("train_steps_per_second", "train steps / s")]
    if any("steady_train_steps_per_second" in r.metrics for r in pool):
        panels.append(("steady_train_steps_per_second", "steady-state steps / s (first step excluded)"))
    devices = sorted({r.device or "-" for r in pool})
    modes = sorted({r.run_mode for r in pool}, key=lambda m: (MODE_ORDER.index(m) if m in MODE_ORDER else 99, m))
    width = max(6.0, 1.8 * len(devices) * max(len(modes), 1))
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), 4.2), squeeze=False)
    for ax, (metric, ylabel) in zip(axes[0], panels, strict=True):
        _mode_bars(ax, pool, devices, modes, metric)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{metric}" + (" (benchmark runs)" if bench else ""))
    if not modes:
        axes[0][0].text(0.5, 0.5, "no run reports train_steps_per_second", ha="center", transform=axes[0][0].transAxes)
    fig.suptitle("Training throughput by run mode")
    return _save(fig, path)


def _mode_bars(ax: Any, pool: Sequence[RunRow], devices: list[str], modes: list[str], metric: str) -> None:
    bar = 0.8 / max(len(modes), 1)
    for j, mode in enumerate(modes):
        values = []
        for dev in devices:
            got = [
                r.metrics[metric]
                for r in pool
                if (r.device or "-") == dev and r.run_mode == mode and metric in r.metrics
            ]
            values.append(sum(got) / len(got) if got else 0.0)
        xs = [i + (j - (len(modes) - 1) / 2) * bar for i in range(len(devices))]
        ax.bar_label(ax.bar(xs, values, bar, label=mode), fmt="%.2f", fontsize=8)
    ax.set_xticks(range(len(devices)), devices)
    if modes:
        ax.legend(title="run mode", fontsize=8)


def plot_metric(rows: Sequence[RunRow], metric: str, path: Path) -> Path:
    """Horizontal bars: `metric` per run (best at the top)."""
    plt = _pyplot()
    have = [r for r in rows if r.metrics.get(metric) is not None][:40]
    fig, ax = plt.subplots(figsize=(8.0, max(2.5, 0.45 * len(have) + 1.2)))
    labels = [r.label for r in have][::-1]
    values = [float(r.metrics[metric]) for r in have][::-1]
    bars = ax.barh(range(len(have)), values, color="tab:green")
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_yticks(range(len(have)), labels, fontsize=8)
    ax.set_xlabel(metric)
    ax.set_title(f"{metric} by run")
    if not have:
        ax.text(0.5, 0.5, f"no run reports {metric}", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def plot_loss(rows: Sequence[RunRow], path: Path) -> Path:
    """Training loss (step-wise `loss` history) per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 4.2))
    curves = [r for r in rows if r.loss]
    for r in curves[:20]:
        ax.plot([s for s, _ in r.loss], [v for _, v in r.loss], marker=".", label=r.label)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title("Loss curves")
    if curves:
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "no run logged a step-wise loss", ha="center", transform=ax.transAxes)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    _pyplot().close(fig)
    return path


# ------------------------------------------------------------------------------------------- report


def html_report(rows: Sequence[RunRow], images: dict[str, Path], title: str, extra_html: str = "") -> str:
    """One self-contained page: the tables and every PNG embedded as base64."""
    header, body = table_cells(rows)
    parts = [html_table(header, body), *([extra_html] if extra_html else [])]
    bench = benchmark_table(rows)
    if bench:
        cells = [[_fmt(b[c]) for c in BENCH_COLUMNS] for b in bench]
        parts += ["<h2>Training throughput by run mode</h2>", html_table(BENCH_COLUMNS, cells, "benchmark")]
    for caption, png in images.items():
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
             "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#eee}"
             "figure{margin:1.5em 0}img{max-width:100%}")  # fmt: skip
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return (
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1><p>{len(rows)} run(s), {created}</p>"
        + "\n".join(parts)
        + "</body></html>"
    )


def write_report(
    rows: Sequence[RunRow], out_dir: Path, *, metric: str = "f1", title: str = "qaflow runs",
    slices: Sequence[dict[str, Any]] = (), slice_runs: tuple[str, str] | None = None,
) -> dict:  # fmt: skip
    """PNG plots, `comparison.html`, `comparison.json` (and, for two runs, `slices_comparison.json`) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    images = {
        "Training throughput by run mode": plot_throughput(rows, out_dir / THROUGHPUT_PNG),
        f"{metric} by run": plot_metric(rows, metric, out_dir / f"{metric}_by_run.png"),
        "Loss curves": plot_loss(rows, out_dir / LOSS_PNG),
    }
    extra = ""
    files: dict[str, Path] = {}
    if slices and slice_runs:
        files["slices"] = out_dir / SLICES_COMPARISON
        files["slices"].write_text(json.dumps({"a": slice_runs[0], "b": slice_runs[1], "slices": list(slices)},
                                              indent=2), encoding="utf-8")  # fmt: skip
        extra = (f"<h2>F1 by error slice: a = {html.escape(slice_runs[0])}, b = {html.escape(slice_runs[1])}</h2>"
                 + html_table(SLICE_HEADER, slice_cells(slices), "slices"))  # fmt: skip
    report = out_dir / REPORT_FILE
    report.write_text(html_report(rows, images, title, extra), encoding="utf-8")
    table = out_dir / "comparison.json"
    table.write_text(json.dumps([_row_json(r) for r in rows], indent=2), encoding="utf-8")
    return {**{p.stem: p for p in images.values()}, "report": report, "table": table, **files}


def _row_json(row: RunRow) -> dict[str, Any]:
    out = asdict(row)
    out.pop("metrics")
    out["loss"] = [list(p) for p in row.loss]
    return out


def log_comparison(tracker: Tracker, rows: Sequence[RunRow], files: dict[str, Path], metric: str) -> str:
    """A finished `qaflow.kind=comparison` run holding the report files as artifacts; returns its id."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    ids = ",".join(r.run_id for r in rows)
    rid = tracker.create_run(f"compare-{stamp}", tags={
        tag.KIND: tag.KIND_COMPARISON, tag.COMPARED_RUNS: ids[:4900], tag.COMPARE_METRIC: metric,
    })  # fmt: skip
    try:
        tracker.log_params(rid, {"compared_runs": len(rows)})
        tracker.log_artifacts(rid, [(path, "comparison") for path in files.values()])
    except Exception:
        tracker.finish(rid, "FAILED")
        raise
    tracker.finish(rid)
    return rid


# ------------------------------------------------------------------------------------------- slices


def slice_comparison(tracker: Tracker, a: RunRow, b: RunRow) -> list[dict[str, Any]]:
    """F1 by error slice of run `a` and run `b` side by side (with b - a); [] unless both logged slices."""
    table_a, table_b = tracker.slice_table(a.run_id), tracker.slice_table(b.run_id)
    return compare_slices(table_a, table_b) if table_a and table_b else []


SLICE_HEADER = ("dimension", "slice", "questions", "F1 a", "F1 b", "b - a")


def slice_cells(slices: Sequence[dict[str, Any]]) -> list[list[str]]:
    def signed(v: float | None) -> str:
        return "-" if v is None else f"{v:+.2f}"

    return [[s["dimension"], str(s["slice"]), _fmt(s["count"]), _fmt(s["a"]), _fmt(s["b"]), signed(s["delta"])]
            for s in slices]  # fmt: skip


def rich_slice_table(slices: Sequence[dict[str, Any]], runs: tuple[str, str]) -> Any:
    from rich.table import Table

    table = Table(title=f"F1 by error slice: a = {runs[0]}, b = {runs[1]} (where b gained or lost)")
    for name in SLICE_HEADER:
        table.add_column(name, justify="left" if name in ("dimension", "slice") else "right")
    for cells, s in zip(slice_cells(slices), slices, strict=True):
        delta = s["delta"]
        style = None if delta is None or abs(delta) < 0.005 else ("green" if delta > 0 else "red")
        table.add_row(*cells, style=style)
    return table


def compare(
    tracker: Tracker,
    *,
    run_ids: Sequence[str] = (),
    metric: str = "f1",
    output_dir: Path,
    log: bool = False,
    title: str = "qaflow runs",
) -> Comparison:
    """Collect `run_ids` (else the experiment's runs), write the report to `output_dir` and (`log`) log it as a
    comparison run of the tracker's experiment."""
    rows = collect_runs(tracker, run_ids=run_ids, metric=metric)
    if not rows:
        raise ValueError("no runs to compare")
    slices: list[dict[str, Any]] = []
    pair: tuple[str, str] | None = None
    if len(run_ids) == 2:  # in the order given: a = the first (e.g. the champion), b = the second
        by_id = {r.run_id: r for r in rows}
        a, b = by_id[run_ids[0]], by_id[run_ids[1]]
        slices, pair = slice_comparison(tracker, a, b), (a.label, b.label)
    files = write_report(rows, Path(output_dir), metric=metric, title=title, slices=slices, slice_runs=pair)
    run_id = log_comparison(tracker, rows, files, metric) if log else None
    return Comparison(rows, files, run_id, slices, pair if slices else None)
