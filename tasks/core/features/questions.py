"""Questions too long for a window: `fit_questions` applies `question_policy` (error | truncate | skip) before any
model work; `leaves_no_window` is the test run_qa.py's tokenisation would fail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from tasks.core.data import Example
from tasks.core.features.settings import FeatureSettings, effective_max_length, require_fast_tokenizer


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
