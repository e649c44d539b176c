"""The per-question table for error analysis: each question with its gold answers, the prediction and its scores.

EM and F1 per question follow the official scorer of the data's SQuAD version (`tasks.core.metrics`): v1.1 takes
the best score over the gold texts; v2.0 drops gold texts that normalise to nothing and scores an unanswerable
question against "", and a question whose null odds exceed the scorer's `na_prob_thresh` (1.0) counts as
answered "no answer". The mean of `exact` (0/1) and `f1` (0..1) times 100 is the logged `exact_match`/`exact` and
`f1`.
"""

from __future__ import annotations

from typing import Any

from tasks.core.data import QADataset
from tasks.core.metrics import compute_exact, compute_f1, exact_match_score, f1_score, normalize_answer

COLUMNS = ("id", "question", "gold_answers", "prediction", "exact", "f1", "null_odds")
NA_PROB_THRESH = 1.0  # the official v2.0 scorer's default, as `tasks.core.metrics.score` uses it


def question_scores(gold: list[str], prediction: str, version: str) -> tuple[int, float]:
    """(exact 0/1, F1 0..1) of one prediction against its gold texts, as the official `version` scorer does."""
    if version == "2.0":
        golds = [t for t in gold if normalize_answer(t)] or [""]
        return max(compute_exact(g, prediction) for g in golds), float(max(compute_f1(g, prediction) for g in golds))
    if not gold:
        return 0, 0.0
    return int(max(exact_match_score(prediction, g) for g in gold)), float(max(f1_score(prediction, g) for g in gold))


def question_table(
    dataset: QADataset, predictions: dict[str, str], null_odds: dict[str, float] | None = None
) -> dict[str, list[Any]]:
    """Columns `COLUMNS` with one row per question of `dataset` (a missing prediction is scored as "")."""
    table: dict[str, list[Any]] = {name: [] for name in COLUMNS}
    for ex in dataset.examples:
        gold = [a.text for a in ex.answers]
        prediction = predictions.get(ex.id, "")
        odds = (null_odds or {}).get(ex.id)
        if dataset.version == "2.0" and odds is not None and odds > NA_PROB_THRESH:
            exact, f1 = question_scores(gold, "", dataset.version)
        else:
            exact, f1 = question_scores(gold, prediction, dataset.version)
        row = (ex.id, ex.question, gold, prediction, exact, f1, odds)
        for name, value in zip(COLUMNS, row, strict=True):
            table[name].append(value)
    return table
