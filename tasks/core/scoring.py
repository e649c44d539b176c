"""Scoring files: read a dataset, predictions and na-probs with clear errors, then the official EM/F1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.core.data import DataError, QADataset, load_dataset_file, read_json_file, to_squad_json
from tasks.core.io import recover_outputs
from tasks.core.metrics import MetricsError, detect_version, gold_answers, score


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON input file; problems become one `DataError` line naming the file and what it was for."""
    try:
        return read_json_file(path)
    except DataError as exc:
        raise DataError(f"{what} file {exc}") from None


def is_nested_squad(path: Path) -> bool:
    return path.suffix == ".json" and not path.name.endswith(".jsonl")


def dataset_json_for_scoring(path: str | Path) -> dict:
    """The nested SQuAD dict the official scorers read (checked); other formats are loaded, validated, converted."""
    p = Path(path)
    if is_nested_squad(p):
        obj = read_json(p, "dataset")
        if isinstance(obj, dict) and isinstance(obj.get("data"), list) and _looks_nested(obj["data"]):
            check_scoring_dataset(obj, p)
            return obj
    return to_squad_json(load_dataset_file(p))


def check_scoring_dataset(dataset_json: dict, path: Path) -> None:
    """What the official metric reads must be sound: the nesting, string ids, answer texts, unique ids.

    Errors name the data file (never the predictions). Fields the metric does not read (contexts, answer starts)
    are not checked here: a file whose answer offsets are off still scores exactly as the official script.
    """
    try:
        detect_version(dataset_json)
        answers = gold_answers(dataset_json)
    except MetricsError as exc:
        raise DataError(f"{path}: {exc}") from None
    seen: set[str] = set()
    for qid, _ in answers:
        if qid in seen:
            raise DataError(f"{path}: record {qid!r} field 'id': duplicate question id (ids must be unique)")
        seen.add(qid)


def _looks_nested(data: list) -> bool:
    return not data or (isinstance(data[0], dict) and "paragraphs" in data[0])


def score_files(
    data: str | Path,
    predictions: str | Path,
    na_probs: str | Path | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float]:
    """`qaflow score`: official-scorer metrics for prediction files against a dataset file."""
    dataset_json = dataset_json_for_scoring(data)
    recover_outputs(Path(predictions).parent)  # a prediction set killed mid-swap is finished before it is read
    preds = read_json(predictions, "predictions")
    probs = read_json(na_probs, "na-probs") if na_probs else None
    try:
        return score(dataset_json, preds, probs, na_prob_thresh)
    except ValueError as exc:
        blamed = na_probs if na_probs and str(exc).startswith("na_prob") else predictions
        raise DataError(f"{blamed}: {exc}") from None


def score_dataset(
    dataset: QADataset, predictions: dict[str, str], null_odds: dict[str, float] | None, na_prob_thresh: float = 1.0
) -> dict:
    """Official EM/F1 of predictions on exactly these examples (null odds act as the v2 na-probs)."""
    return score(to_squad_json(dataset), predictions, null_odds if dataset.version == "2.0" else None, na_prob_thresh)
