"""Validating records, shared by all formats: required fields and types, answers found at their start, the
unanswerable rules, unique ids, and the error/skip policy (`Collector`)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tasks.core.data.examples import (
    Answer,
    ColumnMap,
    DataError,
    Example,
    Policy,
    QADataset,
    SkippedRecord,
    show_label,
)
from tasks.core.data.files import JSONLimit, loads_bounded
from tasks.core.data.text import json_kind, lone_surrogate, quoted, text_problem

log = logging.getLogger(__package__)  # "tasks.core.data", as before the package was split

MISSING: Any = object()


class RecordError(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _req_str(rec: Mapping[str, Any], key: str, what: str) -> str:
    value = rec.get(key, MISSING)
    if value is MISSING or value is None:
        raise RecordError(key, "missing" if value is MISSING else "missing (null)")
    if not isinstance(value, str):
        raise RecordError(key, f"expected a string, got {json_kind(value)}")
    problem = text_problem(value, what)
    if problem:
        raise RecordError(key, problem)
    return value


def _opt_str(rec: Mapping[str, Any], key: str) -> str:
    value = rec.get(key, MISSING)
    if value is MISSING or value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(key, f"expected a string, got {json_kind(value)}")
    if (lone := lone_surrogate(value)) is not None:
        raise RecordError(key, f"lone surrogate U+{ord(value[lone]):04X} at character {lone}")
    return value


def _answer(text: Any, start: Any, text_field: str, start_field: str) -> Answer:
    if not isinstance(text, str):
        raise RecordError(text_field, f"expected a string, got {json_kind(text)}")
    problem = text_problem(text, "answer text")
    if problem:
        raise RecordError(text_field, problem)
    if isinstance(start, bool) or not isinstance(start, int):
        raise RecordError(start_field, f"expected an integer, got {json_kind(start)}")
    return Answer(text, start)


def _parse_answers(value: Any, name: str, *, text_cells: bool) -> list[tuple[Answer, str]]:
    """Answers (list or HF-dict form) with the field path of each answer's start, for messages."""
    if value is None:
        return []
    if text_cells and isinstance(value, str):
        if not value.strip():
            return []
        try:
            value = loads_bounded(value)
        except json.JSONDecodeError as e:
            raise RecordError(name, f"not valid JSON ({e.msg} at column {e.colno})") from None
        except JSONLimit as e:
            raise RecordError(name, str(e)) from None
        if value is None:
            return []
    if isinstance(value, dict):
        texts, starts = value.get("text", MISSING), value.get("answer_start", MISSING)
        for key, items in (("text", texts), ("answer_start", starts)):
            if items is MISSING:
                raise RecordError(f"{name}.{key}", "missing")
            if not isinstance(items, list | tuple):
                raise RecordError(f"{name}.{key}", f"expected an array, got {json_kind(items)}")
        if len(texts) != len(starts):
            raise RecordError(name, f"{len(texts)} texts but {len(starts)} answer_start values")
        return [
            (_answer(t, s, f"{name}.text[{i}]", f"{name}.answer_start[{i}]"), f"{name}.answer_start[{i}]")
            for i, (t, s) in enumerate(zip(texts, starts, strict=True))
        ]
    if isinstance(value, list | tuple):
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise RecordError(f"{name}[{i}]", f"expected an object {{text, answer_start}}, got {json_kind(item)}")
            for key in ("text", "answer_start"):
                if key not in item:
                    raise RecordError(f"{name}[{i}].{key}", "missing")
            start_field = f"{name}[{i}].answer_start"
            out.append((_answer(item["text"], item["answer_start"], f"{name}[{i}].text", start_field), start_field))
        return out
    raise RecordError(
        name,
        f"expected a list of {{text, answer_start}} or {{text: [...], answer_start: [...]}}, got {json_kind(value)}",
    )


def _check_alignment(answers: list[tuple[Answer, str]], context: str) -> None:
    for ans, start_field in answers:
        start, end = ans.answer_start, ans.answer_start + len(ans.text)
        if start < 0:
            raise RecordError(start_field, f"negative answer_start {start}")
        if context[start:end] == ans.text:
            continue
        if end > len(context):
            reason = f"text {quoted(ans.text)} not found at {start} (context is only {len(context)} characters)"
        else:
            reason = f"text {quoted(ans.text)} not found at {start} (context has {quoted(context[start:end])})"
        found = context.find(ans.text)
        if found >= 0:
            reason += f"; it first occurs at {found}"
        raise RecordError(start_field, reason)


def _parse_bool(value: Any, name: str, *, text_cells: bool) -> bool | None:
    """True/False, or None when absent/empty."""
    if value is MISSING or value is None:
        return None
    if isinstance(value, bool):
        return value
    if text_cells and isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return None
        if word in {"true", "1", "yes"}:
            return True
        if word in {"false", "0", "no"}:
            return False
        raise RecordError(name, f"expected true/false, got {quoted(value)}")
    raise RecordError(name, f"expected a boolean, got {json_kind(value)}")


def _build_example(
    rec: Any, cols: ColumnMap, *, text_cells: bool, empty_answers_ok: bool, labels_optional: bool = False
) -> tuple[Example, bool, int]:
    """Validate one record; returns the example, whether it carried an is_impossible field and how many of its
    answers were trimmed of surrounding whitespace (`trimmed`).

    With `labels_optional`, a record without an answers field is an unlabeled question (to predict, not score).
    """
    if not isinstance(rec, dict):
        raise RecordError("record", f"expected an object, got {json_kind(rec)}")
    ex_id = _req_str(rec, cols.id, "id")
    question = _req_str(rec, cols.question, "question")
    context = _req_str(rec, cols.context, "context")
    title = _opt_str(rec, cols.title)
    if cols.answers not in rec and labels_optional:
        return Example(id=ex_id, title=title, context=context, question=question, answers=()), False, 0
    if cols.answers not in rec:
        raise RecordError(cols.answers, "missing (use an empty list for an unanswerable question)")
    answers = _parse_answers(rec[cols.answers], cols.answers, text_cells=text_cells)
    plausible = _parse_answers(rec.get(cols.plausible_answers), cols.plausible_answers, text_cells=text_cells)
    raw_flag = rec.get(cols.is_impossible, MISSING)
    flag = _parse_bool(raw_flag, cols.is_impossible, text_cells=text_cells)
    if flag is True and answers:
        raise RecordError(cols.answers, f"unanswerable (is_impossible is true) but has {len(answers)} answer(s)")
    if flag is False and not answers:
        raise RecordError(cols.answers, "answerable (is_impossible is false) but has no answers")
    if flag is None and not answers and not empty_answers_ok:
        raise RecordError(
            cols.answers, "no answers (in SQuAD v1.1 every question needs one; mark v2.0 ones is_impossible)"
        )
    _check_alignment(answers, context)
    _check_alignment(plausible, context)
    example = Example(
        id=ex_id,
        title=title,
        context=context,
        question=question,
        answers=tuple(trimmed(a) for a, _ in answers),
        is_impossible=flag if flag is not None else not answers,
        plausible_answers=tuple(trimmed(a) for a, _ in plausible),
    )
    n_trimmed = sum(a.text != a.text.strip() for a, _ in (*answers, *plausible))
    return example, raw_flag is not MISSING and raw_flag is not None, n_trimmed


def trimmed(answer: Answer) -> Answer:
    """The answer without surrounding whitespace, its start moved to match (the legacy SQuAD processor's
    `whitespace_tokenize`: a label on " Paris" would otherwise take in the neighbouring word)."""
    text = answer.text.strip()
    if text == answer.text:
        return answer
    return Answer(text, answer.answer_start + answer.text.index(text))


@dataclass
class Collector:
    """Validates records in order, enforcing unique ids and the error/skip policy."""

    file: str
    policy: Policy
    labels_optional: bool = False
    examples: list[Example] = field(default_factory=list)
    skipped: list[SkippedRecord] = field(default_factory=list)
    first_index: dict[str, int] = field(default_factory=dict)
    saw_impossible_flag: bool = False
    unlabeled: int = 0
    first_unlabeled: tuple[str, int | None] | None = None
    answers_trimmed: int = 0

    def fail(self, label: str, fld: str, reason: str, line: int | None = None) -> None:
        if self.policy == "error":
            where = self.file if line is None else f"{self.file}:{line}"
            raise DataError(f"{where}: record {show_label(label)} field '{fld}': {reason}")
        self.skipped.append(SkippedRecord(label, fld, reason))

    def add(
        self,
        rec: Any,
        index: int,
        cols: ColumnMap,
        *,
        text_cells: bool = False,
        empty_answers_ok: bool = True,
        line: int | None = None,
    ) -> None:
        raw_id = rec.get(cols.id) if isinstance(rec, dict) else None
        label = raw_id if isinstance(raw_id, str) and raw_id.strip() else f"#{index}"
        try:
            example, has_flag, n_trimmed = _build_example(
                rec, cols, text_cells=text_cells, empty_answers_ok=empty_answers_ok,
                labels_optional=self.labels_optional,
            )  # fmt: skip
            if self.labels_optional and isinstance(rec, dict) and cols.answers not in rec:
                self.unlabeled += 1
                self.first_unlabeled = self.first_unlabeled or (label, line)
        except RecordError as e:
            self.fail(label, e.field, e.reason, line)
            return
        first = self.first_index.get(example.id)
        if first is not None:
            self.fail(label, cols.id, f"duplicate id (record #{index} repeats record #{first})", line)
            return
        self.first_index[example.id] = index
        self.saw_impossible_flag |= has_flag
        self.answers_trimmed += n_trimmed
        self.examples.append(example)

    def finish(self, source: str, version: str | None, max_samples: int | None) -> QADataset:
        if not self.examples:
            if self.skipped:
                raise DataError(
                    f"{self.file}: no valid records ({len(self.skipped)} skipped; first: {self.skipped[0]})"
                )
            raise DataError(f"{self.file}: contains no examples")
        if self.skipped:
            log.warning("%s: skipped %d invalid record(s); first: %s", self.file, len(self.skipped), self.skipped[0])
        if self.answers_trimmed:
            log.info("%s: %d answer(s) trimmed of surrounding whitespace", self.file, self.answers_trimmed)
        if version is None:
            unanswerable = self.saw_impossible_flag or any(e.is_impossible for e in self.examples)
            version = "2.0" if unanswerable else "1.1"
        if self.first_unlabeled and self.unlabeled < len(self.examples):  # a mix is a mistake, not unlabeled data
            label, line = self.first_unlabeled
            where = self.file if line is None else f"{self.file}:{line}"
            raise DataError(
                f"{where}: record {show_label(label)} field 'answers': missing, while other records have answers "
                "(unlabeled data has no answers field in any record)"
            )
        examples = self.examples if max_samples is None else self.examples[:max_samples]
        labeled = self.unlabeled == 0
        return QADataset(examples=examples, version=version, source=source, skipped=self.skipped, labeled=labeled,
                         answers_trimmed=self.answers_trimmed)  # fmt: skip


def load_records(records: Iterable[tuple[int | None, Any]], cols: ColumnMap, collector: Collector) -> None:
    for index, (line, rec) in enumerate(records):
        collector.add(rec, index, cols, line=line)


def check_policy(policy: str, max_samples: int | None) -> None:
    if policy not in ("error", "skip"):
        raise ValueError(f"policy must be 'error' or 'skip', got {policy!r}")
    if max_samples is not None and max_samples < 0:
        raise ValueError(f"max_samples must be >= 0, got {max_samples}")
