"""Error slices of a scored prediction run: the table (`slices.json`), and a plot (`slices.png`).

Logging them to MLflow is `tasks.tracking.slice_tables` (this module needs no MLflow).

The slices themselves are the pure `tasks.core.slices.slice_table`; per-question scores come from the official
scorer's own per-question path (`tasks.core.metrics.per_question_scores`), with the same no-answer threshold as the
run's metrics, so each dimension's count-weighted mean is the run's EM/F1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tasks.core.data import QADataset, to_squad_json
from tasks.core.io import write_json_atomic
from tasks.core.metrics import per_question_scores
from tasks.core.slices import SliceRow, slice_table

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SLICES_JSON = "slices.json"
SLICES_PNG = "slices.png"
MAX_ARTICLES_PLOTTED = 12


def score_slices(
    dataset: QADataset, predictions: dict[str, str], null_odds: dict[str, float] | None, na_prob_thresh: float = 1.0
) -> list[SliceRow]:
    """Slice rows of one prediction run on `dataset` (v2: `null_odds` act as the na-probs, as in the metrics)."""
    probs = null_odds if dataset.version == "2.0" else None
    scores = per_question_scores(to_squad_json(dataset), predictions, probs, na_prob_thresh)
    return slice_table(dataset.examples, scores)


def plot_slices(rows: Sequence[SliceRow], path: Path, title: str = "F1 by slice") -> Path:
    """One horizontal bar panel per dimension: F1 per slice, labelled with its question count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = list(dict.fromkeys(r.dimension for r in rows))
    panels = [[r for r in rows if r.dimension == d][:MAX_ARTICLES_PLOTTED] for d in dims]
    heights = [max(1.2, 0.32 * len(p) + 0.6) for p in panels] or [1.0]
    fig, axes = plt.subplots(len(panels) or 1, 1, figsize=(8.0, sum(heights) + 0.8), squeeze=False,
                             gridspec_kw={"height_ratios": heights})  # fmt: skip
    for ax, dim, panel in zip(axes[:, 0], dims, panels, strict=False):
        labels = [f"{r.slice[:40]} (n={r.count})" for r in panel][::-1]
        bars = ax.barh(range(len(panel)), [r.f1 for r in panel][::-1], color="tab:blue")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
        ax.set_yticks(range(len(panel)), labels, fontsize=7)
        ax.set_xlim(0, 105)
        ax.set_title(dim, fontsize=9, loc="left")
    axes[-1, 0].set_xlabel("F1")
    fig.suptitle(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=90)
    plt.close(fig)
    return path


def write_slices(
    rows: Sequence[SliceRow], out_dir: Path, title: str = "F1 by slice", *, prefix: str = ""
) -> dict[str, Path]:
    """`slices.json` (list of rows) and `slices.png` in `out_dir` (`{prefix}_slices.json`, ... with a prefix)."""
    out = Path(out_dir)
    named = (lambda name: f"{prefix}_{name}") if prefix else (lambda name: name)
    return {
        "slices": write_json_atomic([r.to_dict() for r in rows], out / named(SLICES_JSON), indent=2),
        "slices_plot": plot_slices(rows, out / named(SLICES_PNG), title),
    }


def read_slices(path: Path) -> list[SliceRow]:
    return [SliceRow(**r) for r in json.loads(Path(path).read_text(encoding="utf-8"))]
