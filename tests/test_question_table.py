"""pipeline.question_table: per-question EM/F1 that average to the official scores (v1.1 and v2.0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core.data import load_dataset_file
from tasks.core.scoring import score_dataset
from tasks.pipeline.question_table import COLUMNS, question_scores, question_table

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample"


def _predictions(dataset) -> dict[str, str]:  # noqa: ANN001
    """Right, half-right and wrong answers, "" (no answer), and (v1.1) a missing one."""
    out = {}
    for i, ex in enumerate(dataset.examples):
        gold = ex.answers[0].text if ex.answers else "nothing"
        out[ex.id] = [gold, f"the {gold} and more", "Paris", ""][i % 4]
    if dataset.version == "1.1":  # v1.1 scores a missing prediction as wrong (v2.0 refuses it)
        del out[dataset.examples[-1].id]
    return out


@pytest.mark.parametrize("name", ["squad-v1.1-sample-dev.json", "squad-v2.0-sample-dev.json"])
def test_rows_average_to_the_official_scores(name: str) -> None:
    dataset = load_dataset_file(SAMPLE / name, max_samples=40)
    predictions = _predictions(dataset)
    odds = {ex.id: [0.5, 2.0, -3.0][i % 3] for i, ex in enumerate(dataset.examples)}  # 2.0: over the threshold
    odds = odds if dataset.version == "2.0" else None
    table = question_table(dataset, predictions, odds)
    assert tuple(table) == COLUMNS and len(table["id"]) == len(dataset.examples)
    official = score_dataset(dataset, predictions, odds)
    em_key = "exact" if dataset.version == "2.0" else "exact_match"
    assert 100 * sum(table["exact"]) / len(table["id"]) == pytest.approx(official[em_key])
    assert 100 * sum(table["f1"]) / len(table["id"]) == pytest.approx(official["f1"])
    assert set(table["exact"]) == {0, 1} and all(0.0 <= f <= 1.0 for f in table["f1"])
    first = dataset.examples[0]
    assert table["question"][0] == first.question and table["gold_answers"][0] == [a.text for a in first.answers]
    assert table["null_odds"][0] == (0.5 if odds else None)


def test_question_scores_follow_each_version() -> None:
    assert question_scores(["the Eiffel Tower"], "Eiffel tower!", "1.1") == (1, 1.0)
    assert question_scores(["Paris, France"], "Paris", "1.1") == (0, pytest.approx(2 / 3))
    assert question_scores([], "", "2.0") == (1, 1.0)  # unanswerable, no answer given
    assert question_scores([], "Paris", "2.0") == (0, 0.0)
    assert question_scores(["a"], "", "2.0") == (1, 1.0)  # "a" normalises to nothing: gold becomes ""
