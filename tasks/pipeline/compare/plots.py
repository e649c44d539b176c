"""The comparison's PNG plots (matplotlib, Agg backend, imported only when plotting): throughput by run mode,
a metric per run and the loss curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.pipeline.compare.rows import MODE_ORDER, RunRow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


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
