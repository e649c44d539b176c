"""N-best post-processing for extractive QA: start/end logits -> answers, n-best lists and null odds.

Semantics are those of Hugging Face `utils_qa.postprocess_qa_predictions` (run_qa.py), computed with numpy over
all features at once instead of a Python loop per candidate span. Per example, over its features in order:

* feature null score = start_logits[cls] + end_logits[cls]; the example's null prediction is the feature with
  the minimum null score (the first one on ties). run_qa.py reads index 0; we read each feature's `cls_index`,
  which is 0 for right-padding (BERT-style) tokenizers and the CLS position for left-padding ones.
* candidates: the top `n_best_size` start and end indexes (the order of `np.argsort(x)[-1:-n-1:-1]`, ties
  included), skipping tokens outside the context (offsets (-1, -1)) or outside the offsets array, end < start
  and spans longer than `max_answer_length`; score = start_logit + end_logit (in the logits' dtype).
  run_qa.py's optional `token_is_max_context` check is not applied (qaflow's features never carry it).
* v2 adds the null prediction; all candidates are sorted by score, stable (ties keep generation order: feature,
  start rank, end rank, null last); the top `n_best_size` are kept and v2 re-appends the null prediction if it fell
  out (unless a kept span has char offsets (0, 0), as in run_qa.py).
* no candidate, or a single one with empty text -> an {"text": "empty"} entry (scores 0) is put first.
* probabilities: softmax over the kept scores (computed in float64, so they may differ from run_qa.py's float32
  values in the last bits). v1 answer: the first entry's text. v2: the first entry with non-empty text is the best
  non-null; score_diff = null_score - its start_logit - its end_logit (in the logits' dtype); the answer is ""
  when score_diff > null_score_diff_threshold. Where run_qa.py would raise IndexError (v2, every entry's text
  empty) we use start/end logits 0 for the best non-null and answer "".

The vectorised path is `postprocess_predictions` / `StreamingPostprocessor`; the plain per-candidate loop it is
checked against lives in `tests/oracles/nbest_loop.py` (test and benchmark oracle). Both give identical answers,
null odds, n-best order, texts, offsets and scores.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.data import Example
from tasks.core.features import Features
from tasks.core.io import write_json_atomic

_BLOCK_ROWS = 2048  # features per block in the one-shot function (bounds the [rows, k, k] candidate grid)


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


@dataclass
class Postprocessed:
    """Answers by example id, n-best lists (a read-only mapping; see `NBestView`) and, for v2, null odds.

    n-best entries: {"text", "probability", "score", "start_logit", "end_logit", "offsets": [start, end]} with
    Python floats; the null prediction has text "" and offsets [0, 0]; the "empty" filler has offsets [0, 0].
    """

    predictions: dict[str, str]
    nbest: Mapping[str, list[dict[str, Any]]]
    null_odds: dict[str, float] | None


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


# --------------------------------------------------------------------------------------------- stage 1: features


def _topk_desc(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
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
class _Cands:
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

    def concat(self, other: _Cands) -> _Cands:
        return _Cands(*(np.concatenate([a, b]) for a, b in zip(self._fields(), other._fields(), strict=True)))

    def split(self, row_boundary: int, first_row: int) -> tuple[_Cands, _Cands]:
        """(rows < row_boundary, rows >= row_boundary) for a range starting at `first_row`."""
        c = int(np.searchsorted(self.row, row_boundary))
        r = row_boundary - first_row
        span = self._fields()[:6]
        nulls = self._fields()[6:]
        head = _Cands(*(a[:c] for a in span), *(a[:r] for a in nulls))
        tail = _Cands(*(a[c:] for a in span), *(a[r:] for a in nulls))
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


def _feature_candidates(
    start: np.ndarray,
    end: np.ndarray,
    offsets: np.ndarray,
    cls_index: np.ndarray,
    first_row: int,
    settings: NBestSettings,
) -> _Cands:
    """All valid (start, end) pairs among each row's top-k start x top-k end indexes, in generation order."""
    rows, width = start.shape
    k = min(settings.n_best_size, width)
    si, sv = _topk_desc(start, k)
    ej, ev = _topk_desc(end, k)
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
    return _Cands(
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


# --------------------------------------------------------------------------------------------- stage 2: examples


@dataclass
class _Block:
    """Final n-best entries of a run of complete examples (entries of example g: offsets[g]:offsets[g + 1])."""

    examples: np.ndarray  # example indexes, one per group
    offsets: np.ndarray  # [groups + 1]
    score: np.ndarray
    start_logit: np.ndarray
    end_logit: np.ndarray
    s_char: np.ndarray
    e_char: np.ndarray
    filler: np.ndarray  # bool: the {"text": "empty"} entry
    probability: np.ndarray  # float64
    predictions: list[str]
    null_odds: np.ndarray | None


def _sorted(group: np.ndarray, score: np.ndarray, rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rel, group) of the entries in (group asc, score desc, rel asc) order: run_qa.py's stable sort per example.

    (group, rel) is unique, so for float32 scores one packed uint64 key and an unstable sort give that order.
    """
    score = score + score.dtype.type(0)  # -0.0 -> +0.0: equal scores must tie
    rel_bits = max(int(rel.max()).bit_length(), 1)
    group_bits = max(int(group[-1]).bit_length(), 1)
    if score.dtype != np.float32 or group_bits + 32 + rel_bits > 64:
        order = np.lexsort((rel, -score, group))
        return rel[order], group[order]
    u = score.view(np.uint32)
    asc = u ^ ((u >> np.uint32(31)) * np.uint32(0x7FFFFFFF) | np.uint32(0x80000000))  # order-preserving
    keys = group.astype(np.uint64) << np.uint64(32 + rel_bits)
    keys |= (~asc).astype(np.uint64) << np.uint64(rel_bits)
    keys |= rel.astype(np.uint64)
    keys.sort()
    rel_sorted = (keys & np.uint64((1 << rel_bits) - 1)).astype(np.int64)
    return rel_sorted, (keys >> np.uint64(32 + rel_bits)).astype(np.int64)


def _text_empty(s: np.ndarray, e: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Whether context[s:e] is "" for a context of length n (Python slice rules, s >= 0)."""
    e = np.where(e < 0, np.maximum(e + n, 0), e)
    return np.minimum(e, n) <= np.minimum(s, n)


def _segment_first(flags: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per segment (given by start offsets), the first position where `flags` is set, or len(flags) if none."""
    pos = np.where(flags, np.arange(flags.size), flags.size)
    return np.minimum.reduceat(pos, starts)


def _null_predictions(cands: _Cands, row_group: np.ndarray, row_starts: np.ndarray) -> tuple[np.ndarray, ...]:
    """(score, start_logit, end_logit) per group: its first feature with the minimum null score."""
    gmin = np.minimum.reduceat(cands.null_score, row_starts)
    row = _segment_first(cands.null_score == gmin[row_group], row_starts)
    return cands.null_score[row], cands.null_start[row], cands.null_end[row]


def _rank(
    cands: _Cands, cand_group: np.ndarray, nulls: tuple[np.ndarray, ...], settings: NBestSettings
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """The top n_best entries of each group in order: (group, rank, [score, sl, el, s_char, e_char], kept count).

    v2 entries include the null prediction, generated after every span of its example (it loses ties).
    """
    n_groups = nulls[0].size
    cnt = np.bincount(cand_group, minlength=n_groups)
    cand_start = np.concatenate([[0], np.cumsum(cnt)])
    rel = np.arange(cand_group.size) - cand_start[cand_group]  # generation order within the group
    fields = [cands.score, cands.start_logit, cands.end_logit, cands.s_char, cands.e_char]
    group, total = cand_group, cnt
    if settings.version_2_with_negative:
        zeros = np.zeros(n_groups, dtype=np.int64)
        fields = [np.concatenate([f, x]) for f, x in zip(fields, (*nulls, zeros, zeros), strict=True)]
        group, rel, total = np.concatenate([cand_group, np.arange(n_groups)]), np.concatenate([rel, cnt]), cnt + 1
    if group.size:
        rel, group = _sorted(group, fields[0], rel)
    seg = np.concatenate([[0], np.cumsum(total)])
    rank = np.arange(group.size) - seg[group]
    keep = np.flatnonzero(rank < settings.n_best_size)
    group, rank, rel = group[keep], rank[keep], rel[keep]
    src = np.where(rel >= cnt[group], cand_group.size + group, cand_start[group] + rel)
    return group, rank, [f[src] for f in fields], np.minimum(total, settings.n_best_size)


def _select(
    cands: _Cands,
    row_group: np.ndarray,
    row_starts: np.ndarray,
    first_row: int,
    ctx_len: np.ndarray,
    settings: NBestSettings,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Final n-best entry arrays of complete groups; returns (fields, group offsets, null score per group)."""
    n_groups = row_starts.size
    nulls = _null_predictions(cands, row_group, row_starts)
    group, rank, (score, sl, el, s_char, e_char), kept = _rank(cands, row_group[cands.row - first_row], nulls, settings)
    readd = np.zeros(n_groups, dtype=bool)
    if settings.version_2_with_negative:  # re-append the null prediction unless a kept entry has offsets (0, 0)
        readd[:] = True
        readd[group[(s_char == 0) & (e_char == 0)]] = False
    count = kept + readd
    empty_text = _text_empty(s_char, e_char, ctx_len[group])
    first_empty = np.zeros(n_groups, dtype=bool)
    first_empty[group[(rank == 0) & empty_text]] = True
    filler = (count == 0) | ((count == 1) & first_empty)  # the {"text": "empty"} entry goes first
    offsets = np.concatenate([[0], np.cumsum(count + filler)])
    size = int(offsets[-1])
    out = {name: np.zeros(size, dtype=score.dtype) for name in ("score", "start_logit", "end_logit")}
    out |= {"s_char": np.zeros(size, np.int64), "e_char": np.zeros(size, np.int64)}
    out |= {"filler": np.zeros(size, dtype=bool), "empty_text": np.zeros(size, dtype=bool)}
    pos = offsets[group] + filler[group] + rank
    values = (score, sl, el, s_char, e_char, empty_text)
    for name, value in zip(
        ("score", "start_logit", "end_logit", "s_char", "e_char", "empty_text"), values, strict=True
    ):
        out[name][pos] = value
    out["filler"][offsets[:-1][filler]] = True
    g_readd = np.flatnonzero(readd)
    pos = offsets[g_readd] + filler[g_readd] + kept[g_readd]
    for name, value in zip(("score", "start_logit", "end_logit"), nulls, strict=True):
        out[name][pos] = value[g_readd]
    out["empty_text"][pos] = True
    return out, offsets, nulls[0]


def _softmax_segments(score: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    starts = offsets[:-1]
    lengths = np.diff(offsets)
    x = score.astype(np.float64)
    x -= np.repeat(np.maximum.reduceat(x, starts), lengths)
    np.exp(x, out=x)
    x /= np.repeat(np.add.reduceat(x, starts), lengths)
    return x


def _finalize(
    cands: _Cands,
    row_group: np.ndarray,
    row_starts: np.ndarray,
    first_row: int,
    example_ids: np.ndarray,
    examples: Sequence[Example],
    ctx_len: np.ndarray,
    settings: NBestSettings,
) -> _Block:
    """Answers and n-best arrays of complete examples (groups of consecutive feature rows)."""
    out, offsets, null_score = _select(cands, row_group, row_starts, first_row, ctx_len[example_ids], settings)
    starts = offsets[:-1]
    probability = _softmax_segments(out["score"], offsets)
    nonempty = out["filler"] | ~out["empty_text"]
    if settings.version_2_with_negative:
        best = _segment_first(nonempty, starts)
        found = best < offsets[1:]
        best_c = np.minimum(best, out["score"].size - 1)
        zero = out["score"].dtype.type(0)
        b_start = np.where(found, out["start_logit"][best_c], zero)
        b_end = np.where(found, out["end_logit"][best_c], zero)
        diff = null_score - b_start - b_end
        answer_null = (diff > settings.null_score_diff_threshold) | ~found
        null_odds: np.ndarray | None = diff
    else:
        best, answer_null, null_odds = starts, np.zeros(starts.size, dtype=bool), None
    predictions = _answer_texts(out, best, answer_null, [examples[i].context for i in example_ids.tolist()])
    return _Block(
        examples=example_ids,
        offsets=offsets,
        score=out["score"],
        start_logit=out["start_logit"],
        end_logit=out["end_logit"],
        s_char=out["s_char"],
        e_char=out["e_char"],
        filler=out["filler"],
        probability=probability,
        predictions=predictions,
        null_odds=null_odds,
    )


def _answer_texts(
    out: dict[str, np.ndarray], best: np.ndarray, answer_null: np.ndarray, contexts: list[str]
) -> list[str]:
    best = np.minimum(best, out["score"].size - 1)  # `best` is out of range only where answer_null
    s, e, filler = (out[name][best].tolist() for name in ("s_char", "e_char", "filler"))
    return [
        "" if null else ("empty" if fill else ctx[a:z])
        for ctx, a, z, fill, null in zip(contexts, s, e, filler, answer_null.tolist(), strict=True)
    ]


# --------------------------------------------------------------------------------------------- n-best view


class NBestView(Mapping[str, list[dict[str, Any]]]):
    """Read-only `{example id: [n-best entries]}` built from arrays; entries are made on access.

    Building ~200k dicts costs more than the whole vectorised post-processing, so it is deferred until somebody
    reads the n-best lists. `to_dict()` (or `dict(view)`) materialises everything; equality with any mapping
    compares contents.
    """

    def __init__(self, ids: list[str], contexts: list[str], start: np.ndarray, stop: np.ndarray, arrays: dict):
        self._ids, self._contexts = ids, contexts
        self._start, self._stop = start.tolist(), stop.tolist()
        self._arrays = arrays
        self._lists: dict[str, list] | None = None
        self._index: dict[str, int] | None = None

    def __len__(self) -> int:
        return len(self._ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __contains__(self, key: object) -> bool:
        return key in self._id_index()

    def __getitem__(self, key: str) -> list[dict[str, Any]]:
        return self._entries(self._id_index()[key])

    def __repr__(self) -> str:
        return f"NBestView({len(self)} examples)"

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        """All n-best lists as plain dicts (the cyclic GC is paused meanwhile: it only slows allocation down)."""
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return {qid: self._entries(i) for i, qid in enumerate(self._ids)}
        finally:
            if was_enabled:
                gc.enable()

    def json_items(self) -> Iterator[tuple[str, str]]:
        """`(id, json.dumps(self[id]))` for every id in order, written without building the entry dicts.

        About twice as fast as dicts + `json.dumps` (~200k entries per SQuAD dev set, most of the time of
        `qaflow postprocess`), with the same bytes: `repr` is how json writes a finite float. Non-finite logits
        (json writes NaN / Infinity) take the dicts.
        """
        if self._lists is None:
            self._lists = {name: arr.tolist() for name, arr in self._arrays.items()}
        floats = ("probability", "score", "start_logit", "end_logit")
        if not all(np.isfinite(self._arrays[name]).all() for name in floats):
            yield from ((qid, json.dumps(self._entries(i))) for i, qid in enumerate(self._ids))
            return
        lists = self._lists
        s_char, e_char, filler = lists["s_char"], lists["e_char"], lists["filler"]
        prob, score, start_logit, end_logit = (lists[name] for name in floats)
        for i, qid in enumerate(self._ids):
            ctx = self._contexts[i]
            entries = [
                f'{{"text": {encode_basestring_ascii("empty" if filler[j] else ctx[s_char[j] : e_char[j]])}, '
                f'"probability": {prob[j]!r}, "score": {score[j]!r}, "start_logit": {start_logit[j]!r}, '
                f'"end_logit": {end_logit[j]!r}, "offsets": [{s_char[j]!r}, {e_char[j]!r}]}}'
                for j in range(self._start[i], self._stop[i])
            ]
            yield qid, "[" + ", ".join(entries) + "]"

    def _id_index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {qid: i for i, qid in enumerate(self._ids)}
        return self._index

    def _entries(self, i: int) -> list[dict[str, Any]]:
        if self._lists is None:
            self._lists = {name: arr.tolist() for name, arr in self._arrays.items()}
        a, b = self._start[i], self._stop[i]
        lists = self._lists
        ctx = self._contexts[i]
        return [
            {
                "text": "empty" if fill else ctx[s:e],
                "probability": p,
                "score": sc,
                "start_logit": sl,
                "end_logit": el,
                "offsets": [s, e],
            }
            for s, e, fill, p, sc, sl, el in zip(
                lists["s_char"][a:b],
                lists["e_char"][a:b],
                lists["filler"][a:b],
                lists["probability"][a:b],
                lists["score"][a:b],
                lists["start_logit"][a:b],
                lists["end_logit"][a:b],
                strict=True,
            )
        ]


# --------------------------------------------------------------------------------------------- streaming


class StreamingPostprocessor:
    """Post-process logits that arrive in batches of consecutive features (an example's features contiguous).

    `add_batch` keeps only the span candidates of the examples still incomplete (the pending tail) and finalises
    the others, so memory is bounded by the batch; `finish` returns the same result as `postprocess_predictions`.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        example_index: np.ndarray,
        offsets: np.ndarray,
        cls_index: np.ndarray,
        settings: NBestSettings,
    ) -> None:
        check_unique_ids(examples)
        self._examples, self._settings = examples, settings
        self._example_index, self._offsets, self._cls = check_meta(len(examples), example_index, offsets, cls_index)
        ei = self._example_index
        n = ei.shape[0]
        change = np.flatnonzero(ei[1:] != ei[:-1]) + 1
        self._run_starts = np.concatenate([[0], change, [n]]).astype(np.int64) if n else np.zeros(1, np.int64)
        self._run_example = ei[self._run_starts[:-1]]
        runs = np.bincount(self._run_example, minlength=len(examples))
        if (runs > 1).any():
            bad = examples[int(np.flatnonzero(runs > 1)[0])].id
            raise ValueError(f"the features of example {bad!r} are not contiguous")
        if (runs == 0).any():
            raise ValueError(f"example {examples[int(np.flatnonzero(runs == 0)[0])].id!r} has no features")
        self._run_of_row = np.repeat(np.arange(self._run_example.size), np.diff(self._run_starts))
        self._ctx_len = np.fromiter((len(ex.context) for ex in examples), dtype=np.int64, count=len(examples))
        self._seen = 0  # feature rows received
        self._done_run = 0  # runs (examples) finalised
        self._pending: _Cands | None = None
        self._blocks: list[_Block] = []

    @classmethod
    def from_features(
        cls, examples: Sequence[Example], features: Features, settings: NBestSettings
    ) -> StreamingPostprocessor:
        if features.offsets is None:
            raise ValueError("features have no offsets (eval features are needed)")
        return cls(examples, features.example_index, features.offsets, features.cls_index, settings)

    @property
    def features_seen(self) -> int:
        return self._seen

    def add_batch(self, feature_slice_start: int, start_logits: Any, end_logits: Any) -> int:
        """Add the logits of features [feature_slice_start, +rows); returns how many examples were finalised."""
        lo = int(feature_slice_start)
        if lo != self._seen:
            raise ValueError(f"batches must arrive in order: expected feature {self._seen}, got {lo}")
        rows = np.asarray(start_logits).shape[0]
        hi = lo + rows
        if hi > self._example_index.shape[0]:
            raise ValueError(f"batch [{lo}, {hi}) runs past the {self._example_index.shape[0]} features")
        if rows == 0:
            return 0
        cls = self._cls[lo:hi]
        start, end = check_logit_pair(start_logits, end_logits, cls, check_finite=False)  # checked when sorted
        new = _feature_candidates(start, end, self._offsets[lo:hi], cls, lo, self._settings)
        pending = new if self._pending is None else self._pending.concat(new)
        self._seen = hi
        last_run = int(np.searchsorted(self._run_starts, hi, side="right")) - 1  # runs before it are complete
        if last_run <= self._done_run:
            self._pending = pending
            return 0
        first_row = int(self._run_starts[self._done_run])
        boundary = int(self._run_starts[last_run])
        done, self._pending = pending.split(boundary, first_row)
        row_group = self._run_of_row[first_row:boundary] - self._done_run
        row_starts = self._run_starts[self._done_run : last_run] - first_row
        example_ids = self._run_example[self._done_run : last_run]
        self._blocks.append(
            _finalize(
                done,
                row_group,
                row_starts,
                first_row,
                example_ids,
                self._examples,
                self._ctx_len,
                self._settings,
            )
        )
        self._done_run = last_run
        return int(example_ids.size)

    def finish(self) -> Postprocessed:
        """All answers; raises ValueError if some features' logits never arrived."""
        total = self._example_index.shape[0]
        if self._seen != total:
            raise ValueError(f"logits arrived for {self._seen} of {total} features")
        return _assemble(self._blocks, self._examples, self._settings)


def _assemble(blocks: list[_Block], examples: Sequence[Example], settings: NBestSettings) -> Postprocessed:
    n_ex = len(examples)
    start = np.zeros(n_ex, dtype=np.int64)
    stop = np.zeros(n_ex, dtype=np.int64)
    answers: list[str] = [""] * n_ex
    odds = np.zeros(n_ex, dtype=np.float64)
    base = 0
    for block in blocks:
        start[block.examples] = base + block.offsets[:-1]
        stop[block.examples] = base + block.offsets[1:]
        base += int(block.offsets[-1])
        for i, text in zip(block.examples.tolist(), block.predictions, strict=True):
            answers[i] = text
        if block.null_odds is not None:
            odds[block.examples] = block.null_odds
    names = ("score", "start_logit", "end_logit", "s_char", "e_char", "filler", "probability")
    if blocks:
        arrays = {name: np.concatenate([getattr(b, name) for b in blocks]) for name in names}
    else:
        arrays = {name: np.zeros(0) for name in names}
    ids = [ex.id for ex in examples]
    nbest = NBestView(ids, [ex.context for ex in examples], start, stop, arrays)
    predictions = dict(zip(ids, answers, strict=True))
    null_odds = dict(zip(ids, odds.tolist(), strict=True)) if settings.version_2_with_negative else None
    return Postprocessed(predictions=predictions, nbest=nbest, null_odds=null_odds)


# --------------------------------------------------------------------------------------------- one-shot


def postprocess_predictions(
    examples: Sequence[Example],
    example_index: np.ndarray,
    offsets: np.ndarray,
    cls_index: np.ndarray,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    settings: NBestSettings,
) -> Postprocessed:
    """Answers, n-best lists and (v2) null odds for every example; features may come in any order."""
    ei, off, cls = check_meta(len(examples), example_index, offsets, cls_index)
    start, end = check_logit_pair(start_logits, end_logits, cls, check_finite=False)
    if ei.size > 1 and (np.diff(ei) < 0).any():  # group each example's features, keeping their order
        order = np.argsort(ei, kind="stable")
        ei, off, cls, start, end = ei[order], off[order], cls[order], start[order], end[order]
    stream = StreamingPostprocessor(examples, ei, off, cls, settings)
    for lo in range(0, ei.shape[0], _BLOCK_ROWS):
        stream.add_batch(lo, start[lo : lo + _BLOCK_ROWS], end[lo : lo + _BLOCK_ROWS])
    return stream.finish()


def postprocess_features(
    examples: Sequence[Example],
    features: Features,
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    settings: NBestSettings,
) -> Postprocessed:
    """`postprocess_predictions` with the metadata taken from eval `Features`."""
    if features.offsets is None:
        raise ValueError("features have no offsets (eval features are needed)")
    return postprocess_predictions(
        examples,
        features.example_index,
        features.offsets,
        features.cls_index,
        start_logits,
        end_logits,
        settings,
    )


# --------------------------------------------------------------------------------------------- files


def write_outputs(result: Postprocessed, out_dir: str | PathLike[str], *, prefix: str = "") -> dict[str, Path]:
    """predictions.json, nbest_predictions.json and (v2) null_odds.json, each written atomically."""
    out = Path(out_dir)

    def name(base: str) -> Path:
        return out / (f"{prefix}_{base}.json" if prefix else f"{base}.json")

    files = {"predictions": write_json_atomic(result.predictions, name("predictions"), indent=2)}
    nbest = result.nbest.to_dict() if isinstance(result.nbest, NBestView) else dict(result.nbest)
    files["nbest"] = write_json_atomic(nbest, name("nbest_predictions"))
    if result.null_odds is not None:
        files["null_odds"] = write_json_atomic(result.null_odds, name("null_odds"), indent=2)
    return files
