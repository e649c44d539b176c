"""Stage 2, per example: rank its candidates (v2: with the null prediction), keep the top n_best, add the "empty"
filler or re-append the null where run_qa.py does, softmax the scores and pick the answer (v2: "" when the null
wins by more than the threshold). `finalize` does this for a run of complete examples at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tasks.core.data import Example
from tasks.core.postprocess.candidates import Candidates
from tasks.core.postprocess.inputs import NBestSettings


@dataclass
class Block:
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


def _null_predictions(cands: Candidates, row_group: np.ndarray, row_starts: np.ndarray) -> tuple[np.ndarray, ...]:
    """(score, start_logit, end_logit) per group: its first feature with the minimum null score."""
    gmin = np.minimum.reduceat(cands.null_score, row_starts)
    row = _segment_first(cands.null_score == gmin[row_group], row_starts)
    return cands.null_score[row], cands.null_start[row], cands.null_end[row]


def _rank(
    cands: Candidates, cand_group: np.ndarray, nulls: tuple[np.ndarray, ...], settings: NBestSettings
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
    cands: Candidates,
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


def finalize(
    cands: Candidates,
    row_group: np.ndarray,
    row_starts: np.ndarray,
    first_row: int,
    example_ids: np.ndarray,
    examples: Sequence[Example],
    ctx_len: np.ndarray,
    settings: NBestSettings,
) -> Block:
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
    return Block(
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
