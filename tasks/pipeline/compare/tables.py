"""The comparison as tables: the runs table (v2 HasAns/NoAns columns when any run reports them), the benchmark
layout `GPU | Run Mode | train_steps_per_second` and the slices table, as cells, rich Tables or HTML."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from tasks.pipeline.compare.rows import MODE_ORDER, RunRow

BENCH_COLUMNS = ("GPU", "Run Mode", "train_steps_per_second", "steady_train_steps_per_second")
SLICE_HEADER = ("dimension", "slice", "questions", "F1 a", "F1 b", "b - a")

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


def cell(value: Any) -> str:
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
    return [c[0] for c in columns], [[cell(getattr(r, attr)) for _, attr in columns] for r in rows]


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
            t.add_row(*[cell(b[c]) for c in BENCH_COLUMNS])
        tables.append(t)
    return tables


def html_table(header: Sequence[str], body: Sequence[Sequence[str]], css_class: str = "runs") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>" for cells in body)
    return f'<table class="{css_class}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def slice_cells(slices: Sequence[dict[str, Any]]) -> list[list[str]]:
    def signed(v: float | None) -> str:
        return "-" if v is None else f"{v:+.2f}"

    return [[s["dimension"], str(s["slice"]), cell(s["count"]), cell(s["a"]), cell(s["b"]), signed(s["delta"])]
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
