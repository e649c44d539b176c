"""Sliding-window feature preparation for extractive QA (run_qa.py semantics).

`prepare_train_features` / `prepare_eval_features` reproduce the Hugging Face `run_qa.py` preparation
exactly (feature count and order, input ids, token type ids, attention mask, start/end labels, context
offsets) for the same fast tokenizer and settings, but build numpy arrays from whole tokenizer batches.

Speed: the tokenizer returns windows unpadded and numpy pads them; for question-first `TemplateProcessing`
tokenizers each distinct context is encoded once and shared by its questions (`_windows_shared_contexts`), with
the same values as the one tokenizer call (tested against it). Storage: compact dtypes (`IDS_DTYPE`,
`MASK_DTYPE`, `INDEX_DTYPE`; format 2); `collate` gives int64; format-1 (int64) files still load.

Padding: arrays are always stored padded to the effective max length. `pad_to_max_length=False` only changes
collation (`collate(..., dynamic=True)` trims the all-padding columns of each batch), so counts, order, ids
and labels are the same either way; labels are shifted when left padding is trimmed.

Imports only `tasks.core.{config, data, io, progress}` of qaflow.
"""

from __future__ import annotations

import copy
import gc
import logging
import multiprocessing
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from tasks.core.config import QAFlowConfig
from tasks.core.data import Example
from tasks.core.io import atomic_path
from tasks.core.progress import Progress, progress

logger = logging.getLogger(__name__)

NO_OFFSET = -1  # offsets value for tokens outside the context (run_qa.py's `None`)
_FORMAT_VERSION = 2  # 2: compact dtypes (below), training features without offsets; 1: int64 arrays (still read)
_READABLE_VERSIONS = (1, 2)
IDS_DTYPE = np.int32  # token ids: any vocabulary below 2**31 (uint16 would break vocabularies above 65,535)
MASK_DTYPE = np.uint8  # attention mask; token type ids too when they fit (else IDS_DTYPE)
INDEX_DTYPE = np.int32  # example_index, cls_index, start/end positions


@dataclass(frozen=True)
class FeatureSettings:
    max_seq_length: int = 384
    doc_stride: int = 128
    pad_to_max_length: bool = True
    question_policy: str = "error"  # a question too long for a window: error | truncate | skip (fit_questions)
    max_query_length: int = 64  # question tokens kept by the `truncate` policy


def feature_settings(cfg: QAFlowConfig) -> FeatureSettings:
    """The windows `cfg.features` asks for."""
    f = cfg.features
    return FeatureSettings(f.max_seq_length, f.doc_stride, f.pad_to_max_length, f.question_policy, f.max_query_length)


@dataclass
class Features:
    """Tokenised windows, one row per feature, in the order run_qa.py produces them.

    Arrays are always stored padded to `max_seq_length` (padding side as the tokenizer's); dynamic padding is
    applied per batch at collation time by trimming all-padding columns, so counts/order/ids never change.
    """

    input_ids: np.ndarray  # int32 [N, L] (int64 in format-1 files; `collate` gives int64)
    attention_mask: np.ndarray  # uint8 [N, L]
    token_type_ids: np.ndarray | None  # uint8 [N, L] or None when the tokenizer has none
    example_index: np.ndarray  # int32 [N]: index into the example list the features were built from
    cls_index: np.ndarray  # int32 [N]: position of the CLS token in each row
    offsets: np.ndarray | None  # int32 [N, L, 2]: char span in the context; (-1, -1) outside; None: not kept
    start_positions: np.ndarray | None  # int32 [N]: training label (cls_index when no answer in window)
    end_positions: np.ndarray | None  # int32 [N]

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])


_ARRAY_FIELDS = (
    "input_ids",
    "attention_mask",
    "token_type_ids",
    "example_index",
    "cls_index",
    "offsets",
    "start_positions",
    "end_positions",
)
_REQUIRED_FIELDS = ("input_ids", "attention_mask", "example_index", "cls_index")


@dataclass(frozen=True)
class _Plan:
    """Resolved, picklable parameters of one preparation run."""

    max_length: int
    stride: int
    pad_on_right: bool
    train: bool
    batch_size: int
    offsets: bool  # keep the context offsets (eval features, or training features a family reads them from)


# --------------------------------------------------------------------------------------------- settings


def require_fast_tokenizer(tokenizer: Any) -> None:
    """Raise `ValueError` unless `tokenizer` is a Hugging Face fast (Rust-backed) tokenizer."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"a fast tokenizer is required, got {type(tokenizer).__name__} (is_fast=False): sliding-window "
            "QA features need the offset mappings and sequence ids that only fast (tokenizers-backed) "
            "tokenizers return; load one with AutoTokenizer.from_pretrained(..., use_fast=True)"
        )


def effective_max_length(tokenizer: Any, settings: FeatureSettings) -> int:
    """`min(max_seq_length, tokenizer.model_max_length)`, warning when it clips (as run_qa.py does)."""
    model_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(model_max, int) and settings.max_seq_length > model_max:
        logger.warning(
            "max_seq_length=%d is larger than the maximum length for the model (%d); using max_seq_length=%d",
            settings.max_seq_length,
            model_max,
            model_max,
        )
        return model_max
    return settings.max_seq_length


def _make_plan(
    tokenizer: Any, settings: FeatureSettings, *, train: bool, batch_size: int, offsets: bool = True
) -> _Plan:
    require_fast_tokenizer(tokenizer)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    max_length = effective_max_length(tokenizer, settings)
    if max_length < 1:
        raise ValueError(f"max_seq_length must be >= 1, got {settings.max_seq_length}")
    if not 0 <= settings.doc_stride < max_length:
        raise ValueError(f"doc_stride must be in [0, {max_length}) (the max length), got {settings.doc_stride}")
    return _Plan(
        max_length=max_length,
        stride=settings.doc_stride,
        pad_on_right=tokenizer.padding_side == "right",
        train=train,
        batch_size=batch_size,
        offsets=offsets,
    )


# --------------------------------------------------------------------------------------------- long questions


def leaves_no_window(n_question: int, n_context: int, room: int, stride: int) -> bool:
    """Does a question of `n_question` tokens make run_qa.py's tokenisation fail? Only when the context does not
    fit beside it whole and the tokens left per window (`room` minus the question) do not exceed the stride."""
    return n_question + n_context > room and room - n_question <= stride


@dataclass
class QuestionFit:
    """The examples windowing will see, and which questions were truncated or skipped (by id)."""

    examples: list[Example]
    truncated: list[str]
    skipped: list[str]

    def report(self) -> dict[str, int]:
        return {"questions_truncated": len(self.truncated), "questions_skipped": len(self.skipped)}


def _context_lengths(contexts: Sequence[str], tokenizer: Any, batch_size: int) -> dict[str, int]:
    """Token count of each distinct context in `contexts`."""
    distinct = list(dict.fromkeys(contexts))
    lengths: dict[str, int] = {}
    for start in range(0, len(distinct), batch_size):
        batch = distinct[start : start + batch_size]
        ids = tokenizer(batch, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False)
        lengths.update(zip(batch, map(len, ids["input_ids"]), strict=True))
    return lengths


def fit_questions(
    examples: Sequence[Example], tokenizer: Any, settings: FeatureSettings, *, batch_size: int = 1000
) -> QuestionFit:
    """Apply `settings.question_policy` to questions too long for a window, before any model work.

    A question is too long when the tokens it leaves for context in a window do not exceed `doc_stride` (and the
    context does not fit beside it whole): run_qa.py's tokenisation then fails. Policies:

    * `error` (default): ValueError naming how many, the first id and its length, and the fixes. Nothing changes
      otherwise, so features stay identical to run_qa.py's.
    * `truncate`: every question longer than `max_query_length` tokens is cut to that many (the legacy SQuAD
      `max_query_length` rule, the same in training and prediction); counted.
    * `skip`: examples with a too-long question are left out (counted); prediction answers them with "".
    """
    require_fast_tokenizer(tokenizer)
    policy = settings.question_policy
    if policy not in ("error", "truncate", "skip"):
        raise ValueError(f"question_policy must be error, truncate or skip, got {policy!r}")
    max_length = effective_max_length(tokenizer, settings)
    room = max_length - tokenizer.num_special_tokens_to_add(pair=True)
    kept: list[Example] = []
    truncated: list[str] = []
    too_long: list[tuple[Example, int]] = []
    sized: list[tuple[Example, int]] = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        questions = tokenizer([ex.question.lstrip() for ex in batch], add_special_tokens=False,
                              return_offsets_mapping=policy == "truncate", return_attention_mask=False,
                              return_token_type_ids=False)  # fmt: skip
        q_offsets_rows = questions["offset_mapping"] if policy == "truncate" else [None] * len(batch)
        for ex, q_ids, q_offsets in zip(batch, questions["input_ids"], q_offsets_rows, strict=True):
            n_question = len(q_ids)
            if policy == "truncate" and n_question > settings.max_query_length:
                question = ex.question.lstrip()
                ex = replace(ex, question=question[: q_offsets[settings.max_query_length - 1][1]])
                truncated.append(ex.id)
                n_question = settings.max_query_length
            sized.append((ex, n_question))
    # only a question leaving at most doc_stride tokens can fail, so only their contexts are tokenised
    at_risk = [ex.context for ex, n in sized if room - n <= settings.doc_stride]
    context_tokens = _context_lengths(at_risk, tokenizer, batch_size)
    for ex, n_question in sized:
        if ex.context in context_tokens and leaves_no_window(
            n_question, context_tokens[ex.context], room, settings.doc_stride
        ):
            too_long.append((ex, n_question))
        else:
            kept.append(ex)
    if too_long and policy != "skip":
        first, n = too_long[0]
        fix = (
            f"lower max_query_length (now {settings.max_query_length})" if policy == "truncate"
            else "set question_policy: truncate (to max_query_length tokens) or skip"
        )  # fmt: skip
        raise ValueError(
            f"{len(too_long)} of {len(examples)} questions are too long for max_seq_length={max_length} with "
            f"doc_stride={settings.doc_stride} (first: {first.id!r}, {n} tokens, leaving {room - n} context tokens "
            f"per window; more than doc_stride are needed); {fix}, or raise max_seq_length"
        )
    return QuestionFit(kept, truncated, [ex.id for ex, _ in too_long])


# --------------------------------------------------------------------------------------------- tokenisation


def _tokenize(examples: Sequence[Example], tokenizer: Any, plan: _Plan, *, full: bool = True) -> Any:
    """One run_qa.py tokenizer call over `examples` (question lstripped; pair swapped for left padding).

    Windows come back unpadded (padding them is `_padded`'s job, in numpy: the same values the tokenizer's
    `padding="max_length"` writes, without converting the padding to Python lists); `full` adds offsets.
    """
    questions = [ex.question.lstrip() for ex in examples]
    contexts = [ex.context for ex in examples]
    first, second = (questions, contexts) if plan.pad_on_right else (contexts, questions)
    try:
        return tokenizer(
            first,
            second,
            truncation="only_second" if plan.pad_on_right else "only_first",
            max_length=plan.max_length,
            stride=plan.stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=full,
            return_attention_mask=False,
            padding=False,
        )
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the Rust backend panics (a BaseException) on impossible truncations
        raise _tokenize_error(examples, questions, tokenizer, plan, exc) from exc


def _tokenize_error(
    examples: Sequence[Example], questions: list[str], tokenizer: Any, plan: _Plan, exc: BaseException
) -> ValueError:
    """A readable error naming the first example whose question leaves no room for a strided window."""
    generic = ValueError(f"tokenizing {len(examples)} examples failed: {type(exc).__name__}: {exc}")
    try:
        n_questions = [len(ids) for ids in tokenizer(questions, add_special_tokens=False)["input_ids"]]
        contexts = [ex.context for ex in examples]
        n_contexts = [len(ids) for ids in tokenizer(contexts, add_special_tokens=False)["input_ids"]]
        room = plan.max_length - tokenizer.num_special_tokens_to_add(pair=True)
    except Exception:
        return generic
    for ex, n_question, n_context in zip(examples, n_questions, n_contexts, strict=True):
        if leaves_no_window(n_question, n_context, room, plan.stride):
            return ValueError(
                f"example {ex.id!r}: its question has {n_question} tokens, which leaves "
                f"{room - n_question} context tokens per window; that must exceed doc_stride={plan.stride} "
                f"(max_seq_length={plan.max_length}). Raise max_seq_length or lower doc_stride."
            )
    return generic


@dataclass
class _Windows:
    """Unpadded windows of one batch as Python lists: what `_prepare_batch` reads from the tokenizer."""

    ids: list[list[int]]
    type_ids: list[list[int]] | None
    offsets: list[list[tuple[int, int]]] | None  # None: read from `contexts` (or `encodings`) when needed
    sequence_ids: list[list[int | None]]  # exact for the context's tokens (the only ones read)
    sample: list[int]  # overflow_to_sample_mapping
    encodings: list[Any] | None = None
    contexts: _ContextSlices | None = None


@dataclass
class _ContextSlices:
    """The distinct contexts' tokens, concatenated, and where each window's context tokens should start."""

    ids: np.ndarray  # int64 [T]
    offsets: np.ndarray  # int32 [T, 2]
    start: np.ndarray  # int64 [windows]: index in `ids` of the window's first context token
    stop: np.ndarray  # int64 [windows]: end of the window's context in `ids` (no window reads past it)


def _context_offsets(
    slices: _ContextSlices, first: np.ndarray, last: np.ndarray, input_ids: np.ndarray
) -> np.ndarray | None:
    """Raw offsets [N, L, 2] with the context tokens' offsets (0 elsewhere) copied from the contexts' encodings,
    or None unless every window's context token ids equal the contexts' ids at the expected positions."""
    n, width = input_ids.shape
    count = np.where(first >= 0, last - first + 1, 0)
    if ((slices.start + count) > slices.stop).any():
        return None
    rows = np.repeat(np.arange(n), count)
    within = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    cols = np.repeat(first, count) + within
    source = np.repeat(slices.start, count) + within
    if not np.array_equal(input_ids[rows, cols], slices.ids[source]):
        return None
    out = np.zeros((n, width, 2), dtype=np.int32)
    out[rows, cols] = slices.offsets[source]
    return out


def _windows_via_call(examples: Sequence[Example], tokenizer: Any, plan: _Plan) -> _Windows:
    enc = _tokenize(examples, tokenizer, plan)
    return _Windows(
        ids=enc["input_ids"],
        type_ids=enc.get("token_type_ids"),
        offsets=enc["offset_mapping"],
        sequence_ids=[e.sequence_ids for e in enc.encodings],
        sample=enc["overflow_to_sample_mapping"],
    )


@dataclass
class _Backends:
    """Copies of the fast tokenizer's Rust backend: `single` encodes one text, `pair` truncates+templates pairs."""

    single: Any
    pair: Any
    with_types: bool


def _shared_context_backends(tokenizer: Any, plan: _Plan) -> _Backends | None:
    """Backends for `_windows_shared_contexts`, or None where that path is not known to be exact.

    It is used for question-first pairs (right padding) with a `TemplateProcessing` post-processor (BERT-style
    tokenizers); everything else takes the plain tokenizer call. The pair backend is set up as transformers'
    `set_truncation_and_padding` sets it for run_qa.py's call (only_second, max_length, stride), without padding.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not plan.pad_on_right or type(getattr(backend, "post_processor", None)).__name__ != "TemplateProcessing":
        return None
    single, pair = copy.deepcopy(backend), copy.deepcopy(backend)
    split_special = bool(getattr(tokenizer, "split_special_tokens", False))
    for copied in (single, pair):
        copied.no_padding()
        copied.encode_special_tokens = split_special
    single.no_truncation()
    pair.enable_truncation(
        plan.max_length, stride=plan.stride, strategy="only_second", direction=tokenizer.truncation_side
    )
    return _Backends(single, pair, "token_type_ids" in tokenizer.model_input_names)


def _windows_shared_contexts(examples: Sequence[Example], backends: _Backends, plan: _Plan) -> _Windows:
    """run_qa.py's windows with each distinct context tokenised once (SQuAD asks ~5 questions per paragraph).

    `Tokenizer.encode((question, context))` is "encode each text, then `post_process` the pair" (truncate with
    stride into overflowing windows, apply the template); this does the same steps with the context's encoding
    shared by its questions. Each text is encoded as its side of a pair with an empty other side, so it carries
    the type and sequence ids the pair call gives it. Ids, type ids, offsets and the context's sequence ids equal
    the tokenizer call's (tested against it); the question's sequence ids are not read.

    Offsets are not read window by window (Python tuples are the slowest part): window k of a question with q
    tokens should hold the context's tokens from k * (max_length - specials - q - stride) on (the tokenizer's
    strided truncation), and `_context_offsets` copies them from there after checking that the ids match;
    where they do not, the windows' own offsets are read.
    """
    contexts = list(dict.fromkeys(ex.context for ex in examples))
    encoded = backends.single.encode_batch([("", c) for c in contexts], add_special_tokens=False)
    by_context = dict(zip(contexts, encoded, strict=True))
    questions = backends.single.encode_batch([(ex.question.lstrip(), "") for ex in examples], add_special_tokens=False)
    context_ids = [e.ids for e in encoded]
    sizes = np.fromiter(map(len, context_ids), dtype=np.int64, count=len(context_ids))
    base = dict(zip(contexts, (np.cumsum(sizes) - sizes).tolist(), strict=True))
    end = dict(zip(contexts, np.cumsum(sizes).tolist(), strict=True))
    specials = backends.pair.num_special_tokens_to_add(True)
    windows: list[Any] = []
    sample: list[int] = []
    start: list[int] = []
    stop: list[int] = []
    for i, (ex, question) in enumerate(zip(examples, questions, strict=True)):
        main = backends.pair.post_process(question, by_context[ex.context], add_special_tokens=True)
        rows = [main, *main.overflowing]
        windows.extend(rows)
        sample.extend([i] * len(rows))
        step = plan.max_length - specials - len(question) - plan.stride
        start.extend(base[ex.context] + k * step for k in range(len(rows)))
        stop.extend([end[ex.context]] * len(rows))
    total = int(sizes.sum())
    slices = _ContextSlices(
        ids=np.fromiter(chain.from_iterable(context_ids), dtype=np.int64, count=total),
        offsets=np.fromiter(
            chain.from_iterable(chain.from_iterable(e.offsets for e in encoded)), dtype=np.int32, count=2 * total
        ).reshape(-1, 2),
        start=np.asarray(start, dtype=np.int64),
        stop=np.asarray(stop, dtype=np.int64),
    )
    return _Windows(
        ids=[w.ids for w in windows],
        type_ids=[w.type_ids for w in windows] if backends.with_types else None,
        offsets=None,
        sequence_ids=[w.sequence_ids for w in windows],
        sample=sample,
        encodings=windows,
        contexts=slices,
    )


def _windows(examples: Sequence[Example], tokenizer: Any, plan: _Plan, backends: _Backends | None) -> _Windows:
    if backends is None:
        return _windows_via_call(examples, tokenizer, plan)
    try:
        return _windows_shared_contexts(examples, backends, plan)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # impossible truncations (a question leaving no room for a strided window)
        questions = [ex.question.lstrip() for ex in examples]
        raise _tokenize_error(examples, questions, tokenizer, plan, exc) from exc


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


def _prepare_batch(
    examples: Sequence[Example], tokenizer: Any, plan: _Plan, backends: _Backends | None = None
) -> Features:
    """Features for one tokenizer batch; `example_index` is relative to `examples`."""
    enc = _windows(examples, tokenizer, plan, backends)
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
    raw_offsets = None if enc.contexts is None else _context_offsets(enc.contexts, first, last, input_ids)
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


# --------------------------------------------------------------------------------------------- assembly


def _empty(tokenizer: Any, plan: _Plan) -> Features:
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
    for name in _ARRAY_FIELDS:
        arrays = [getattr(part, name) for part in parts]
        if any(a is None for a in arrays):
            columns[name] = None
        elif name == "example_index":
            columns[name] = np.concatenate([a + s for a, s in zip(arrays, example_starts, strict=True)])
        else:
            columns[name] = np.concatenate(arrays)
    return Features(**columns)


def _prepare_serial(examples: Sequence[Example], tokenizer: Any, plan: _Plan, bar: Progress | None = None) -> Features:
    starts = list(range(0, len(examples), plan.batch_size))
    if not starts:
        return _empty(tokenizer, plan)
    backends = _shared_context_backends(tokenizer, plan)
    parts = []
    with _no_cyclic_gc():  # millions of short-lived token lists: the cycle collector would rescan them often
        for s in starts:
            parts.append(_prepare_batch(examples[s : s + plan.batch_size], tokenizer, plan, backends))
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


def _prepare_chunk(job: tuple[list[Example], Any, _Plan]) -> Features:
    examples, tokenizer, plan = job
    return _prepare_serial(examples, tokenizer, plan)


def _prepare(
    examples: Sequence[Example], tokenizer: Any, plan: _Plan, num_proc: int, desc: str | None = None
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
    plan = _make_plan(tokenizer, settings, train=True, batch_size=batch_size, offsets=offsets)
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
    plan = _make_plan(tokenizer, settings, train=False, batch_size=batch_size)
    return _prepare(examples, tokenizer, plan, num_proc, desc=progress_desc)


def count_features(
    examples: Sequence[Example], tokenizer: Any, settings: FeatureSettings, *, batch_size: int = 1000
) -> int:
    """Number of features (windows) the examples give, without padding, offsets or labels."""
    plan = _make_plan(tokenizer, settings, train=False, batch_size=batch_size)
    total = 0
    for start in range(0, len(examples), batch_size):
        enc = _tokenize(examples[start : start + batch_size], tokenizer, plan, full=False)
        total += len(enc["overflow_to_sample_mapping"])
    return total


# --------------------------------------------------------------------------------------------- batches


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


# --------------------------------------------------------------------------------------------- storage


def save_features(features: Features, path: str | os.PathLike[str], *, compress: bool = False) -> Path:
    """Write all arrays (in their compact dtypes) to one `.npz` atomically (temp file beside `path`, then
    rename); returns the path."""
    arrays = {name: getattr(features, name) for name in _ARRAY_FIELDS if getattr(features, name) is not None}
    arrays["format_version"] = np.array(_FORMAT_VERSION)
    saver = np.savez_compressed if compress else np.savez
    with atomic_path(path) as tmp, open(tmp, "xb") as handle:
        saver(handle, **arrays)
    return Path(path)


def load_features(path: str | os.PathLike[str]) -> Features:
    """Read features written by `save_features` (absent optional arrays come back as None); format-1 files
    (int64 arrays) load as they were stored."""
    with np.load(path, allow_pickle=False) as data:
        names = set(data.files)
        missing = [name for name in _REQUIRED_FIELDS if name not in names]
        if "format_version" not in names or missing:
            raise ValueError(f"{path}: not a qaflow features file (missing {missing or ['format_version']})")
        version = int(data["format_version"])
        if version not in _READABLE_VERSIONS:
            raise ValueError(f"{path}: features format {version} is not supported (expected {_FORMAT_VERSION})")
        return Features(**{name: (data[name] if name in names else None) for name in _ARRAY_FIELDS})
