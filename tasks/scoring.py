"""Scoring files: read a dataset, predictions and na-probs with clear errors, then the official EM/F1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tasks.data import DataError, QADataset, load_dataset_file, to_squad_json
from tasks.metrics import score


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file; any problem becomes one `DataError` line naming the file."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{p}: {what} file not found") from None
    except OSError as exc:
        raise DataError(f"{p}: cannot read {what} file ({exc.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: {what} file is not UTF-8 (bad byte at offset {exc.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}: {what} file is not valid JSON ({exc.msg} at line {exc.lineno} col {exc.colno})") from None


def is_nested_squad(path: Path) -> bool:
    return path.suffix == ".json" and not path.name.endswith(".jsonl")


def dataset_json_for_scoring(path: str | Path) -> dict:
    """The nested SQuAD dict the official scorers read; other formats are loaded, validated and converted."""
    p = Path(path)
    if is_nested_squad(p):
        obj = read_json(p, "dataset")
        if isinstance(obj, dict) and isinstance(obj.get("data"), list) and _looks_nested(obj["data"]):
            return obj
    return to_squad_json(load_dataset_file(p))


def _looks_nested(data: list) -> bool:
    return not data or (isinstance(data[0], dict) and "paragraphs" in data[0])


def load_examples_for_scoring(path: str | Path) -> QADataset:
    return load_dataset_file(Path(path))


def score_files(
    data: str | Path,
    predictions: str | Path,
    na_probs: str | Path | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """`qaflow score`: official-scorer metrics for prediction files against a dataset file."""
    dataset_json = dataset_json_for_scoring(data)
    preds = read_json(predictions, "predictions")
    probs = read_json(na_probs, "na-probs") if na_probs else None
    try:
        return score(dataset_json, preds, probs, na_prob_thresh)
    except ValueError as exc:
        raise DataError(f"{predictions}: {exc}") from None
