"""What post-processing reads: `NBestSettings` (run_qa.py's n-best options) and the checks on the logits, the
feature metadata (example index, offsets, CLS index) and the example ids, each failing with a ValueError."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tasks.core.data import Example


@dataclass(frozen=True)
class NBestSettings:
    n_best_size: int = 20
    max_answer_length: int = 30
    version_2_with_negative: bool = False
    null_score_diff_threshold: float = 0.0

    def __post_init__(self) -> None:
        if self.n_best_size < 1:
            raise ValueError(f"n_best_size must be >= 1, got {self.n_best_size}")
        if self.max_answer_length < 1:
            raise ValueError(f"max_answer_length must be >= 1, got {self.max_answer_length}")


# --------------------------------------------------------------------------------------------- validation


def _as_logits(x: Any, name: str, *, check_finite: bool = True) -> np.ndarray:
    """2-D float32 (float64 kept as is) C-contiguous array of (by default, checked) finite logits."""
    arr = np.asarray(x)
    if arr.dtype != np.float64:
        arr = arr.astype(np.float32, copy=False)
    arr = np.ascontiguousarray(arr)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [features, seq_len], got shape {arr.shape}")
    if check_finite and not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or inf")
    return arr


def check_logit_pair(
    start: Any, end: Any, cls_index: np.ndarray, *, check_finite: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    s = _as_logits(start, "start_logits", check_finite=check_finite)
    e = _as_logits(end, "end_logits", check_finite=check_finite)
    if s.shape != e.shape:
        raise ValueError(f"start_logits {s.shape} and end_logits {e.shape} differ in shape")
    if s.shape[0] != cls_index.shape[0]:
        raise ValueError(f"{s.shape[0]} rows of logits for {cls_index.shape[0]} features")
    if cls_index.size and int(cls_index.max()) >= s.shape[1]:
        raise ValueError(f"cls_index {int(cls_index.max())} is outside the logits' {s.shape[1]} columns")
    return s, e


def check_meta(
    n_examples: int, example_index: Any, offsets: Any, cls_index: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ei = np.asarray(example_index, dtype=np.int64).reshape(-1)
    off = np.asarray(offsets)
    cls = np.asarray(cls_index, dtype=np.int64).reshape(-1)
    n = ei.shape[0]
    if off.ndim != 3 or off.shape[0] != n or off.shape[2] != 2:
        raise ValueError(f"offsets must have shape [{n}, seq_len, 2], got {off.shape}")
    if cls.shape[0] != n:
        raise ValueError(f"cls_index has {cls.shape[0]} rows for {n} features")
    if n and (ei.min() < 0 or ei.max() >= n_examples):
        raise ValueError(f"example_index must be in [0, {n_examples}), got [{ei.min()}, {ei.max()}]")
    if n and cls.min() < 0:
        raise ValueError("cls_index must be >= 0")
    return ei, off, cls


def check_unique_ids(examples: Sequence[Example]) -> None:
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise ValueError(f"duplicate example id {ex.id!r}")
        seen.add(ex.id)
