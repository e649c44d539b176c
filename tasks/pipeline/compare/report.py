"""The report and the command: `write_report` (PNG plots, one self-contained HTML page, comparison.json and, for
two runs, slices_comparison.json), `log_comparison` (a `qaflow.kind=comparison` run holding them) and `compare`."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.pipeline.compare.plots import plot_loss, plot_metric, plot_throughput
from tasks.pipeline.compare.rows import RunRow, collect_runs, slice_comparison
from tasks.pipeline.compare.tables import (
    BENCH_COLUMNS,
    SLICE_HEADER,
    benchmark_table,
    cell,
    html_table,
    slice_cells,
    table_cells,
)
from tasks.tracking import tags as tag
from tasks.tracking.tracker import Tracker

SLICES_COMPARISON = "slices_comparison.json"
REPORT_FILE = "comparison.html"
THROUGHPUT_PNG = "throughput_by_mode.png"
LOSS_PNG = "loss_curves.png"


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


def html_report(rows: Sequence[RunRow], images: dict[str, Path], title: str, extra_html: str = "") -> str:
    """One self-contained page: the tables and every PNG embedded as base64."""
    header, body = table_cells(rows)
    parts = [html_table(header, body), *([extra_html] if extra_html else [])]
    bench = benchmark_table(rows)
    if bench:
        cells = [[cell(b[c]) for c in BENCH_COLUMNS] for b in bench]
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
