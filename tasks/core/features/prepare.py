"""The entry points: `prepare_train_features` / `prepare_eval_features` (batches in order, optionally in a spawn
pool, concatenated) and `count_features`."""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from tasks.core.data import Example
from tasks.core.features.arrays import prepare_batch
from tasks.core.features.settings import (
    ARRAY_FIELDS,
    IDS_DTYPE,
    INDEX_DTYPE,
    MASK_DTYPE,
    Features,
    FeatureSettings,
    Plan,
    make_plan,
)
from tasks.core.features.windows import shared_context_backends, tokenize_pairs
from tasks.core.progress import Progress, progress


def _empty(tokenizer: Any, plan: Plan) -> Features:
    width = plan.max_length
    vector = np.zeros(0, dtype=INDEX_DTYPE)
    has_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
    return Features(
        input_ids=np.zeros((0, width), dtype=IDS_DTYPE),
        attention_mask=np.zeros((0, width), dtype=MASK_DTYPE),
        token_type_ids=np.zeros((0, width), dtype=MASK_DTYPE) if has_types else None,
        example_index=vector,
        cls_index=vector.copy(),
        offsets=np.zeros((0, width, 2), dtype=np.int32) if plan.offsets else None,
        start_positions=vector.copy() if plan.train else None,
        end_positions=vector.copy() if plan.train else None,
    )


def _concat(parts: list[Features], example_starts: list[int]) -> Features:
    """Concatenate in order, shifting each part's `example_index` by where its examples start."""
    columns: dict[str, np.ndarray | None] = {}
    for name in ARRAY_FIELDS:
        arrays = [getattr(part, name) for part in parts]
        if any(a is None for a in arrays):
            columns[name] = None
        elif name == "example_index":
            columns[name] = np.concatenate([a + s for a, s in zip(arrays, example_starts, strict=True)])
        else:
            columns[name] = np.concatenate(arrays)
    return Features(**columns)


def _prepare_serial(examples: Sequence[Example], tokenizer: Any, plan: Plan, bar: Progress | None = None) -> Features:
    starts = list(range(0, len(examples), plan.batch_size))
    if not starts:
        return _empty(tokenizer, plan)
    backends = shared_context_backends(tokenizer, plan)
    parts = []
    with _no_cyclic_gc():  # millions of short-lived token lists: the cycle collector would rescan them often
        for s in starts:
            parts.append(prepare_batch(examples[s : s + plan.batch_size], tokenizer, plan, backends))
            if bar is not None:
                bar.update(len(examples[s : s + plan.batch_size]))
    return parts[0] if len(parts) == 1 else _concat(parts, starts)


@contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector (reference counting still frees everything built here)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _init_worker(threads: int) -> None:
    os.environ.setdefault("RAYON_NUM_THREADS", str(threads))


def _prepare_chunk(job: tuple[list[Example], Any, Plan]) -> Features:
    examples, tokenizer, plan = job
    return _prepare_serial(examples, tokenizer, plan)


def _prepare(
    examples: Sequence[Example], tokenizer: Any, plan: Plan, num_proc: int, desc: str | None = None
) -> Features:
    """Features of `examples` (a progress bar / log lines named `desc` when given)."""
    examples = list(examples)
    num_proc = max(1, min(num_proc, len(examples)))
    bar = progress(len(examples), desc, "examples") if desc else None
    try:
        if num_proc == 1:
            return _prepare_serial(examples, tokenizer, plan, bar)
        bounds = np.linspace(0, len(examples), num_proc + 1).astype(int).tolist()
        jobs = [(examples[a:b], tokenizer, plan) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        threads = max(1, (os.cpu_count() or 1) // num_proc)
        parts = []
        with multiprocessing.get_context("spawn").Pool(num_proc, _init_worker, (threads,)) as pool:
            for job, part in zip(jobs, pool.imap(_prepare_chunk, jobs, chunksize=1), strict=True):
                parts.append(part)
                if bar is not None:
                    bar.update(len(job[0]))
        return _concat(parts, bounds[:-1])
    finally:
        if bar is not None:
            bar.close()


def prepare_train_features(
    examples: Sequence[Example],
    tokenizer: Any,
    settings: FeatureSettings,
    *,
    num_proc: int = 1,
    batch_size: int = 1000,
    offsets: bool = True,
) -> Features:
    """run_qa.py training features: windows with start/end labels ((cls, cls) when a window lacks the answer).

    With `offsets` the context offsets are kept too ((-1, -1) outside the context); training of the extractive
    family does not read them and leaves them out. `num_proc > 1` tokenises contiguous chunks in a spawn pool
    and concatenates them in order: the output is identical to `num_proc=1`. Progress: a bar (or log lines)
    named `featurize train`.
    """
    plan = make_plan(tokenizer, settings, train=True, batch_size=batch_size, offsets=offsets)
    return _prepare(examples, tokenizer, plan, num_proc, desc="featurize train")


def prepare_eval_features(
    examples: Sequence[Example],
    tokenizer: Any,
    settings: FeatureSettings,
    *,
    num_proc: int = 1,
    batch_size: int = 1000,
    progress_desc: str | None = None,
) -> Features:
    """run_qa.py validation features: windows with context-only offsets ((-1, -1) elsewhere) and no labels.

    `progress_desc` names a progress bar (none by default: prediction featurizes chunk by chunk and shows its own).
    """
    plan = make_plan(tokenizer, settings, train=False, batch_size=batch_size)
    return _prepare(examples, tokenizer, plan, num_proc, desc=progress_desc)


def count_features(
    examples: Sequence[Example], tokenizer: Any, settings: FeatureSettings, *, batch_size: int = 1000
) -> int:
    """Number of features (windows) the examples give, without padding, offsets or labels."""
    plan = make_plan(tokenizer, settings, train=False, batch_size=batch_size)
    total = 0
    for start in range(0, len(examples), batch_size):
        enc = tokenize_pairs(examples[start : start + batch_size], tokenizer, plan, full=False)
        total += len(enc["overflow_to_sample_mapping"])
    return total
