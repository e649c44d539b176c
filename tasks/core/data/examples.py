"""The data's types: examples, answers, a loaded dataset, flat-record column names, and the one error bad data
raises (`DataError`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Policy = Literal["error", "skip"]
Labels = Literal["required", "optional"]


class DataError(ValueError):
    """Bad input data: the message names the file, the record (id or index) and the field."""


@dataclass(frozen=True)
class Answer:
    text: str
    answer_start: int


@dataclass(frozen=True)
class Example:
    """One question over one context (one SQuAD `qas` entry)."""

    id: str
    title: str
    context: str
    question: str
    answers: tuple[Answer, ...] = ()
    is_impossible: bool = False
    plausible_answers: tuple[Answer, ...] = ()


@dataclass(frozen=True)
class SkippedRecord:
    record: str  # id, or "#<index>" when the record has no usable id
    field: str
    reason: str

    def __str__(self) -> str:
        return f"record {show_label(self.record)} field '{self.field}': {self.reason}"


@dataclass
class QADataset:
    """Examples in file order, the detected SQuAD version ("1.1" or "2.0") and what was skipped."""

    examples: list[Example]
    version: str
    source: str
    skipped: list[SkippedRecord] = field(default_factory=list)
    labeled: bool = True  # False: loaded with labels="optional" and some record had no answers field
    answers_trimmed: int = 0  # answers whose surrounding whitespace was trimmed (`trimmed`), in the whole file

    def __len__(self) -> int:
        return len(self.examples)


@dataclass(frozen=True)
class ColumnMap:
    """Field (column) names of flat records. Not used for nested SQuAD JSON, whose names are fixed."""

    id: str = "id"
    title: str = "title"
    context: str = "context"
    question: str = "question"
    answers: str = "answers"
    is_impossible: str = "is_impossible"
    plausible_answers: str = "plausible_answers"


SQUAD_COLUMNS = ColumnMap()


def show_label(label: str) -> str:
    return label if label.startswith("#") or label.startswith("data[") else repr(label)
