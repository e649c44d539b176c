"""What `qaflow demo` and `qaflow retrain` print at the end: the run's metrics table, the dev set's error slices and
the evaluation suite's table (rich tables; plain text, no colour codes, where the output is not a terminal)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.pipeline.error_slices import read_slices

# rich is imported inside the functions: `qaflow --help` and the light commands do not load it


def print_run_summary(summary: dict[str, Any], title: str) -> None:
    """A retrain flow's summary: metrics and throughput, data version, run and version; slices; the suite table."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=110)
    if summary["action"] == "skip":
        console.print(
            f"[bold]Nothing changed[/bold] (data version {summary['data_version']}): training skipped; "
            "metrics of the earlier run:"
        )
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in (summary.get("metrics") or {}).items():
        table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    for key in ("train_samples_per_second", "train_steps_per_second", "train_runtime"):
        if key in (summary.get("train") or {}):
            table.add_row(key, f"{summary['train'][key]:.2f}")
    table.add_row("data version", str(summary.get("data_version")))
    table.add_row("MLflow run", str(summary.get("run_id")))
    if summary.get("version"):
        table.add_row("registered version (challenger)", str(summary["version"]))
    console.print(table)
    if summary.get("mlflow_run_url"):
        console.print(f"MLflow run page: {summary['mlflow_run_url']}", soft_wrap=True)
    if summary.get("slices"):
        print_slices(Path(summary["slices"]), console)
    if summary.get("suite"):
        print_suite_table(summary["suite"], title=f"Evaluation suite {summary['suite']['suite']!r}: the trained model")


def print_next_steps() -> None:
    from rich.console import Console

    console = Console(width=110)
    console.print("Look further:")
    console.print(
        "  .venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db   # runs, metrics, slices, suites"
    )
    console.print("  .venv/bin/qaflow compare --runs RUN_A RUN_B                           # two runs, F1 by slice")
    console.print("  .venv/bin/qaflow evaluate --suite demo --model-uri models:/qaflow-qa@challenger   # rescore")
    console.print("  .venv/bin/qaflow promote                                              # suite-gated promotion")
    console.print("  .venv/bin/qaflow answer --question Q --context C                       # ask the champion")


def print_slices(path: Path, console: Any, dimensions: tuple[str, ...] = ("question word", "answer length")) -> None:
    """The dev set's F1 by slice for a few dimensions (all of them in the run's `slices.json` / MLflow table)."""
    from rich.table import Table

    if not path.is_file():
        return
    table = Table(title=f"Dev set by error slice ({path.name}; all dimensions in the MLflow run)")
    for name in ("dimension", "slice", "questions", "EM", "F1"):
        table.add_column(name, justify="left" if name in ("dimension", "slice") else "right")
    for row in read_slices(path):
        if row.dimension in dimensions:
            table.add_row(row.dimension, row.slice, str(row.count), f"{row.exact:.2f}", f"{row.f1:.2f}")
    console.print(table)


def print_suite_table(result: dict[str, Any], title: str | None = None) -> None:
    """The suite's member table (EM/F1 per member and the weighted suite score) and its MLflow run."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    table = Table(title=title or f"suite {result['suite']}: {result['model']}")
    columns = list(result["table"][0])
    for name in columns:
        table.add_column(name, justify="right" if name in {"questions", "weight", "margin", "EM", "F1"} else "left")
    for row in result["table"]:
        table.add_row(*["-" if row[c] is None else str(row[c]) for c in columns])
    summary = result["summary"]
    table.add_row("suite (weighted)", *[""] * (len(columns) - 3), f"{summary['suite_exact']:.2f}",
                  f"{summary['suite_f1']:.2f}")  # fmt: skip
    console.print(table)
    console.print(f"MLflow suite run {result['run_id']} (per-member slices under slices/<member>/)")
