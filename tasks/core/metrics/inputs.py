"""Scorer inputs: the SQuAD JSON walked and checked (`gold_answers`, `detect_version`), predictions and no-answer
probabilities validated; every fault is a `MetricsError` naming the id and field."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Mapping
from typing import Any

_MAX_IDS_IN_MESSAGE = 10


class MetricsError(ValueError):
    """Bad scorer input: the message names the offending id and field."""


def ids_excerpt(ids: list[str]) -> str:
    shown = ", ".join(repr(i) for i in ids[:_MAX_IDS_IN_MESSAGE])
    more = len(ids) - _MAX_IDS_IN_MESSAGE
    return shown + (f" ... (+{more} more)" if more > 0 else "")


def validate_predictions(predictions: Any) -> dict[str, str]:
    """Check predictions is a JSON object mapping question id (str) to answer text (str)."""
    if not isinstance(predictions, Mapping):
        raise MetricsError(
            f"predictions: expected a JSON object mapping question id to answer text, got {type(predictions).__name__}"
        )
    for qid, text in predictions.items():
        if not isinstance(qid, str):
            raise MetricsError(f"predictions: question id {qid!r} must be a string, got {type(qid).__name__}")
        if not isinstance(text, str):
            raise MetricsError(
                f"predictions[{qid!r}]: answer text must be a string, got {type(text).__name__}: {text!r:.60}"
            )
    return dict(predictions)


def validate_na_probs(na_probs: Any) -> dict[str, float]:
    """Check na_probs maps question id (str) to a real number (bool rejected).

    int/float values are kept as given (like the official script's json.load); other reals (numpy scalars) become
    Python floats so results stay JSON-serialisable.
    """
    if not isinstance(na_probs, Mapping):
        raise MetricsError(
            f"na_probs: expected a JSON object mapping question id to a number, got {type(na_probs).__name__}"
        )
    out: dict[str, float] = {}
    for qid, p in na_probs.items():
        if not isinstance(qid, str):
            raise MetricsError(f"na_probs: question id {qid!r} must be a string, got {type(qid).__name__}")
        if isinstance(p, bool) or not isinstance(p, numbers.Real):
            raise MetricsError(f"na_probs[{qid!r}]: no-answer probability must be a number, got {p!r:.60}")
        out[qid] = p if type(p) in (int, float) else float(p)
    return out


def validate_thresh(na_prob_thresh: Any) -> float:
    if isinstance(na_prob_thresh, bool) or not isinstance(na_prob_thresh, (int, float)):
        raise MetricsError(f"na_prob_thresh: must be a number, got {na_prob_thresh!r}")
    if math.isnan(na_prob_thresh):
        raise MetricsError("na_prob_thresh: must not be NaN")
    return na_prob_thresh


def iter_qas(dataset_json: Any) -> Iterator[tuple[str, list[str]]]:
    """Yield (question id, gold answer texts) in dataset order, checking the nested SQuAD structure."""
    if not isinstance(dataset_json, Mapping) or not isinstance(dataset_json.get("data"), list):
        raise MetricsError("dataset_json: expected a SQuAD JSON object with a 'data' list")
    for a_i, article in enumerate(dataset_json["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, Mapping) else None
        if not isinstance(paragraphs, list):
            raise MetricsError(f"data[{a_i}].paragraphs: expected a list")
        for p_i, paragraph in enumerate(paragraphs):
            qas = paragraph.get("qas") if isinstance(paragraph, Mapping) else None
            if not isinstance(qas, list):
                raise MetricsError(f"data[{a_i}].paragraphs[{p_i}].qas: expected a list")
            for q_i, qa in enumerate(qas):
                where = f"data[{a_i}].paragraphs[{p_i}].qas[{q_i}]"
                if not isinstance(qa, Mapping) or not isinstance(qa.get("id"), str):
                    raise MetricsError(f"{where}.id: expected a string question id")
                yield qa["id"], _answer_texts(qa, where)


def gold_answers(dataset_json: Any) -> list[tuple[str, list[str]]]:
    """(question id, gold answer texts) for every question, in order; MetricsError on a malformed structure."""
    return list(iter_qas(dataset_json))


def _answer_texts(qa: Mapping[str, Any], where: str) -> list[str]:
    answers = qa.get("answers")
    if not isinstance(answers, list):
        raise MetricsError(f"{where} (id {qa['id']!r}).answers: expected a list")
    texts = []
    for ans in answers:
        text = ans.get("text") if isinstance(ans, Mapping) else None
        if not isinstance(text, str):
            raise MetricsError(f"{where} (id {qa['id']!r}).answers[].text: expected a string")
        texts.append(text)
    return texts


# SQuAD v1.1


def detect_version(dataset_json: dict) -> str:
    """Return "1.1" or "2.0" from ``version``; without one, "2.0" if any question has ``is_impossible``."""
    if not isinstance(dataset_json, Mapping):
        raise MetricsError(f"dataset_json: expected a JSON object, got {type(dataset_json).__name__}")
    version = dataset_json.get("version")
    if version is not None and str(version).strip() != "":
        major = str(version).strip().lower().removeprefix("v").split(".")[0]
        if major == "1":
            return "1.1"
        if major == "2":
            return "2.0"
        raise MetricsError(f"dataset_json.version: unsupported SQuAD version {version!r} (expected 1.1 or 2.0)")
    return "2.0" if any("is_impossible" in qa for qa in _iter_raw_qas(dataset_json)) else "1.1"


def _iter_raw_qas(dataset_json: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every qa object reachable in the nested structure, skipping anything malformed."""
    data = dataset_json.get("data")
    for article in data if isinstance(data, list) else []:
        paragraphs = article.get("paragraphs") if isinstance(article, Mapping) else None
        for paragraph in paragraphs if isinstance(paragraphs, list) else []:
            qas = paragraph.get("qas") if isinstance(paragraph, Mapping) else None
            yield from (qa for qa in (qas if isinstance(qas, list) else []) if isinstance(qa, Mapping))
