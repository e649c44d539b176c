"""The entry points: `StreamingPostprocessor` (logits in batches of consecutive features; examples finalised as
soon as their features are all in, so memory is bounded by the batch) and the one-shot `postprocess_predictions` /
`postprocess_features` on top of it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tasks.core.data import Example
from tasks.core.features import Features
from tasks.core.postprocess.candidates import Candidates, feature_candidates
from tasks.core.postprocess.inputs import NBestSettings, check_logit_pair, check_meta, check_unique_ids
from tasks.core.postprocess.results import NBestView, Postprocessed
from tasks.core.postprocess.selection import Block, finalize

_BLOCK_ROWS = 2048  # features per block in the one-shot function (bounds the [rows, k, k] candidate grid)


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
        self._pending: Candidates | None = None
        self._blocks: list[Block] = []

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
        new = feature_candidates(start, end, self._offsets[lo:hi], cls, lo, self._settings)
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
            finalize(
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


def _assemble(blocks: list[Block], examples: Sequence[Example], settings: NBestSettings) -> Postprocessed:
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
