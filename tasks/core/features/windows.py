"""Tokenisation into run_qa.py's overflowing windows, unpadded (`batch_windows`): the one tokenizer call over the
pairs, or, for question-first `TemplateProcessing` tokenizers, each distinct context encoded once and shared by its
questions (`_windows_shared_contexts`), with the same values (tested against the call)."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from tasks.core.data import Example
from tasks.core.features.questions import leaves_no_window
from tasks.core.features.settings import Plan


def tokenize_pairs(examples: Sequence[Example], tokenizer: Any, plan: Plan, *, full: bool = True) -> Any:
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
    examples: Sequence[Example], questions: list[str], tokenizer: Any, plan: Plan, exc: BaseException
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
    """Unpadded windows of one batch as Python lists: what `prepare_batch` reads from the tokenizer."""

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


def context_offsets(
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


def _windows_via_call(examples: Sequence[Example], tokenizer: Any, plan: Plan) -> _Windows:
    enc = tokenize_pairs(examples, tokenizer, plan)
    return _Windows(
        ids=enc["input_ids"],
        type_ids=enc.get("token_type_ids"),
        offsets=enc["offset_mapping"],
        sequence_ids=[e.sequence_ids for e in enc.encodings],
        sample=enc["overflow_to_sample_mapping"],
    )


@dataclass
class Backends:
    """Copies of the fast tokenizer's Rust backend: `single` encodes one text, `pair` truncates+templates pairs."""

    single: Any
    pair: Any
    with_types: bool


def shared_context_backends(tokenizer: Any, plan: Plan) -> Backends | None:
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
    return Backends(single, pair, "token_type_ids" in tokenizer.model_input_names)


def _windows_shared_contexts(examples: Sequence[Example], backends: Backends, plan: Plan) -> _Windows:
    """run_qa.py's windows with each distinct context tokenised once (SQuAD asks ~5 questions per paragraph).

    `Tokenizer.encode((question, context))` is "encode each text, then `post_process` the pair" (truncate with
    stride into overflowing windows, apply the template); this does the same steps with the context's encoding
    shared by its questions. Each text is encoded as its side of a pair with an empty other side, so it carries
    the type and sequence ids the pair call gives it. Ids, type ids, offsets and the context's sequence ids equal
    the tokenizer call's (tested against it); the question's sequence ids are not read.

    Offsets are not read window by window (Python tuples are the slowest part): window k of a question with q
    tokens should hold the context's tokens from k * (max_length - specials - q - stride) on (the tokenizer's
    strided truncation), and `context_offsets` copies them from there after checking that the ids match;
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


def batch_windows(examples: Sequence[Example], tokenizer: Any, plan: Plan, backends: Backends | None) -> _Windows:
    if backends is None:
        return _windows_via_call(examples, tokenizer, plan)
    try:
        return _windows_shared_contexts(examples, backends, plan)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # impossible truncations (a question leaving no room for a strided window)
        questions = [ex.question.lstrip() for ex in examples]
        raise _tokenize_error(examples, questions, tokenizer, plan, exc) from exc
