"""One inference recipe, four paths: a seq2seq model with `num_beams 4` predicts byte-identically through the
retrain score, `qaflow evaluate`, promotion re-scoring and `qaflow answer` (all read the recipe stored with it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tasks.core.config import QAFlowConfig, load_config
from tasks.core.data import load_dataset_file, to_squad_json
from tasks.core.specs import InferenceRecipe, inference_recipe
from tasks.pipeline.evaluation import evaluate_file
from tasks.pipeline.prediction import StoredModel, predict_dataset, predict_with_stored_recipe
from tasks.pipeline.promote import evaluated_scores
from tasks.pipeline.serving import log_qa_model
from tasks.tracking.tracker import Tracker
from tests.tiny_models import SAMPLE_DEV_V1, cached_model_dir

NAME = "qa-recipe"


@pytest.fixture(scope="module")
def seq2seq_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny T5 with the recipe a retrain with `--num_beams 4 --val_max_answer_length 6` stores."""
    t5_dir = cached_model_dir("t5", tmp_path_factory.getbasetemp())
    cfg = QAFlowConfig()
    cfg.features.max_seq_length = 96
    cfg.postprocess.num_beams, cfg.postprocess.val_max_answer_length = 4, 6
    cfg.train.per_device_eval_batch_size = 5
    model_dir = tmp_path_factory.mktemp("beams") / "model"
    shutil.copytree(t5_dir, model_dir)
    inference_recipe(cfg, "seq2seq", "1.1").save(model_dir)
    return model_dir


def test_num_beams_4_gives_identical_predictions_on_all_four_paths(seq2seq_model: Path, tmp_path: Path) -> None:
    dataset = load_dataset_file(SAMPLE_DEV_V1, max_samples=16)
    data_file = tmp_path / "eval.json"
    data_file.write_text(json.dumps(to_squad_json(dataset)))
    recipe = InferenceRecipe.load(seq2seq_model)
    assert recipe.generation.num_beams == 4 and recipe.generation.max_new_tokens == 6

    # 1. the retrain flow's score (flows/retrain.predict_and_score)
    model = StoredModel.load(seq2seq_model)  # loaded once by the flow
    retrain = predict_dataset(model.predictor, load_dataset_file(data_file), model.recipe, tmp_path / "retrain")
    expected = (tmp_path / "retrain" / "predictions.json").read_bytes()

    root = tmp_path / "project"
    root.mkdir()
    (root / "params.yaml").write_text(yaml.safe_dump({"tracking": {"registered_model_name": NAME}}))
    cfg = load_config(root / "params.yaml")
    tracker = Tracker.from_config(cfg.tracking, root)
    run_id = tracker.create_run("seq2seq")
    log_qa_model(tracker, run_id, seq2seq_model)
    version = tracker.register(run_id, "model")

    # 2. qaflow evaluate (flows/evaluate_flow.score_model)
    evaluate_file(tracker, f"models:/{NAME}@challenger", data_file, tmp_path / "evaluate")
    assert (tmp_path / "evaluate" / "predictions.json").read_bytes() == expected

    # 3. promotion re-scoring (tasks/pipeline/promote/scores.rescore)
    scored = evaluated_scores(tracker, version, data_file, "sha256:test", tmp_path / "promote")
    assert (tmp_path / "promote" / f"v{version.version}" / "predictions.json").read_bytes() == expected
    assert scored.metrics == pytest.approx(retrain.metrics)

    # 4. qaflow answer (the served pyfunc, as `mlflow.pyfunc.load_model(uri).predict(rows)`)
    served = tracker.load_pyfunc(f"runs:/{run_id}/model")
    answers, _ = served.unwrap_python_model()._run(
        [type(ex)(**{**ex.__dict__, "id": str(i)}) for i, ex in enumerate(dataset.examples)]
    )
    assert list(answers.values()) == list(json.loads(expected).values())
    rows = served.predict([{"question": ex.question, "context": ex.context} for ex in dataset.examples])
    assert len(rows) == len(dataset.examples)


def test_num_beams_is_honoured(seq2seq_model: Path, tmp_path: Path) -> None:
    """The recipe's beams change generation: greedy and 4-beam search disagree somewhere on these questions."""
    dataset = load_dataset_file(SAMPLE_DEV_V1, max_samples=16)
    beams = predict_with_stored_recipe(seq2seq_model, dataset, tmp_path / "beams")
    greedy_dir = tmp_path / "greedy-model"
    shutil.copytree(seq2seq_model, greedy_dir)
    recipe = InferenceRecipe.load(seq2seq_model)
    InferenceRecipe.from_dict({**recipe.to_dict(), "generation": {"max_new_tokens": 6, "num_beams": 1}}).save(
        greedy_dir
    )
    greedy = predict_with_stored_recipe(greedy_dir, dataset, tmp_path / "greedy")
    beam_scores = json.loads((tmp_path / "beams" / "nbest_predictions.json").read_text())
    greedy_scores = json.loads((tmp_path / "greedy" / "nbest_predictions.json").read_text())
    assert beam_scores != greedy_scores, "num_beams 4 and greedy generation gave identical outputs"
    assert set(beams.files) == set(greedy.files)
