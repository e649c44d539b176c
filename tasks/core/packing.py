"""Sequence packing for span training: the windows of one batch share fixed-width rows, each seeing only itself.

SQuAD windows at 384/128 are about half padding (the bundled sample: 200 real tokens of 384 on average), and a
dynamically padded batch of 32 still pads to its longest window (1.85 tokens per real token). Packing places the
batch's windows into rows of `width` tokens, longest first, each into the first row with room (first-fit
decreasing): 1.12 tokens per real token on the same batches, and every row has the same width.

`pack_batch` returns plain arrays; the model side (a block-diagonal attention mask from `segment_ids`, positions
restarting at each window, the loss per window) is `tasks.families.span_packing`. The batch still holds
`per_device_train_batch_size` windows, as run_qa's does: only their layout changes.

Imports only `tasks.core.features` of qaflow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tasks.core.features import Features

PAD_SEGMENT = 0  # segment id of padding tokens; window k of a batch has segment id k + 1


@dataclass(frozen=True)
class PackLayout:
    """Where each window of a batch lies: `row[k]`, starting at column `column[k]`, in `n_rows` rows."""

    row: np.ndarray  # int64 [S]
    column: np.ndarray  # int64 [S]
    n_rows: int


def first_fit_decreasing(lengths: np.ndarray, width: int, row_counts: Sequence[int] = ()) -> PackLayout:
    """Place windows of `lengths` (each <= width) into rows of `width`: longest first, first row with room.

    With `row_counts` the row count rounds up to the first of them that holds the windows (empty rows are
    padding): a compiled model then sees only those few batch shapes (`static_row_counts`).
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and (lengths.max() > width or lengths.min() < 1):
        raise ValueError(f"packing: window lengths must lie in [1, {width}], got {lengths.min()}..{lengths.max()}")
    row = np.zeros(lengths.size, dtype=np.int64)
    column = np.zeros(lengths.size, dtype=np.int64)
    used: list[int] = []  # tokens taken per row
    for k in np.argsort(-lengths, kind="stable"):
        n = int(lengths[k])
        r = next((i for i, taken in enumerate(used) if taken + n <= width), len(used))
        if r == len(used):
            used.append(0)
        row[k], column[k] = r, used[r]
        used[r] += n
    needed = max(len(used), 1)
    return PackLayout(row=row, column=column, n_rows=next((c for c in sorted(row_counts) if c >= needed), needed))


def static_row_counts(
    lengths: np.ndarray, batch_size: int, width: int, *, quantile: float = 0.99, samples: int = 512, seed: int = 0
) -> tuple[int, ...]:
    """Two row counts for packed batches of static shape: the rows that a `quantile` of random batches of
    `batch_size` windows (drawn from `lengths`) fit into, and `batch_size` itself (any batch fits: a window never
    needs more than one row). Batches round up to one of the two, so a compiled step (or a CUDA graph) is built
    twice at most, at the price of a few empty rows per batch.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    draw = min(batch_size, len(lengths))
    if draw == 0:
        return (batch_size,)
    rng = np.random.default_rng(seed)
    needed = [first_fit_decreasing(rng.choice(lengths, size=draw, replace=False), width).n_rows for _ in range(samples)]
    typical = int(np.ceil(np.quantile(needed, quantile)))
    return tuple(sorted({min(typical, batch_size), batch_size}))


def real_spans(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First real column and real-token count of each row (real tokens are contiguous: right or left padding)."""
    real = mask.astype(bool)
    count = real.sum(axis=1).astype(np.int64)
    first = np.where(count > 0, real.argmax(axis=1), 0).astype(np.int64)
    return first, count


def pack_batch(
    features: Features, indices: np.ndarray, *, width: int, row_counts: Sequence[int] = (), position_offset: int = 0
) -> dict[str, np.ndarray]:
    """The windows `indices` packed into rows of `width` (int64 arrays, what the models take).

    Per token: `input_ids`, `token_type_ids` (when the features have them), `position_ids` (`position_offset`
    plus the position inside its own window, as the window alone would get) and `segment_ids` (`PAD_SEGMENT` for
    padding, k + 1 for the k-th window). Per window: `window_row`, `window_column`, `window_length` and, for
    training features, `start_positions` / `end_positions` counted from the window's first real token.
    """
    idx = np.asarray(indices, dtype=np.int64)
    first, length = real_spans(features.attention_mask[idx])
    layout = first_fit_decreasing(length, width, row_counts)
    shape = (layout.n_rows, width)
    input_ids = np.zeros(shape, dtype=np.int64)
    token_types = np.zeros(shape, dtype=np.int64) if features.token_type_ids is not None else None
    positions = np.full(shape, position_offset, dtype=np.int64)
    segments = np.full(shape, PAD_SEGMENT, dtype=np.int64)
    for k, i in enumerate(idx):
        r, c, n, f = layout.row[k], layout.column[k], length[k], first[k]
        input_ids[r, c : c + n] = features.input_ids[i, f : f + n]
        if token_types is not None:
            token_types[r, c : c + n] = features.token_type_ids[i, f : f + n]
        positions[r, c : c + n] = position_offset + np.arange(n)
        segments[r, c : c + n] = k + 1
    batch = {"input_ids": input_ids, "position_ids": positions, "segment_ids": segments,
             "window_row": layout.row, "window_column": layout.column, "window_length": length}  # fmt: skip
    if token_types is not None:
        batch["token_type_ids"] = token_types
    if features.start_positions is not None and features.end_positions is not None:
        batch["start_positions"] = features.start_positions[idx].astype(np.int64) - first
        batch["end_positions"] = features.end_positions[idx].astype(np.int64) - first
    return batch
