"""Loading and validating SQuAD-format question-answering data.

Formats (`load_dataset_file`: chosen by suffix, content sniffed where ambiguous; any may be gzipped):

- SQuAD nested JSON v1.1 / v2.0:
  ``{"version", "data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}``. The version is "2.0"
  when the file's ``version`` says v2.0 or any qa has an ``is_impossible`` key, else "1.1".
- Flat records: a JSON list (or ``{"data": [records]}``), JSON Lines (``.jsonl``; also a ``.json`` file
  that turns out to be JSON Lines, as ``datasets.Dataset.to_json`` writes), CSV (``.csv``) or TSV
  (``.tsv``). Field names come from `ColumnMap`. ``answers`` is either the Hugging Face form
  ``{"text": [...], "answer_start": [...]}`` or a list of ``{"text", "answer_start"}``; in CSV/TSV it is
  that JSON written as a string in one cell. The answers field must be present; an empty value (``[]``,
  ``null``, an empty cell, empty lists) marks the question unanswerable, and the dataset is then version
  "2.0". ``title`` is optional (empty when absent). Optional ``is_impossible`` (a boolean;
  "true"/"false"/"1"/"0" in CSV) and ``plausible_answers`` are read when present.
- A Hugging Face ``datasets`` directory written by ``save_to_disk`` (or a hub name via `load_hf_dataset`).

Every record is validated (required fields and types, unique ids, non-empty context and question, each
answer's text found at its ``answer_start``, unanswerable questions without answers). Errors name the
file, the record (its id, or ``#index`` = 0-based position in file order when it has no usable id) and
the field.

Imports nothing else of qaflow (see ARCHITECTURE.md).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import logging
import os
import sys
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tasks.core.hub_access import hub_reachable

log = logging.getLogger(__name__)

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
        return f"record {_show_label(self.record)} field '{self.field}': {self.reason}"


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
_MISSING: Any = object()
_JSON_SUFFIXES = {".json"}
_JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}


# ----------------------------------------------------------------------------------------------------
# Small helpers for messages
# ----------------------------------------------------------------------------------------------------


def _q(text: str, limit: int = 60) -> str:
    """Quoted, escaped, shortened text for one-line messages."""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")


def _kind(value: Any) -> str:
    """JSON name of a value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


def _show_label(label: str) -> str:
    return label if label.startswith("#") or label.startswith("data[") else repr(label)


class _RecordError(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


# ----------------------------------------------------------------------------------------------------
# Record validation (shared by all formats)
# ----------------------------------------------------------------------------------------------------


# characters that print as nothing although Python counts them printable (blank Braille, Hangul fillers)
_BLANK_LETTERS = frozenset("\u2800\u3164\u115f\u1160\uffa0")


def _visible(text: str) -> bool:
    """Whether `text` shows anything: not only whitespace, control, format (zero-width) or blank characters."""
    return any(ch.isprintable() and not ch.isspace() and ch not in _BLANK_LETTERS for ch in text)


def _lone_surrogate(text: str) -> int | None:
    """The index of the first lone surrogate in `text` (no UTF-8 encoding exists for it), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def text_problem(text: str, what: str) -> str | None:
    """Why `text` cannot be used as the `what` of a question (e.g. "question", "context"), or None when it can.

    Refused: text that shows nothing (empty, only whitespace, zero-width or control characters) and text with a
    lone surrogate (not Unicode text: no tokenizer or UTF-8 file can hold it). The same rule for data files,
    `qaflow answer` and the served model.
    """
    lone = _lone_surrogate(text)
    if lone is not None:
        return f"lone surrogate U+{ord(text[lone]):04X} at character {lone} (not valid Unicode text)"
    if not _visible(text):
        shown = "empty" if not text else "only whitespace, zero-width or control characters"
        return f"empty {what} ({shown})"
    return None


def check_text(text: Any, field: str, what: str) -> str:
    """`text` itself when it is usable (`text_problem`); DataError naming `field` otherwise."""
    if not isinstance(text, str):
        raise DataError(f"{field}: expected a string, got {_kind(text)}")
    problem = text_problem(text, what)
    if problem:
        raise DataError(f"{field}: {problem}")
    return text


def _req_str(rec: Mapping[str, Any], key: str, what: str) -> str:
    value = rec.get(key, _MISSING)
    if value is _MISSING or value is None:
        raise _RecordError(key, "missing" if value is _MISSING else "missing (null)")
    if not isinstance(value, str):
        raise _RecordError(key, f"expected a string, got {_kind(value)}")
    problem = text_problem(value, what)
    if problem:
        raise _RecordError(key, problem)
    return value


def _opt_str(rec: Mapping[str, Any], key: str) -> str:
    value = rec.get(key, _MISSING)
    if value is _MISSING or value is None:
        return ""
    if not isinstance(value, str):
        raise _RecordError(key, f"expected a string, got {_kind(value)}")
    if (lone := _lone_surrogate(value)) is not None:
        raise _RecordError(key, f"lone surrogate U+{ord(value[lone]):04X} at character {lone}")
    return value


def _answer(text: Any, start: Any, text_field: str, start_field: str) -> Answer:
    if not isinstance(text, str):
        raise _RecordError(text_field, f"expected a string, got {_kind(text)}")
    problem = text_problem(text, "answer text")
    if problem:
        raise _RecordError(text_field, problem)
    if isinstance(start, bool) or not isinstance(start, int):
        raise _RecordError(start_field, f"expected an integer, got {_kind(start)}")
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
            raise _RecordError(name, f"not valid JSON ({e.msg} at column {e.colno})") from None
        except _JSONLimit as e:
            raise _RecordError(name, str(e)) from None
        if value is None:
            return []
    if isinstance(value, dict):
        texts, starts = value.get("text", _MISSING), value.get("answer_start", _MISSING)
        for key, items in (("text", texts), ("answer_start", starts)):
            if items is _MISSING:
                raise _RecordError(f"{name}.{key}", "missing")
            if not isinstance(items, list | tuple):
                raise _RecordError(f"{name}.{key}", f"expected an array, got {_kind(items)}")
        if len(texts) != len(starts):
            raise _RecordError(name, f"{len(texts)} texts but {len(starts)} answer_start values")
        return [
            (_answer(t, s, f"{name}.text[{i}]", f"{name}.answer_start[{i}]"), f"{name}.answer_start[{i}]")
            for i, (t, s) in enumerate(zip(texts, starts, strict=True))
        ]
    if isinstance(value, list | tuple):
        out = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise _RecordError(f"{name}[{i}]", f"expected an object {{text, answer_start}}, got {_kind(item)}")
            for key in ("text", "answer_start"):
                if key not in item:
                    raise _RecordError(f"{name}[{i}].{key}", "missing")
            start_field = f"{name}[{i}].answer_start"
            out.append((_answer(item["text"], item["answer_start"], f"{name}[{i}].text", start_field), start_field))
        return out
    raise _RecordError(
        name,
        f"expected a list of {{text, answer_start}} or {{text: [...], answer_start: [...]}}, got {_kind(value)}",
    )


def _check_alignment(answers: list[tuple[Answer, str]], context: str) -> None:
    for ans, start_field in answers:
        start, end = ans.answer_start, ans.answer_start + len(ans.text)
        if start < 0:
            raise _RecordError(start_field, f"negative answer_start {start}")
        if context[start:end] == ans.text:
            continue
        if end > len(context):
            reason = f"text {_q(ans.text)} not found at {start} (context is only {len(context)} characters)"
        else:
            reason = f"text {_q(ans.text)} not found at {start} (context has {_q(context[start:end])})"
        found = context.find(ans.text)
        if found >= 0:
            reason += f"; it first occurs at {found}"
        raise _RecordError(start_field, reason)


def _parse_bool(value: Any, name: str, *, text_cells: bool) -> bool | None:
    """True/False, or None when absent/empty."""
    if value is _MISSING or value is None:
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
        raise _RecordError(name, f"expected true/false, got {_q(value)}")
    raise _RecordError(name, f"expected a boolean, got {_kind(value)}")


def _build_example(
    rec: Any, cols: ColumnMap, *, text_cells: bool, empty_answers_ok: bool, labels_optional: bool = False
) -> tuple[Example, bool, int]:
    """Validate one record; returns the example, whether it carried an is_impossible field and how many of its
    answers were trimmed of surrounding whitespace (`trimmed`).

    With `labels_optional`, a record without an answers field is an unlabeled question (to predict, not score).
    """
    if not isinstance(rec, dict):
        raise _RecordError("record", f"expected an object, got {_kind(rec)}")
    ex_id = _req_str(rec, cols.id, "id")
    question = _req_str(rec, cols.question, "question")
    context = _req_str(rec, cols.context, "context")
    title = _opt_str(rec, cols.title)
    if cols.answers not in rec and labels_optional:
        return Example(id=ex_id, title=title, context=context, question=question, answers=()), False, 0
    if cols.answers not in rec:
        raise _RecordError(cols.answers, "missing (use an empty list for an unanswerable question)")
    answers = _parse_answers(rec[cols.answers], cols.answers, text_cells=text_cells)
    plausible = _parse_answers(rec.get(cols.plausible_answers), cols.plausible_answers, text_cells=text_cells)
    raw_flag = rec.get(cols.is_impossible, _MISSING)
    flag = _parse_bool(raw_flag, cols.is_impossible, text_cells=text_cells)
    if flag is True and answers:
        raise _RecordError(cols.answers, f"unanswerable (is_impossible is true) but has {len(answers)} answer(s)")
    if flag is False and not answers:
        raise _RecordError(cols.answers, "answerable (is_impossible is false) but has no answers")
    if flag is None and not answers and not empty_answers_ok:
        raise _RecordError(
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
    return example, raw_flag is not _MISSING and raw_flag is not None, n_trimmed


def trimmed(answer: Answer) -> Answer:
    """The answer without surrounding whitespace, its start moved to match (the legacy SQuAD processor's
    `whitespace_tokenize`: a label on " Paris" would otherwise take in the neighbouring word)."""
    text = answer.text.strip()
    if text == answer.text:
        return answer
    return Answer(text, answer.answer_start + answer.text.index(text))


@dataclass
class _Collector:
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
            raise DataError(f"{where}: record {_show_label(label)} field '{fld}': {reason}")
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
        except _RecordError as e:
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
                f"{where}: record {_show_label(label)} field 'answers': missing, while other records have answers "
                "(unlabeled data has no answers field in any record)"
            )
        examples = self.examples if max_samples is None else self.examples[:max_samples]
        labeled = self.unlabeled == 0
        return QADataset(examples=examples, version=version, source=source, skipped=self.skipped, labeled=labeled,
                         answers_trimmed=self.answers_trimmed)  # fmt: skip


# ----------------------------------------------------------------------------------------------------
# Reading and parsing files
# ----------------------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """The file's text (gunzipped when gzip-compressed), or a one-line DataError."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    where = ""
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: not a valid gzip file ({e})") from None
        where = " of the decompressed data"
    if not raw.strip():
        raise DataError(f"{path}: file is empty" + (" after decompression" if where else ""))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(f"{path}: not valid UTF-8 at byte {e.start}{where} (line {line}): {e.reason}") from None
    return text.removeprefix("\ufeff")


class _JSONLimit(ValueError):
    """A JSON document beyond what qaflow reads: a number too long, or nesting too deep for the parser."""


def loads_bounded(text: str) -> Any:
    """`json.loads` within the interpreter's bounds, each refused as one `_JSONLimit` (a ValueError) line: an
    integer longer than `sys.get_int_max_str_digits()` (4,300 digits) and nesting deeper than the recursion limit
    (about a thousand levels). A malformed document raises JSONDecodeError as usual."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise _JSONLimit("JSON nested too deeply (about a thousand levels at most)") from None
    except ValueError:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        raise _JSONLimit(f"a number longer than {sys.get_int_max_str_digits()} digits") from None


def _json_error(path: Path, text: str, e: json.JSONDecodeError) -> DataError:
    at_end = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")
    truncated = " (the file looks truncated)" if at_end else ""
    return DataError(f"{path}: invalid JSON at line {e.lineno} column {e.colno} (char {e.pos}): {e.msg}{truncated}")


def read_json_file(path: str | Path) -> Any:
    """Parse a (possibly gzipped) JSON file; a missing/empty/bad-UTF-8/malformed file is one DataError line."""
    p = Path(path)
    text = _read_text(p)
    try:
        return loads_bounded(text)
    except json.JSONDecodeError as e:
        raise _json_error(p, text, e) from None
    except _JSONLimit as e:
        raise DataError(f"{p}: {e}") from None


def _json_lines(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line. Splits on \\n only: U+2028 may appear inside strings."""
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            value = loads_bounded(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: invalid JSON at column {e.colno}: {e.msg}") from None
        except _JSONLimit as e:
            raise DataError(f"{path}:{lineno}: {e}") from None
        yield lineno, value


def _looks_like_json_lines(text: str) -> bool:
    first = text.lstrip().split("\n", 1)[0]
    try:
        return isinstance(loads_bounded(first), dict)
    except ValueError:
        return False


def _parse_json_document(path: Path, text: str) -> tuple[str, Any]:
    """("json", value) or, for a JSON Lines file with a .json-like suffix, ("jsonl", None)."""
    try:
        return "json", loads_bounded(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data" and _looks_like_json_lines(text):
            return "jsonl", None
        raise _json_error(path, text, e) from None
    except _JSONLimit as e:
        raise DataError(f"{path}: {e}") from None


def _is_squad_articles(items: list[Any]) -> bool:
    return bool(items) and isinstance(items[0], dict) and "paragraphs" in items[0]


def _declares_v2(version: Any) -> bool:
    return isinstance(version, str | int | float) and str(version).strip().lower().lstrip("v").startswith("2")


def _squad_records(articles: list[Any]) -> Iterator[tuple[str, Any] | tuple[str, str, str, str]]:
    """Walk nested SQuAD: ("qa", merged record) or ("bad", container label, field, reason)."""
    for a, article in enumerate(articles):
        if not isinstance(article, dict):
            yield "bad", f"data[{a}]", "article", f"expected an object, got {_kind(article)}"
            continue
        paragraphs = article.get("paragraphs", _MISSING)
        if not isinstance(paragraphs, list):
            reason = "missing" if paragraphs is _MISSING else f"expected an array, got {_kind(paragraphs)}"
            yield "bad", f"data[{a}]", "paragraphs", reason
            continue
        title = article.get("title", _MISSING)
        for p, para in enumerate(paragraphs):
            if not isinstance(para, dict):
                yield "bad", f"data[{a}]", f"paragraphs[{p}]", f"expected an object, got {_kind(para)}"
                continue
            qas = para.get("qas", _MISSING)
            if not isinstance(qas, list):
                reason = "missing" if qas is _MISSING else f"expected an array, got {_kind(qas)}"
                yield "bad", f"data[{a}].paragraphs[{p}]", "qas", reason
                continue
            context = para.get("context", _MISSING)
            for qa in qas:
                yield "qa", ({**qa, "title": title, "context": context} if isinstance(qa, dict) else qa)


def _load_squad(articles: list[Any], declared: Any, collector: _Collector) -> str:
    """Validate nested SQuAD articles into the collector; returns the version."""
    items = list(_squad_records(articles))
    v2 = _declares_v2(declared) or any(
        item[0] == "qa" and isinstance(item[1], dict) and "is_impossible" in item[1] for item in items
    )
    index = 0
    for item in items:
        if item[0] == "bad":
            _, container, fld, reason = item
            collector.fail(container, fld, reason)
            continue
        collector.add(item[1], index, SQUAD_COLUMNS, empty_answers_ok=v2)
        index += 1
    return "2.0" if v2 else "1.1"


def _load_records(records: Iterable[tuple[int | None, Any]], cols: ColumnMap, collector: _Collector) -> None:
    for index, (line, rec) in enumerate(records):
        collector.add(rec, index, cols, line=line)


def _csv_rows(path: Path, text: str, delimiter: str, cols: ColumnMap) -> Iterator[tuple[int, Any]]:
    """(line number, row dict or a bad-row marker) for each non-blank data row."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader)
        missing = [c for c in (cols.id, cols.context, cols.question, cols.answers) if c not in header]
        if missing:
            raise DataError(
                f"{path}: column(s) {', '.join(map(repr, missing))} not found in the header "
                f"(columns: {', '.join(header)}); map them with ColumnMap"
            )
        line = reader.line_num + 1
        for row in reader:
            if row:
                if len(row) != len(header):
                    yield line, _BadRow(f"has {len(row)} fields, the header has {len(header)}")
                else:
                    yield line, dict(zip(header, row, strict=True))
            line = reader.line_num + 1
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: invalid CSV: {e}") from None


@dataclass(frozen=True)
class _BadRow:
    reason: str


def _load_csv(path: Path, text: str, delimiter: str, cols: ColumnMap, collector: _Collector) -> None:
    for index, (line, row) in enumerate(_csv_rows(path, text, delimiter, cols)):
        if isinstance(row, _BadRow):
            collector.fail(f"#{index}", "row", row.reason, line)
        else:
            collector.add(row, index, cols, text_cells=True, line=line)


def _format_of(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    suffix = suffixes[-1] if suffixes else ""
    if suffix in _JSON_SUFFIXES:
        return "json"
    if suffix in _JSONL_SUFFIXES:
        return "jsonl"
    if suffix in _CSV_DELIMITERS:
        return suffix
    return "sniff"


def _sniff(path: Path, text: str, cols: ColumnMap) -> str:
    head = text.lstrip()
    if head[:1] in ("{", "["):
        return "json"
    first_line = head.split("\n", 1)[0]
    for suffix, delimiter in _CSV_DELIMITERS.items():
        if cols.question in first_line.split(delimiter):
            return suffix
    raise DataError(
        f"{path}: unrecognised format (expected .json, .jsonl, .csv or .tsv, optionally .gz, "
        "or a Hugging Face datasets directory)"
    )


def _check_policy(policy: str, max_samples: int | None) -> None:
    if policy not in ("error", "skip"):
        raise ValueError(f"policy must be 'error' or 'skip', got {policy!r}")
    if max_samples is not None and max_samples < 0:
        raise ValueError(f"max_samples must be >= 0, got {max_samples}")


def load_dataset_file(
    path: str | Path,
    *,
    columns: ColumnMap | None = None,
    policy: Policy = "error",
    max_samples: int | None = None,
    labels: Labels = "required",
) -> QADataset:
    """Load and validate a QA dataset file (see the module docstring for formats).

    `labels="optional"` accepts records without an answers field (data to predict on; `labeled` is then False).

    `columns` maps flat-record field names (ignored for nested SQuAD). With `policy="error"` the first bad
    record raises `DataError`; with "skip" bad records are dropped and listed in `QADataset.skipped`. Every
    record is validated and the version detected over the whole file; then `max_samples` keeps the first N.
    """
    _check_policy(policy, max_samples)
    path = Path(path)
    cols = columns or SQUAD_COLUMNS
    if path.is_dir():
        return _load_hf_object(_load_from_disk(path), str(path), None, cols, policy, max_samples, labels)
    text = _read_text(path)
    fmt = _format_of(path)
    if fmt == "sniff":
        fmt = _sniff(path, text, cols)
    collector = _Collector(str(path), policy, labels_optional=labels == "optional")
    version: str | None = None
    if fmt in _CSV_DELIMITERS:
        _load_csv(path, text, _CSV_DELIMITERS[fmt], cols, collector)
    else:
        kind, value = ("jsonl", None) if fmt == "jsonl" else _parse_json_document(path, text)
        if kind == "jsonl":
            _load_records(_json_lines(path, text), cols, collector)
        else:
            version = _load_json_value(path, value, cols, collector)
    return collector.finish(str(path), version, max_samples)


def _load_json_value(path: Path, value: Any, cols: ColumnMap, collector: _Collector) -> str | None:
    """Dispatch a parsed JSON document; returns the version for nested SQuAD, None for flat records."""
    declared = None
    if isinstance(value, dict) and "data" in value:
        declared, value = value.get("version"), value["data"]
        if not isinstance(value, list):
            raise DataError(f"{path}: field 'data': expected an array, got {_kind(value)}")
    if isinstance(value, dict) and cols.question in value and cols.context in value:
        value = [value]  # a one-record JSON Lines file named .json
    if not isinstance(value, list):
        keys = f" with keys {', '.join(list(map(str, value))[:8])}" if isinstance(value, dict) else ""
        raise DataError(
            f'{path}: expected SQuAD JSON {{"version", "data": [...]}} or a list of records, '
            f"got a JSON {_kind(value)}{keys}"
        )
    if _is_squad_articles(value):
        return _load_squad(value, declared, collector)
    _load_records(((None, rec) for rec in value), cols, collector)
    return None


# ----------------------------------------------------------------------------------------------------
# Hugging Face datasets
# ----------------------------------------------------------------------------------------------------


def _load_from_disk(path: Path) -> Any:
    if not ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        raise DataError(f"{path}: is a directory but not a Hugging Face datasets save_to_disk directory")
    import datasets  # slow import; only needed here

    try:
        return datasets.load_from_disk(str(path))
    except Exception as e:  # any failure becomes one clear line
        raise DataError(f"{path}: cannot load the datasets directory ({type(e).__name__}: {e})") from None


def _pick_split(obj: Any, split: str | None, source: str) -> tuple[Any, str]:
    """A single `datasets.Dataset` out of a Dataset or DatasetDict, and the source label."""
    if not isinstance(obj, dict):  # a Dataset; a DatasetDict is a dict of splits
        return obj, source if split is None else f"{source}[{split}]"
    splits = list(obj.keys())
    if split is None and len(splits) == 1:
        split = splits[0]
    if split not in splits:
        wanted = "no split given" if split is None else f"split {split!r} not found"
        raise DataError(f"{source}: {wanted}; available splits: {', '.join(splits)}")
    return obj[split], f"{source}[{split}]"


def _load_hf_object(
    obj: Any,
    source: str,
    split: str | None,
    cols: ColumnMap,
    policy: Policy,
    max_samples: int | None,
    labels: Labels = "required",
) -> QADataset:
    ds, source = _pick_split(obj, split, source)
    needed = (cols.id, cols.context, cols.question) + ((cols.answers,) if labels == "required" else ())
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{source}: column(s) {', '.join(map(repr, missing))} not found "
            f"(columns: {', '.join(ds.column_names)}); map them with ColumnMap"
        )
    collector = _Collector(source, policy, labels_optional=labels == "optional")
    _load_records(((None, row) for row in ds.to_list()), cols, collector)
    return collector.finish(source, None, max_samples)


def load_hf_dataset(
    name_or_dir: str | Path,
    split: str | None = None,
    *,
    config: str | None = None,
    revision: str | None = None,
    columns: ColumnMap | None = None,
    policy: Policy = "error",
    max_samples: int | None = None,
    labels: Labels = "required",
) -> QADataset:
    """Load a `save_to_disk` directory (when `name_or_dir` exists locally) or a hub dataset, then validate it.

    `split` picks from a DatasetDict (may be omitted when there is only one); records are validated like flat
    records. A hub name is read from the `datasets` cache when the hub is unreachable (or HF_HUB_OFFLINE is set);
    if it is not cached either, one DataError line says so within seconds instead of a minute of retries.
    """
    _check_policy(policy, max_samples)
    cols = columns or SQUAD_COLUMNS
    path = Path(name_or_dir)
    if path.exists():
        if not path.is_dir():
            raise DataError(f"{path}: is a file; use load_dataset_file for data files")
        return _load_hf_object(_load_from_disk(path), str(path), split, cols, policy, max_samples, labels)
    name = str(name_or_dir)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or not hub_reachable()
    obj = _load_from_hub(name, config, split, revision, offline=offline)
    return _load_hf_object(obj, name, split, cols, policy, max_samples, labels)


def _load_from_hub(name: str, config: str | None, split: str | None, revision: str | None, *, offline: bool) -> Any:
    """`datasets.load_dataset`, from its cache only when `offline` (DataError lines for every failure)."""
    import datasets

    try:
        with _offline_mode(offline):
            return datasets.load_dataset(name, config, split=split, revision=revision)
    except Exception as e:  # hub/network/cache failures become one clear line
        first = str(e).splitlines()[0] if str(e) else ""
        if offline:
            raise DataError(
                f"{name}: not a local directory and not in the datasets cache, and the Hugging Face hub is "
                f"unreachable (offline); run once where the hub is reachable, or pass a save_to_disk directory "
                f"({type(e).__name__}: {first})"
            ) from None
        raise DataError(f"{name}: loading it from the Hugging Face hub failed ({type(e).__name__}: {first})") from None


@contextlib.contextmanager
def _offline_mode(offline: bool) -> Iterator[None]:
    """datasets' and huggingface_hub's offline switches on for one call (read at call time), then restored."""
    import datasets
    from huggingface_hub import constants

    switches = [(datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE"),
                (constants, "HF_HUB_OFFLINE")]  # fmt: skip
    saved = [getattr(module, name) for module, name in switches]
    try:
        if offline:
            for module, name in switches:
                setattr(module, name, True)
        yield
    finally:
        for (module, name), value in zip(switches, saved, strict=True):
            setattr(module, name, value)


# ----------------------------------------------------------------------------------------------------
# Splitting, writing, summarising
# ----------------------------------------------------------------------------------------------------


def _article_key(example: Example) -> str:
    """The article an example belongs to: its title, or its context when it has no title."""
    return example.title if example.title else "\x00context\x00" + example.context


def split_by_article(dataset: QADataset, eval_fraction: float, seed: int) -> tuple[QADataset, QADataset]:
    """Deterministic (train, eval) split keeping every article on one side; order is preserved within each.

    Articles are ordered by a hash of (seed, title) and taken into eval while that brings the eval share of
    questions closer to `eval_fraction` (at least one article on each side). `skipped` is not carried over.
    """
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    sizes: dict[str, int] = {}
    for ex in dataset.examples:
        key = _article_key(ex)
        sizes[key] = sizes.get(key, 0) + 1
    if len(sizes) < 2:
        raise ValueError(f"{dataset.source}: cannot split by article: it has {len(sizes)} article(s)")

    def rank(key: str) -> str:
        return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()

    target = eval_fraction * len(dataset.examples)
    eval_keys: set[str] = set()
    count = 0
    for key in sorted(sizes, key=rank)[: len(sizes) - 1]:
        if eval_keys and (count >= target or abs(count + sizes[key] - target) > abs(count - target)):
            break
        eval_keys.add(key)
        count += sizes[key]
    train = [ex for ex in dataset.examples if _article_key(ex) not in eval_keys]
    evals = [ex for ex in dataset.examples if _article_key(ex) in eval_keys]
    tag = f"split by article, seed {seed}, eval_fraction {eval_fraction}"
    return (
        QADataset(train, dataset.version, f"{dataset.source} [train; {tag}]"),
        QADataset(evals, dataset.version, f"{dataset.source} [eval; {tag}]"),
    )


def _answers_json(answers: tuple[Answer, ...]) -> list[dict[str, Any]]:
    return [{"text": a.text, "answer_start": a.answer_start} for a in answers]


def to_squad_json(dataset: QADataset) -> dict[str, Any]:
    """Nested SQuAD JSON (version "1.1" or "v2.0"); consecutive examples sharing a title/context are grouped.

    Order is preserved exactly, so loading the result gives back the same examples and version.
    """
    v2 = dataset.version == "2.0"
    articles: list[dict[str, Any]] = []
    for ex in dataset.examples:
        if not articles or articles[-1]["title"] != ex.title:
            articles.append({"title": ex.title, "paragraphs": []})
        paragraphs = articles[-1]["paragraphs"]
        if not paragraphs or paragraphs[-1]["context"] != ex.context:
            paragraphs.append({"context": ex.context, "qas": []})
        qa: dict[str, Any] = {"id": ex.id, "question": ex.question, "answers": _answers_json(ex.answers)}
        if v2:
            qa["is_impossible"] = ex.is_impossible
        if ex.plausible_answers:
            qa["plausible_answers"] = _answers_json(ex.plausible_answers)
        paragraphs[-1]["qas"].append(qa)
    return {"version": "v2.0" if v2 else "1.1", "data": articles}


def dataset_summary(dataset: QADataset) -> dict[str, Any]:
    """Counts for reports: articles, questions, answerable, unanswerable, version, skipped."""
    unanswerable = sum(1 for ex in dataset.examples if ex.is_impossible)
    return {
        "articles": len({_article_key(ex) for ex in dataset.examples}),
        "questions": len(dataset.examples),
        "answerable": len(dataset.examples) - unanswerable,
        "unanswerable": unanswerable,
        "version": dataset.version,
        "skipped": len(dataset.skipped),
        "answers_trimmed": dataset.answers_trimmed,
    }
