"""Stage 1, per feature: the valid (start, end) spans among each row's top-k start x top-k end indexes, in
run_qa.py's generation order (`feature_candidates`), and each row's null prediction (its CLS score)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tasks.core.postprocess.inputs import NBestSettings


def topk_desc(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the indexes `np.argsort(row)[-1:-k-1:-1]` (same order, ties included) and their values.

    Rows whose top k+1 values are distinct have one possible order (by value), found with a sort of the values
    and a threshold; rows with a tie among them are re-done with the reference's exact argsort call, so the tie
    order is numpy's, as in run_qa.py.
    """
    rows, width = x.shape
    if k >= width:
        if not np.isfinite(x).all():
            raise ValueError("start/end logits contain NaN or inf")
        idx = np.argsort(x, axis=1)[:, ::-1][:, :k]
        return idx, np.take_along_axis(x, idx, axis=1)
    ordered = np.sort(x, axis=1)
    if not (np.isfinite(ordered[:, 0]).all() and np.isfinite(ordered[:, -1]).all()):  # NaN sorts last
        raise ValueError("start/end logits contain NaN or inf")
    top = ordered[:, width - k - 1 :]  # the k+1 largest values, ascending
    tied = np.flatnonzero((top[:, 1:] == top[:, :-1]).any(axis=1))
    mask = x >= ordered[:, width - k, None]  # exactly k per untied row
    if tied.size:
        mask[tied] = False
        mask[tied, :k] = True
    flat = np.flatnonzero(mask)  # [rows * k], row-major
    vals = x.ravel()[flat].reshape(rows, k)
    pick = np.argsort(vals, axis=1)[:, ::-1] + (np.arange(rows) * k)[:, None]  # descending within each row
    flat = flat[pick]
    idx = flat - (np.arange(rows) * width)[:, None]
    if tied.size:
        idx[tied] = np.argsort(x[tied], axis=1)[:, ::-1][:, :k]
        flat[tied] = idx[tied] + (tied * width)[:, None]
    return idx, x.ravel()[flat]


@dataclass
class Candidates:
    """Valid spans of a range of feature rows (in generation order) and each row's null prediction."""

    row: np.ndarray  # int64 global feature row of each span, ascending
    score: np.ndarray
    start_logit: np.ndarray
    end_logit: np.ndarray
    s_char: np.ndarray  # int64
    e_char: np.ndarray  # int64
    null_score: np.ndarray  # one per row of the range
    null_start: np.ndarray
    null_end: np.ndarray

    def concat(self, other: Candidates) -> Candidates:
        return Candidates(*(np.concatenate([a, b]) for a, b in zip(self._fields(), other._fields(), strict=True)))

    def split(self, row_boundary: int, first_row: int) -> tuple[Candidates, Candidates]:
        """(rows < row_boundary, rows >= row_boundary) for a range starting at `first_row`."""
        c = int(np.searchsorted(self.row, row_boundary))
        r = row_boundary - first_row
        span = self._fields()[:6]
        nulls = self._fields()[6:]
        head = Candidates(*(a[:c] for a in span), *(a[:r] for a in nulls))
        tail = Candidates(*(a[c:] for a in span), *(a[r:] for a in nulls))
        return head, tail

    def _fields(self) -> tuple[np.ndarray, ...]:
        return (
            self.row,
            self.score,
            self.start_logit,
            self.end_logit,
            self.s_char,
            self.e_char,
            self.null_score,
            self.null_start,
            self.null_end,
        )


def feature_candidates(
    start: np.ndarray,
    end: np.ndarray,
    offsets: np.ndarray,
    cls_index: np.ndarray,
    first_row: int,
    settings: NBestSettings,
) -> Candidates:
    """All valid (start, end) pairs among each row's top-k start x top-k end indexes, in generation order."""
    rows, width = start.shape
    k = min(settings.n_best_size, width)
    si, sv = topk_desc(start, k)
    ej, ev = topk_desc(end, k)
    off_len = offsets.shape[1]
    off = np.ascontiguousarray(offsets).reshape(-1)  # [rows * off_len * 2]
    base = (np.arange(rows) * off_len)[:, None]
    s_at = (base + np.minimum(si, off_len - 1)) * 2
    e_at = (base + np.minimum(ej, off_len - 1)) * 2
    s_char = off[s_at].astype(np.int64)
    e_char = off[e_at + 1].astype(np.int64)
    s_ok = (si < off_len) & (s_char >= 0)
    e_ok = (ej < off_len) & (off[e_at] >= 0)
    # end - start over the [rows, k, k] grid, with unusable starts/ends pushed far apart so that one unsigned
    # comparison tests 0 <= end - start < max_answer_length and both tokens at once
    small = width < 2**14
    pos_type, far = (np.int16, 2**14) if small else (np.int32, 2**30)
    s_pos = np.where(s_ok, si, far).astype(pos_type)
    e_pos = np.where(e_ok, ej, -far).astype(pos_type)
    span = e_pos[:, None, :] - s_pos[:, :, None]
    valid = span.view(np.uint16 if small else np.uint32) < min(settings.max_answer_length, width)
    flat = np.flatnonzero(valid)
    row, rest = np.divmod(flat, k * k)
    i, j = np.divmod(rest, k)
    s_at, e_at = row * k + i, row * k + j
    sl, el = sv.ravel()[s_at], ev.ravel()[e_at]
    r = np.arange(rows)
    null_start, null_end = start[r, cls_index], end[r, cls_index]
    return Candidates(
        row=row + first_row,
        score=sl + el,
        start_logit=sl,
        end_logit=el,
        s_char=s_char.ravel()[s_at],
        e_char=e_char.ravel()[e_at],
        null_score=null_start + null_end,
        null_start=null_start,
        null_end=null_end,
    )
