"""One tokenizer batch as `Features` (`prepare_batch`): windows padded in numpy, CLS positions, context offsets and
run_qa.py's start/end training labels, vectorised over rows."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from typing import Any

import numpy as np

from tasks.core.data import Example
from tasks.core.features.settings import IDS_DTYPE, INDEX_DTYPE, MASK_DTYPE, NO_OFFSET, Features, Plan
from tasks.core.features.windows import Backends, batch_windows, context_offsets


def _padded(rows: list[list[Any]], lengths: np.ndarray, width: int, dtype: Any, fill: int, right: bool) -> np.ndarray:
    """Unpadded token rows (or rows of offset pairs) -> [n, width] (or [n, width, 2]) padded with `fill`."""
    pairs = bool(rows) and bool(rows[0]) and isinstance(rows[0][0], tuple)
    flat = chain.from_iterable(rows)
    total = int(lengths.sum())
    values = np.fromiter(chain.from_iterable(flat) if pairs else flat, dtype=dtype, count=total * (2 if pairs else 1))
    out = np.full((len(rows), width, 2) if pairs else (len(rows), width), fill, dtype=dtype)
    cols = np.arange(width)[None, :]
    real = cols < lengths[:, None] if right else cols >= width - lengths[:, None]
    out[real] = values.reshape(-1, 2) if pairs else values
    return out


def _context_span(
    sequence_ids: Sequence[list[int | None]], context_seq: int, width: int, right: bool
) -> tuple[np.ndarray, ...]:
    """Per (padded) row: first and last context token (-1 when none) and the boolean context mask."""
    n = len(sequence_ids)
    first = np.full(n, -1, dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    irregular: dict[int, list[int | None]] = {}
    for row, seq in enumerate(sequence_ids):
        count = seq.count(context_seq)
        if count == 0:
            continue
        shift = 0 if right else width - len(seq)  # left padding: the row's tokens end at the last column
        first[row] = shift + seq.index(context_seq)
        last[row] = shift + len(seq) - 1 - seq[::-1].index(context_seq)
        if last[row] - first[row] + 1 != count:  # not contiguous: keep the exact per-token mask
            irregular[row] = [None] * shift + seq + [None] * (width - shift - len(seq))
    cols = np.arange(width)
    mask = (cols[None, :] >= first[:, None]) & (cols[None, :] <= last[:, None])
    for row, seq in irregular.items():
        mask[row] = [s == context_seq for s in seq]
    return first, last, mask


def _cls_positions(input_ids: np.ndarray, tokenizer: Any) -> np.ndarray:
    """run_qa.py's CLS index: first `cls_token_id`, else first `bos_token_id`, else 0."""
    out = np.zeros(input_ids.shape[0], dtype=np.int64)
    found = np.zeros(input_ids.shape[0], dtype=bool)
    for token_id in (tokenizer.cls_token_id, tokenizer.bos_token_id):
        if token_id is None:
            continue
        hits = input_ids == token_id
        has = hits.any(axis=1)
        take = has & ~found
        out[take] = hits.argmax(axis=1)[take]
        found |= has
    return out


def _answer_chars(examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per example: has an answer, first answer's start char and end char (exclusive)."""
    has = np.array([bool(ex.answers) and not ex.is_impossible for ex in examples], dtype=bool)
    start = np.array([ex.answers[0].answer_start if ex.answers else 0 for ex in examples], dtype=np.int64)
    length = np.array([len(ex.answers[0].text) if ex.answers else 0 for ex in examples], dtype=np.int64)
    return has, start, start + length


def _train_labels(
    raw_offsets: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    cls_index: np.ndarray,
    has_answer: np.ndarray,
    start_char: np.ndarray,
    end_char: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """run_qa.py's start/end labels, vectorised over rows (raw offsets: special tokens are (0, 0)).

    Like run_qa.py, the start scan runs from the first context token while `offset_start <= start_char` over
    the raw offsets of the whole row, and the end scan runs back from the last context token while
    `offset_end >= end_char`; a window that does not fully contain the answer is labelled (cls, cls).
    """
    n, width = raw_offsets.shape[:2]
    rows = np.arange(n)
    cols = np.arange(width)[None, :]
    has_ctx = first >= 0
    f = np.where(has_ctx, first, 0)
    la = np.where(has_ctx, last, 0)
    sc = start_char[:, None]
    ec = end_char[:, None]
    inside = has_answer & has_ctx & (raw_offsets[rows, f, 0] <= start_char) & (raw_offsets[rows, la, 1] >= end_char)
    past_start = (cols >= f[:, None]) & (raw_offsets[:, :, 0] > sc)
    start = np.where(past_start.any(axis=1), past_start.argmax(axis=1), width) - 1
    before_end = (cols <= la[:, None]) & (raw_offsets[:, :, 1] < ec)
    end = width - before_end[:, ::-1].argmax(axis=1)  # last such column + 1
    labelled = inside & before_end.any(axis=1)  # run_qa.py would crash on the (empty answer at 0) remainder
    return np.where(labelled, start, cls_index), np.where(labelled, end, cls_index)


def prepare_batch(
    examples: Sequence[Example], tokenizer: Any, plan: Plan, backends: Backends | None = None
) -> Features:
    """Features for one tokenizer batch; `example_index` is relative to `examples`."""
    enc = batch_windows(examples, tokenizer, plan, backends)
    width, right = plan.max_length, tokenizer.padding_side == "right"
    ids_rows = enc.ids
    lengths = np.fromiter(map(len, ids_rows), dtype=np.int64, count=len(ids_rows))
    if (lengths > width).any():
        raise RuntimeError(f"tokenizer returned windows longer than max_length={width}")
    input_ids = _padded(ids_rows, lengths, width, IDS_DTYPE, tokenizer.pad_token_id or 0, right)
    attention_mask = _padded([[1] * n for n in lengths.tolist()], lengths, width, MASK_DTYPE, 0, right)
    token_type_ids = None
    if enc.type_ids is not None:
        types = _padded(enc.type_ids, lengths, width, np.int64, tokenizer.pad_token_type_id, right)
        fits = types.min(initial=0) >= 0 and types.max(initial=0) <= np.iinfo(MASK_DTYPE).max
        token_type_ids = types.astype(MASK_DTYPE if fits else IDS_DTYPE)
    example_index = np.asarray(enc.sample, dtype=INDEX_DTYPE)
    first, last, context_mask = _context_span(enc.sequence_ids, 1 if plan.pad_on_right else 0, width, right)
    raw_offsets = None if enc.contexts is None else context_offsets(enc.contexts, first, last, input_ids)
    if raw_offsets is None:
        rows = enc.offsets if enc.offsets is not None else [w.offsets for w in enc.encodings or ()]
        raw_offsets = _padded(rows, lengths, width, np.int32, 0, right)
    cls_index = _cls_positions(input_ids, tokenizer)
    start_positions = end_positions = None
    if plan.train:
        has, start_char, end_char = _answer_chars(examples)
        start_positions, end_positions = _train_labels(
            raw_offsets,
            first,
            last,
            cls_index,
            has[example_index],
            start_char[example_index],
            end_char[example_index],
        )
    offsets = None
    if plan.offsets:
        offsets = np.where(context_mask[:, :, None], raw_offsets, np.int32(NO_OFFSET)).astype(np.int32)
    return Features(
        input_ids=input_ids,
        attention_mask=attention_mask,
        token_type_ids=token_type_ids,
        example_index=example_index,
        cls_index=cls_index.astype(INDEX_DTYPE),
        offsets=offsets,
        start_positions=None if start_positions is None else start_positions.astype(INDEX_DTYPE),
        end_positions=None if end_positions is None else end_positions.astype(INDEX_DTYPE),
    )
