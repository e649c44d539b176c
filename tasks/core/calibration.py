"""The calibrated no-answer threshold (SQuAD v2): choose it with the official scorer, apply it like the scorer.

A question is answered "" when its null odds exceed the threshold (`null_odds > t`, the official
`apply_no_ans_threshold` rule and the n-best `score_diff > null_score_diff_threshold` rule alike). The threshold
is the official `best_f1_thresh`, computed from the best non-null answers and the model's real null odds on a
calibration set, so it maximises F1 there.
"""

from __future__ import annotations

from collections.abc import Mapping

from tasks.core.metrics import squad_v2_score


def null_above(predictions: Mapping[str, str], null_odds: Mapping[str, float], threshold: float) -> dict[str, str]:
    """The predictions with "" wherever the null odds exceed `threshold`."""
    return {qid: "" if null_odds[qid] > threshold else text for qid, text in predictions.items()}


def best_f1_threshold(
    dataset_json: dict, best_answers: Mapping[str, str], null_odds: Mapping[str, float]
) -> tuple[float, float]:
    """(best F1, its threshold): the official `best_f1` / `best_f1_thresh` over the best non-null answers."""
    out = squad_v2_score(dataset_json, dict(best_answers), dict(null_odds))
    return float(out["best_f1"]), float(out["best_f1_thresh"])
