"""The calibrated no-answer threshold (SQuAD v2): chosen by the official scorer, stored in the recipe, applied."""

from __future__ import annotations

import json
import math
import random
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tasks.core.calibration import best_f1_threshold, null_above
from tasks.core.config import load_config
from tasks.core.data import QADataset, load_dataset_file, split_by_article, to_squad_json
from tasks.core.metrics import squad_v2_score
from tasks.core.specs import RECIPE_FILE, InferenceRecipe
from tasks.pipeline.calibration import CalibrationError, calibrate_model_dir
from tasks.pipeline.prediction import Predictor, predict_dataset
from tasks.pipeline.serving import log_qa_model
from tasks.tracking.tracker import Tracker
from tests.tiny_models import SAMPLE_DEV_V1, SAMPLE_DEV_V2, model_with_recipe


def _overconfident_model(dataset: QADataset, seed: int) -> tuple[dict[str, str], dict[str, float]]:
    """Best non-null answers (right 70% of the time) and null odds that lean to "no answer" for every question:
    unanswerable ~ N(2, 1), answerable ~ N(0.8, 1), so threshold 0 throws away most right answers."""
    rng = random.Random(seed)
    answers, odds = {}, {}
    for ex in dataset.examples:
        right = ex.answers and rng.random() < 0.7
        answers[ex.id] = ex.answers[0].text if right else "some other words"
        odds[ex.id] = rng.gauss(2.0 if ex.is_impossible else 0.8, 1.0)
    return answers, odds


def _f1(dataset: QADataset, answers: dict[str, str], odds: dict[str, float], thresh: float) -> float:
    return squad_v2_score(to_squad_json(dataset), null_above(answers, odds, thresh), odds, thresh)["f1"]


def test_calibrated_threshold_beats_zero_on_held_out_articles() -> None:
    calib, held_out = split_by_article(load_dataset_file(SAMPLE_DEV_V2), 0.35, seed=0)
    assert not {ex.title for ex in calib.examples} & {ex.title for ex in held_out.examples}
    answers, odds = _overconfident_model(QADataset(calib.examples + held_out.examples, "2.0", "x"), seed=5)
    best_f1, thresh = best_f1_threshold(to_squad_json(calib), answers, odds)
    official = squad_v2_score(to_squad_json(calib), {e.id: answers[e.id] for e in calib.examples}, odds)
    assert (best_f1, thresh) == (official["best_f1"], official["best_f1_thresh"])
    assert _f1(calib, answers, odds, thresh) == pytest.approx(best_f1)  # applying it reaches the official best
    assert thresh > 0.5  # the model's lean is corrected
    assert _f1(held_out, answers, odds, thresh) > _f1(held_out, answers, odds, 0.0) + 5


def test_recipes_without_the_field_still_load(tmp_path: Path) -> None:
    recipe = InferenceRecipe("extractive")
    raw = recipe.to_dict()
    raw.pop("null_threshold")
    (tmp_path / RECIPE_FILE).write_text(json.dumps(raw))
    assert InferenceRecipe.load(tmp_path).null_threshold is None
    replace(recipe, null_threshold=1.5).save(tmp_path)
    loaded = InferenceRecipe.load(tmp_path)
    assert loaded.null_threshold == 1.5
    assert loaded.for_data_version("2.0").nbest.null_score_diff_threshold == 1.5
    assert loaded.for_data_version("1.1").nbest.null_score_diff_threshold == 0.0  # v1: no null answers
    with pytest.raises(ValueError, match="finite"):
        InferenceRecipe("extractive", null_threshold=math.inf)


@pytest.fixture
def v2_model(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    return model_with_recipe(
        tiny_bert_dir, tmp_path / "model", max_seq_length=64, doc_stride=16, version_2_with_negative=True
    )


def test_calibration_is_stored_and_applied_by_evaluate_and_answer(v2_model: Path, tmp_path: Path) -> None:
    data = load_dataset_file(SAMPLE_DEV_V2, max_samples=24)
    result = calibrate_model_dir(v2_model, data, tmp_path / "calib")
    stored = json.loads((v2_model / RECIPE_FILE).read_text())
    assert stored["null_threshold"] == result.threshold
    # the official best_f1_thresh of the model's own answer-always run
    predictor = Predictor.load(v2_model)
    plain = InferenceRecipe.load(v2_model)
    best = predictor.predict(data.examples, replace(plain, null_threshold=None).answer_always(), tmp_path / "all",
                             save_raw=False)  # fmt: skip
    assert result.threshold == squad_v2_score(to_squad_json(data), best.predictions, best.null_odds)["best_f1_thresh"]

    # evaluation: the calibrated answers and scores, the configured threshold's scores beside them
    forced = sorted(best.null_odds.values())[len(data) // 2]  # a threshold that nulls about half
    replace(plain, null_threshold=forced).save(v2_model)
    summary = predict_dataset(predictor, data, InferenceRecipe.load(v2_model), tmp_path / "eval", save_raw=False)
    expected = null_above(best.predictions, best.null_odds, forced)
    assert 0 < sum(a == "" for a in expected.values()) < len(data)  # the threshold decides, both ways
    assert summary.metrics is not None and summary.metrics["null_threshold"] == forced
    assert json.loads(summary.files["predictions"].read_text()) == expected
    assert summary.metrics["f1"] == squad_v2_score(to_squad_json(data), expected, best.null_odds, forced)["f1"]
    uncalibrated = null_above(best.predictions, best.null_odds, 0.0)
    assert summary.metrics["uncalibrated_f1"] == squad_v2_score(to_squad_json(data), uncalibrated, best.null_odds)["f1"]

    # `qaflow answer`: the served model applies the stored threshold
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"tracking": {"registered_model_name": "calib-qa"}}))
    tracker = Tracker.from_config(load_config(tmp_path / "params.yaml").tracking, tmp_path)
    run_id = tracker.create_run("calibrated")
    log_qa_model(tracker, run_id, v2_model)
    qa = tracker.load_pyfunc(f"runs:/{run_id}/model")
    rows = [{"question": ex.question, "context": ex.context} for ex in data.examples]
    answers = qa.predict(rows)["answer"].tolist()
    assert qa.unwrap_python_model().recipe.null_threshold == forced
    assert [a == "" for a in answers] == [expected[ex.id] == "" for ex in data.examples]


def test_calibration_needs_v2_data(v2_model: Path, tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="v2.0"):
        calibrate_model_dir(v2_model, load_dataset_file(SAMPLE_DEV_V1, max_samples=4), tmp_path / "c")
