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

The rooms: `answers` (normalisation, per-answer EM/F1), `inputs` (the SQuAD JSON and predictions checked, the
version detected), `scores` (the dataset-level official scorers). This package re-exports the public names, so
callers import from `tasks.core.metrics`.
"""

from tasks.core.metrics.answers import (
    compute_exact,
    compute_f1,
    exact_match_score,
    f1_score,
    get_tokens,
    normalize_answer,
)
from tasks.core.metrics.inputs import (
    MetricsError,
    detect_version,
    gold_answers,
    validate_na_probs,
    validate_predictions,
)
from tasks.core.metrics.scores import (
    apply_no_ans_threshold,
    find_best_thresh,
    make_eval_dict,
    per_question_scores,
    score,
    squad_v1_score,
    squad_v2_score,
)

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
    "gold_answers",
    "make_eval_dict",
    "normalize_answer",
    "per_question_scores",
    "score",
    "squad_v1_score",
    "squad_v2_score",
    "validate_na_probs",
    "validate_predictions",
]
