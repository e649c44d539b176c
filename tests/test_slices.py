"""Error slices (tasks/core/slices.py, tasks/pipeline/error_slices.py): every dimension sums back to the metric."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tasks.core.data import Answer, Example, load_dataset_file, to_squad_json
from tasks.core.metrics import per_question_scores, squad_v1_score, squad_v2_score
from tasks.core.slices import DIMENSIONS, answer_length, compare_slices, question_word, slice_table, weighted_mean
from tasks.pipeline.error_slices import PNG_MAGIC, read_slices, score_slices, write_slices
from tests.tiny_models import SAMPLE_DEV_V1, SAMPLE_DEV_V2


def _noisy_predictions(examples: list[Example], seed: int) -> dict[str, str]:
    """Gold answers, partial answers, wrong text and "" in a fixed pseudo-random mix."""
    rng = random.Random(seed)
    out = {}
    for ex in examples:
        gold = ex.answers[0].text if ex.answers else ""
        out[ex.id] = rng.choice([gold, " ".join(gold.split()[:1]), "the wrong words", "", ex.context[:20]])
    return out


@pytest.mark.parametrize(
    ("question", "word"),
    [("What is it?", "what"), ("In which year?", "which"), ("Name the one who won", "who"),
     ("How many?", "how"), ("The year of the Whigs?", "other"), ("Why, and when?", "why")],
)  # fmt: skip
def test_question_word(question: str, word: str) -> None:
    assert question_word(question) == word


def test_answer_length_uses_the_shortest_scored_answer() -> None:
    ex = Example("1", "t", "c", "q", answers=(Answer("the Denver Broncos", 0), Answer("Broncos", 4)))
    assert answer_length(ex) == "1 word"
    assert answer_length(Example("2", "t", "c", "q", is_impossible=True)) == "no answer"


def test_v1_slices_sum_back_to_the_official_scores() -> None:
    dataset = load_dataset_file(SAMPLE_DEV_V1)
    preds = _noisy_predictions(dataset.examples, seed=1)
    official = squad_v1_score(to_squad_json(dataset), preds)
    rows = score_slices(dataset, preds, None)
    assert {r.dimension for r in rows} == set(DIMENSIONS)
    for dim in DIMENSIONS:
        assert sum(r.count for r in rows if r.dimension == dim) == len(dataset.examples)
        assert weighted_mean(rows, dim, "f1") == pytest.approx(official["f1"], abs=1e-9)
        assert weighted_mean(rows, dim, "exact") == pytest.approx(official["exact_match"], abs=1e-9)
    assert 0 < official["f1"] < 100  # the mix scores neither nothing nor everything


@pytest.mark.parametrize("thresh", [1.0, 0.3])
def test_v2_slices_sum_back_with_the_no_answer_threshold(thresh: float) -> None:
    dataset = load_dataset_file(SAMPLE_DEV_V2)
    preds = _noisy_predictions(dataset.examples, seed=2)
    rng = random.Random(3)
    odds = {ex.id: rng.uniform(-1, 2) for ex in dataset.examples}
    official = squad_v2_score(to_squad_json(dataset), preds, odds, thresh)
    rows = score_slices(dataset, preds, odds, thresh)
    for dim in DIMENSIONS:
        assert weighted_mean(rows, dim, "f1") == pytest.approx(official["f1"], abs=1e-9)
    by = {r.slice: r for r in rows if r.dimension == "answerable"}
    assert by["answerable"].f1 == pytest.approx(official["HasAns_f1"], abs=1e-9)
    assert by["unanswerable"].exact == pytest.approx(official["NoAns_exact"], abs=1e-9)


def test_a_question_without_a_score_is_refused() -> None:
    ex = Example("1", "t", "c", "What?", answers=(Answer("c", 0),))
    with pytest.raises(ValueError, match="no score"):
        slice_table([ex], {})


def test_per_question_scores_of_v1() -> None:
    dataset = load_dataset_file(SAMPLE_DEV_V1, max_samples=3)
    gold = {ex.id: ex.answers[0].text for ex in dataset.examples}
    scores = per_question_scores(to_squad_json(dataset), {**gold, dataset.examples[0].id: "nothing like it"})
    assert [scores[ex.id] for ex in dataset.examples] == [(0.0, 0.0), (1.0, 1.0), (1.0, 1.0)]


def test_written_slices_round_trip_and_compare(tmp_path: Path) -> None:
    dataset = load_dataset_file(SAMPLE_DEV_V1)
    a = score_slices(dataset, _noisy_predictions(dataset.examples, seed=4), None)
    b = score_slices(dataset, {ex.id: ex.answers[0].text for ex in dataset.examples}, None)
    files = write_slices(a, tmp_path)
    assert read_slices(files["slices"]) == a
    assert files["slices_plot"].read_bytes()[:8] == PNG_MAGIC
    side = compare_slices([r.to_dict() for r in a], [r.to_dict() for r in b])
    assert len(side) == len(a)
    assert all(row["b"] == 100.0 and row["delta"] == pytest.approx(100.0 - row["a"]) for row in side)


def test_compare_shows_two_runs_slices_side_by_side(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    from flows.cli import main
    from tasks.core.config import load_config
    from tasks.pipeline.compare import SLICES_COMPARISON, compare
    from tasks.tracking.tracker import Tracker

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"tracking": {"experiment_name": "slices"}}))
    tracker = Tracker.from_config(load_config(tmp_path / "params.yaml").tracking, tmp_path)
    dataset = load_dataset_file(SAMPLE_DEV_V1)
    gold = {ex.id: ex.answers[0].text for ex in dataset.examples}
    ids = []
    for preds in (_noisy_predictions(dataset.examples, seed=6), gold):
        rows = score_slices(dataset, preds, None)
        with tracker.run("slices") as run_id:
            tracker.log_metrics(run_id, {"f1": weighted_mean(rows, "answerable")})
            tracker.log_slice_table(run_id, rows)
        ids.append(run_id)
    result = compare(tracker, run_ids=ids, output_dir=tmp_path / "cmp")
    assert result.slices and all(s["b"] == 100.0 and s["delta"] > 0 for s in result.slices)
    assert (tmp_path / "cmp" / SLICES_COMPARISON).is_file()
    assert "F1 by error slice" in result.files["report"].read_text()
    assert main(["compare", "--runs", *ids, "--root", str(tmp_path), "--no-log"]) == 0
    out = capsys.readouterr().out
    assert "F1 by error slice" in out and "question word" in out
