"""`load_dataset_file`: a data file's format (by suffix, sniffed where ambiguous) and its reader: nested SQuAD
JSON, flat JSON records, JSON Lines, CSV/TSV; a directory goes to `hf`."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.data.examples import SQUAD_COLUMNS, ColumnMap, DataError, Labels, Policy, QADataset
from tasks.core.data.files import json_lines, parse_json_document, read_text
from tasks.core.data.hf import load_from_disk, load_hf_object
from tasks.core.data.records import MISSING, Collector, check_policy, load_records
from tasks.core.data.text import json_kind

_JSON_SUFFIXES = {".json"}
_JSONL_SUFFIXES = {".jsonl", ".ndjson"}
_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}


def _is_squad_articles(items: list[Any]) -> bool:
    return bool(items) and isinstance(items[0], dict) and "paragraphs" in items[0]


def _declares_v2(version: Any) -> bool:
    return isinstance(version, str | int | float) and str(version).strip().lower().lstrip("v").startswith("2")


def _squad_records(articles: list[Any]) -> Iterator[tuple[str, Any] | tuple[str, str, str, str]]:
    """Walk nested SQuAD: ("qa", merged record) or ("bad", container label, field, reason)."""
    for a, article in enumerate(articles):
        if not isinstance(article, dict):
            yield "bad", f"data[{a}]", "article", f"expected an object, got {json_kind(article)}"
            continue
        paragraphs = article.get("paragraphs", MISSING)
        if not isinstance(paragraphs, list):
            reason = "missing" if paragraphs is MISSING else f"expected an array, got {json_kind(paragraphs)}"
            yield "bad", f"data[{a}]", "paragraphs", reason
            continue
        title = article.get("title", MISSING)
        for p, para in enumerate(paragraphs):
            if not isinstance(para, dict):
                yield "bad", f"data[{a}]", f"paragraphs[{p}]", f"expected an object, got {json_kind(para)}"
                continue
            qas = para.get("qas", MISSING)
            if not isinstance(qas, list):
                reason = "missing" if qas is MISSING else f"expected an array, got {json_kind(qas)}"
                yield "bad", f"data[{a}].paragraphs[{p}]", "qas", reason
                continue
            context = para.get("context", MISSING)
            for qa in qas:
                yield "qa", ({**qa, "title": title, "context": context} if isinstance(qa, dict) else qa)


def _load_squad(articles: list[Any], declared: Any, collector: Collector) -> str:
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


def _load_csv(path: Path, text: str, delimiter: str, cols: ColumnMap, collector: Collector) -> None:
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
    check_policy(policy, max_samples)
    path = Path(path)
    cols = columns or SQUAD_COLUMNS
    if path.is_dir():
        return load_hf_object(load_from_disk(path), str(path), None, cols, policy, max_samples, labels)
    text = read_text(path)
    fmt = _format_of(path)
    if fmt == "sniff":
        fmt = _sniff(path, text, cols)
    collector = Collector(str(path), policy, labels_optional=labels == "optional")
    version: str | None = None
    if fmt in _CSV_DELIMITERS:
        _load_csv(path, text, _CSV_DELIMITERS[fmt], cols, collector)
    else:
        kind, value = ("jsonl", None) if fmt == "jsonl" else parse_json_document(path, text)
        if kind == "jsonl":
            load_records(json_lines(path, text), cols, collector)
        else:
            version = _load_json_value(path, value, cols, collector)
    return collector.finish(str(path), version, max_samples)


def _load_json_value(path: Path, value: Any, cols: ColumnMap, collector: Collector) -> str | None:
    """Dispatch a parsed JSON document; returns the version for nested SQuAD, None for flat records."""
    declared = None
    if isinstance(value, dict) and "data" in value:
        declared, value = value.get("version"), value["data"]
        if not isinstance(value, list):
            raise DataError(f"{path}: field 'data': expected an array, got {json_kind(value)}")
    if isinstance(value, dict) and cols.question in value and cols.context in value:
        value = [value]  # a one-record JSON Lines file named .json
    if not isinstance(value, list):
        keys = f" with keys {', '.join(list(map(str, value))[:8])}" if isinstance(value, dict) else ""
        raise DataError(
            f'{path}: expected SQuAD JSON {{"version", "data": [...]}} or a list of records, '
            f"got a JSON {json_kind(value)}{keys}"
        )
    if _is_squad_articles(value):
        return _load_squad(value, declared, collector)
    load_records(((None, rec) for rec in value), cols, collector)
    return None
