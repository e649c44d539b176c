"""Model batches from stored features: `row_batches` (longest windows first), `padding_band` and `collate`
(dynamic padding trims all-padding columns per batch and shifts the labels; int64 out)."""

from __future__ import annotations

import numpy as np

from tasks.core.features.settings import Features


def padding_band(mask: np.ndarray, multiple_of: int = 1) -> tuple[int, int]:
    """The contiguous non-padding column band [c0, c1) of a batch (left or right padding).

    With `multiple_of` > 1 the band is widened over padding columns (right first, then left) to a multiple of it,
    at most the stored width: fewer distinct batch shapes (each new one costs kernel selection on a GPU) and
    tensor-core-friendly sizes, as run_qa's `pad_to_multiple_of`.
    """
    width = mask.shape[1]
    cols = np.flatnonzero(mask.any(axis=0))
    if not cols.size:
        return 0, width
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    target = min(width, -(-(c1 - c0) // max(1, multiple_of)) * max(1, multiple_of))
    c1 = min(width, c0 + target)
    return c1 - target, c1


def row_batches(mask: np.ndarray, batch_size: int, *, by_length: bool = True) -> list[np.ndarray]:
    """Row indices in batches of `batch_size`, every row once: longest windows first (`by_length`: each dynamically
    padded batch then holds windows of similar length, and the first batch shows the peak memory), else in order."""
    order = np.argsort(-mask.sum(axis=1), kind="stable") if by_length else np.arange(len(mask))
    return [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]


def collate(features: Features, indices: np.ndarray, *, dynamic: bool, multiple_of: int = 1) -> dict[str, np.ndarray]:
    """Model inputs (and labels, for training features) of the rows `indices`.

    With `dynamic=True` the columns whose attention mask is 0 in every row of the batch are trimmed from both
    ends (right or left padding), keeping a width that is a multiple of `multiple_of` (`padding_band`); labels
    are shifted by the number of columns trimmed on the left. Every array comes back int64 (what the models
    take), whatever the stored dtypes.
    """
    idx = np.asarray(indices, dtype=np.int64)
    mask = features.attention_mask[idx]
    lo, hi = padding_band(mask, multiple_of) if dynamic else (0, mask.shape[1])
    batch = {"input_ids": features.input_ids[idx, lo:hi], "attention_mask": mask[:, lo:hi]}
    if features.token_type_ids is not None:
        batch["token_type_ids"] = features.token_type_ids[idx, lo:hi]
    if features.start_positions is not None and features.end_positions is not None:
        batch["start_positions"] = features.start_positions[idx].astype(np.int64) - lo
        batch["end_positions"] = features.end_positions[idx].astype(np.int64) - lo
    return {name: np.ascontiguousarray(array, dtype=np.int64) for name, array in batch.items()}
