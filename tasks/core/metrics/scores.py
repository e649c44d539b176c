"""The official scorers over a dataset: `squad_v1_score`, `squad_v2_score` (no-answer threshold, HasAns/NoAns
breakdown, best thresholds), `per_question_scores` and `score` (the scorer of the data's version), with the
official accumulation order so the floats are bit-identical."""

from __future__ import annotations

import logging

from tasks.core.metrics.answers import compute_exact, compute_f1, exact_match_score, f1_score, normalize_answer
from tasks.core.metrics.inputs import (
    MetricsError,
    detect_version,
    ids_excerpt,
    iter_qas,
    validate_na_probs,
    validate_predictions,
    validate_thresh,
)

logger = logging.getLogger(__package__)  # "tasks.core.metrics", as before the package was split


def squad_v1_score(dataset_json: dict, predictions: dict[str, str]) -> dict[str, float]:
    """Official v1.1 scores: ``{"exact_match", "f1"}`` in percent, over every question in the dataset."""
    predictions = validate_predictions(predictions)
    exact_match = f1 = total = 0
    missing: list[str] = []
    for qid, ground_truths in iter_qas(dataset_json):
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
        logger.warning("%d unanswered question(s) will receive score 0: %s", len(missing), ids_excerpt(missing))
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
    for qid, texts in iter_qas(dataset_json):
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
            f"predictions: missing prediction for {len(missing)} question(s): {ids_excerpt(missing)} "
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
    na_prob_thresh = validate_thresh(na_prob_thresh)
    given_na_probs = na_probs is not None
    probs = validate_na_probs(na_probs) if given_na_probs else dict.fromkeys(predictions, 0.0)
    qid_to_has_ans, exact_raw, f1_raw = _v2_raw_scores(dataset_json, predictions)
    lacking = [qid for qid in exact_raw if qid not in probs]
    if lacking:
        raise MetricsError(
            f"na_probs: missing no-answer probability for {len(lacking)} question(s): {ids_excerpt(lacking)}"
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
        for qid, truths in iter_qas(dataset_json):
            if qid not in predictions or not truths:
                out[qid] = (0.0, 0.0)
                continue
            pred = predictions[qid]
            out[qid] = (float(max(exact_match_score(pred, t) for t in truths)), max(f1_score(pred, t) for t in truths))
        return out
    probs = validate_na_probs(na_probs) if na_probs is not None else dict.fromkeys(predictions, 0.0)
    qid_to_has_ans, exact_raw, f1_raw = _v2_raw_scores(dataset_json, predictions)
    thresh = validate_thresh(na_prob_thresh)
    exact = apply_no_ans_threshold(exact_raw, probs, qid_to_has_ans, thresh)
    f1 = apply_no_ans_threshold(f1_raw, probs, qid_to_has_ans, thresh)
    return {qid: (float(exact[qid]), float(f1[qid])) for qid in exact}


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
