"""SQuAD v1.1 / v2.0 exact-match and F1, numerically identical to the official scorers.

Imports nothing else of qaflow. Works on the raw SQuAD JSON (``dataset_json["data"]``), like the official
``evaluate-v1.1.py`` and ``evaluate-v2.0.py``: same normalisation, same per-question maxima, same accumulation
order (so the floats are bit-identical), same result keys in the same order.

Missing predictions:
- v1.1: the question scores 0 and still counts in the total (the official script prints a message per
  question; here one warning is logged).
- v2.0: the official script skips the question in its raw scores, then crashes with a ``KeyError`` when it
  builds the HasAns_/NoAns_ breakdown (every question is in one of the two lists): it never returns a result.
  Here the same input raises ``MetricsError`` (a ``ValueError``) naming the missing ids. Likewise for a given
  ``na_probs`` that lacks a scored question.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
import string
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "MetricsError",
    "apply_no_ans_threshold",
    "compute_exact",
    "compute_f1",
    "detect_version",
    "exact_match_score",
    "f1_score",
    "find_best_thresh",
    "get_tokens",
    "make_eval_dict",
    "normalize_answer",
    "per_question_scores",
    "score",
    "squad_v1_score",
    "squad_v2_score",
    "validate_na_probs",
    "validate_predictions",
]

logger = logging.getLogger(__name__)

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_MAX_IDS_IN_MESSAGE = 10


class MetricsError(ValueError):
    """Bad scorer input: the message names the offending id and field."""


# Normalisation and per-answer scores


def normalize_answer(s: str) -> str:
    """Lower-case, drop ASCII punctuation, drop articles a/an/the, collapse whitespace (official order)."""
    text = s.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def get_tokens(s: str) -> list[str]:
    """v2.0 tokens: [] for an empty string, else the normalised text split on whitespace."""
    if not s:
        return []
    return normalize_answer(s).split()


def _token_f1(num_same: int, n_pred: int, n_gold: int) -> float:
    precision = 1.0 * num_same / n_pred
    recall = 1.0 * num_same / n_gold
    return (2 * precision * recall) / (precision + recall)


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    """v1.1 exact match of one prediction against one gold answer."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """v1.1 token F1 (0 when no token overlaps, including when either side normalises to nothing)."""
    pred_toks = normalize_answer(prediction).split()
    gold_toks = normalize_answer(ground_truth).split()
    num_same = sum((Counter(pred_toks) & Counter(gold_toks)).values())
    if num_same == 0:
        return 0
    return _token_f1(num_same, len(pred_toks), len(gold_toks))


def compute_exact(a_gold: str, a_pred: str) -> int:
    """v2.0 exact match (0/1)."""
    return int(normalize_answer(a_gold) == normalize_answer(a_pred))


def compute_f1(a_gold: str, a_pred: str) -> float:
    """v2.0 token F1: if either side has no tokens, F1 is 1 when both have none, else 0."""
    gold_toks = get_tokens(a_gold)
    pred_toks = get_tokens(a_pred)
    if len(gold_toks) == 0 or len(pred_toks) == 0:
        return int(gold_toks == pred_toks)
    num_same = sum((Counter(gold_toks) & Counter(pred_toks)).values())
    if num_same == 0:
        return 0
    return _token_f1(num_same, len(pred_toks), len(gold_toks))


# Input validation


def _ids_excerpt(ids: list[str]) -> str:
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


def _validate_thresh(na_prob_thresh: Any) -> float:
    if isinstance(na_prob_thresh, bool) or not isinstance(na_prob_thresh, (int, float)):
        raise MetricsError(f"na_prob_thresh: must be a number, got {na_prob_thresh!r}")
    if math.isnan(na_prob_thresh):
        raise MetricsError("na_prob_thresh: must not be NaN")
    return na_prob_thresh


def _iter_qas(dataset_json: Any) -> Iterator[tuple[str, list[str]]]:
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
    return list(_iter_qas(dataset_json))


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


def squad_v1_score(dataset_json: dict, predictions: dict[str, str]) -> dict[str, float]:
    """Official v1.1 scores: ``{"exact_match", "f1"}`` in percent, over every question in the dataset."""
    predictions = validate_predictions(predictions)
    exact_match = f1 = total = 0
    missing: list[str] = []
    for qid, ground_truths in _iter_qas(dataset_json):
        total += 1
        if qid not in predictions:
            missing.append(qid)
            continue
        if not ground_truths:
            raise MetricsError(f"question {qid!r}: answers is empty, which SQuAD v1.1 scoring cannot handle")
        prediction = predictions[qid]
        exact_match += max(exact_match_score(prediction, gt) for gt in ground_truths)
        f1 += max(f1_score(prediction, gt) for gt in ground_truths)
    if total == 0:
        raise MetricsError("dataset_json: contains no questions")
    if missing:
        logger.warning("%d unanswered question(s) will receive score 0: %s", len(missing), _ids_excerpt(missing))
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


# SQuAD v2.0


def _v2_raw_scores(
    dataset_json: dict, predictions: dict[str, str]
) -> tuple[dict[str, bool], dict[str, int], dict[str, float]]:
    """qid -> has-answer, and raw exact / F1 per question (dicts keep the official insertion order)."""
    qid_to_has_ans: dict[str, bool] = {}
    exact_scores: dict[str, int] = {}
    f1_scores: dict[str, float] = {}
    missing: list[str] = []
    for qid, texts in _iter_qas(dataset_json):
        qid_to_has_ans[qid] = bool(texts)
        if qid not in predictions:
            missing.append(qid)
            continue
        gold_answers = [t for t in texts if normalize_answer(t)] or [""]
        a_pred = predictions[qid]
        exact_scores[qid] = max(compute_exact(a, a_pred) for a in gold_answers)
        f1_scores[qid] = max(compute_f1(a, a_pred) for a in gold_answers)
    if not qid_to_has_ans:
        raise MetricsError("dataset_json: contains no questions")
    if missing:
        raise MetricsError(
            f"predictions: missing prediction for {len(missing)} question(s): {_ids_excerpt(missing)} "
            f"(the official v2.0 script fails on these with a KeyError; predict '' for no answer)"
        )
    return qid_to_has_ans, exact_scores, f1_scores


def apply_no_ans_threshold(
    scores: dict[str, float],
    na_probs: dict[str, float],
    qid_to_has_ans: dict[str, bool],
    na_prob_thresh: float,
) -> dict[str, float]:
    """Questions whose no-answer probability exceeds the threshold score 1.0 if unanswerable, else 0.0."""
    new_scores: dict[str, float] = {}
    for qid, s in scores.items():
        if na_probs[qid] > na_prob_thresh:
            new_scores[qid] = float(not qid_to_has_ans[qid])
        else:
            new_scores[qid] = s
    return new_scores


def make_eval_dict(
    exact_scores: dict[str, float], f1_scores: dict[str, float], qid_list: list[str] | None = None
) -> dict[str, float | int]:
    """``{"exact", "f1", "total"}`` over all scored questions, or over ``qid_list`` when it is non-empty."""
    if not qid_list:
        total = len(exact_scores)
        exact_sum = sum(exact_scores.values())
        f1_sum = sum(f1_scores.values())
    else:
        total = len(qid_list)
        exact_sum = sum(exact_scores[k] for k in qid_list)
        f1_sum = sum(f1_scores[k] for k in qid_list)
    return {"exact": 100.0 * exact_sum / total, "f1": 100.0 * f1_sum / total, "total": total}


def find_best_thresh(
    predictions: dict[str, str],
    scores: dict[str, float],
    na_probs: dict[str, float],
    qid_to_has_ans: dict[str, bool],
) -> tuple[float, float]:
    """Best score (percent) over no-answer thresholds, and the threshold reaching it (official ties)."""
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = best_score = num_no_ans
    best_thresh = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if qid not in scores:
            continue
        # answerable: its score is gained; unanswerable: a non-empty raw prediction (even " ") costs 1
        cur_score += scores[qid] if qid_to_has_ans[qid] else (-1 if predictions[qid] else 0)
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def squad_v2_score(
    dataset_json: dict,
    predictions: dict[str, str],
    na_probs: dict[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float | int]:
    """Official v2.0 scores, keys in the official order.

    exact, f1, total, HasAns_exact/f1/total (if any answerable), NoAns_exact/f1/total (if any
    unanswerable), and only when ``na_probs`` is given: best_exact, best_exact_thresh, best_f1,
    best_f1_thresh.
    """
    predictions = validate_predictions(predictions)
    na_prob_thresh = _validate_thresh(na_prob_thresh)
    given_na_probs = na_probs is not None
    probs = validate_na_probs(na_probs) if given_na_probs else dict.fromkeys(predictions, 0.0)
    qid_to_has_ans, exact_raw, f1_raw = _v2_raw_scores(dataset_json, predictions)
    lacking = [qid for qid in exact_raw if qid not in probs]
    if lacking:
        raise MetricsError(
            f"na_probs: missing no-answer probability for {len(lacking)} question(s): {_ids_excerpt(lacking)}"
        )
    exact_thresh = apply_no_ans_threshold(exact_raw, probs, qid_to_has_ans, na_prob_thresh)
    f1_thresh = apply_no_ans_threshold(f1_raw, probs, qid_to_has_ans, na_prob_thresh)
    out = make_eval_dict(exact_thresh, f1_thresh)
    has_ans_qids = [k for k, v in qid_to_has_ans.items() if v]
    no_ans_qids = [k for k, v in qid_to_has_ans.items() if not v]
    for prefix, qids in (("HasAns", has_ans_qids), ("NoAns", no_ans_qids)):
        if qids:
            for k, v in make_eval_dict(exact_thresh, f1_thresh, qid_list=qids).items():
                out[f"{prefix}_{k}"] = v
    if given_na_probs:
        out["best_exact"], out["best_exact_thresh"] = find_best_thresh(predictions, exact_raw, probs, qid_to_has_ans)
        out["best_f1"], out["best_f1_thresh"] = find_best_thresh(predictions, f1_raw, probs, qid_to_has_ans)
    return out


# Per question


def per_question_scores(
    dataset_json: dict,
    predictions: dict[str, str],
    na_probs: dict[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, tuple[float, float]]:
    """question id -> (exact, F1) in [0, 1], exactly as the official scorer of the data's version counts them.

    v1.1: the per-question maxima over the gold answers (a missing prediction scores 0). v2.0: the raw scores
    after the no-answer threshold. The mean of either column times 100 is the official `exact(_match)` / `f1`.
    """
    predictions = validate_predictions(predictions)
    if detect_version(dataset_json) == "1.1":
        out: dict[str, tuple[float, float]] = {}
        for qid, truths in _iter_qas(dataset_json):
            if qid not in predictions or not truths:
                out[qid] = (0.0, 0.0)
                continue
            pred = predictions[qid]
            out[qid] = (float(max(exact_match_score(pred, t) for t in truths)), max(f1_score(pred, t) for t in truths))
        return out
    probs = validate_na_probs(na_probs) if na_probs is not None else dict.fromkeys(predictions, 0.0)
    qid_to_has_ans, exact_raw, f1_raw = _v2_raw_scores(dataset_json, predictions)
    thresh = _validate_thresh(na_prob_thresh)
    exact = apply_no_ans_threshold(exact_raw, probs, qid_to_has_ans, thresh)
    f1 = apply_no_ans_threshold(f1_raw, probs, qid_to_has_ans, thresh)
    return {qid: (float(exact[qid]), float(f1[qid])) for qid in exact}


# Dispatch


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


def score(
    dataset_json: dict,
    predictions: dict[str, str],
    na_probs: dict[str, float] | None = None,
    na_prob_thresh: float = 1.0,
) -> dict[str, float | int]:
    """Score with the official scorer of the dataset's version (na_probs / threshold are v2.0 only)."""
    if detect_version(dataset_json) == "1.1":
        if na_probs is not None:
            raise MetricsError("na_probs: only meaningful for SQuAD v2.0 data; this dataset is v1.1")
        return squad_v1_score(dataset_json, predictions)
    return squad_v2_score(dataset_json, predictions, na_probs=na_probs, na_prob_thresh=na_prob_thresh)
