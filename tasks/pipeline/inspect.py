"""`qaflow data inspect`: counts, feature count at given settings and a few random examples as a table.

Light: the feature count reads the checkpoint's `tokenizer.json` with `tokenizers` alone
(`tasks.core.tokenizer_file`), so the command imports neither transformers nor torch. Only a tokenizer without
that file (a hub id, a slow-only tokenizer) is loaded through transformers.
"""

from __future__ import annotations

import random
from pathlib import Path

from rich.console import Console
from rich.table import Table

from tasks.core.data import Example, dataset_summary, load_dataset_file
from tasks.core.features import FeatureSettings, count_features
from tasks.core.tokenizer_file import count_windows, read_tokenizer_file


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def feature_count(examples: list[Example], tokenizer: str, settings: FeatureSettings) -> int:
    """The windows `examples` give with `tokenizer` at `settings`, as `count_features` counts them."""
    light = read_tokenizer_file(tokenizer)
    if light is not None:
        return count_windows(examples, light, settings)
    # late: only a tokenizer without tokenizer.json needs transformers, which imports torch (seconds)
    from tasks.core.checkpoints import load_tokenizer

    return count_features(examples, load_tokenizer(tokenizer), settings)


def inspect_dataset(
    data: str | Path,
    *,
    tokenizer: str | None = "minilm",
    max_seq_length: int = 384,
    doc_stride: int = 128,
    n_examples: int = 3,
    seed: int = 0,
    console: Console | None = None,
) -> dict:
    """Print the summary and sample table; returns the summary (with `features` when a tokenizer is given)."""
    console = console or Console(width=140)
    dataset = load_dataset_file(data)
    summary = dataset_summary(dataset)
    if tokenizer:
        settings = FeatureSettings(max_seq_length=max_seq_length, doc_stride=doc_stride)
        summary["features"] = feature_count(dataset.examples, tokenizer, settings)
        summary["feature_settings"] = f"{max_seq_length}/{doc_stride}"
    counts = Table(title=f"{Path(data).name} (SQuAD v{dataset.version})")
    counts.add_column("measure")
    counts.add_column("value", justify="right")
    for key, value in summary.items():
        counts.add_row(str(key), str(value))
    console.print(counts)
    picks = random.Random(seed).sample(dataset.examples, min(n_examples, len(dataset.examples)))
    table = Table(title=f"{len(picks)} random examples (seed {seed})", show_lines=True)
    for col, width in (("id", 14), ("title", 16), ("question", 40), ("answers", 24), ("context", 50)):
        table.add_column(col, max_width=width, overflow="fold")
    for ex in picks:
        answers = " | ".join(a.text for a in ex.answers) or "(no answer)"
        table.add_row(ex.id, ex.title, ex.question, _clip(answers, 60), _clip(ex.context, 160))
    console.print(table)
    return summary
