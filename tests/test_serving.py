"""The served pyfunc (tasks/pipeline/serving.py): input rows, answer rows, and the recipe it must carry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tasks.core.config import load_config
from tasks.core.data import load_dataset_file
from tasks.pipeline.serving import answer_row, input_rows, load_qa_model, log_qa_model
from tasks.tracking.tracker import Tracker
from tests.tiny_models import SAMPLE_DEV_V2, model_with_recipe

CONTEXT = "The Eiffel Tower was built in 1889 by Gustave Eiffel. It stands in Paris, the capital of France."


def test_input_rows_and_answer_row() -> None:
    rows = input_rows({"question": ["q1", "q2"], "context": ["c1", "c2"]})
    assert [r["question"] for r in rows] == ["q1", "q2"]
    assert input_rows({"question": "q", "context": "c"}) == [{"question": "q", "context": "c"}]
    with pytest.raises(ValueError, match="context"):
        input_rows([{"question": "q"}])
    nbest = [{"text": "1889", "probability": 0.7, "offsets": [30, 34]}, {"text": "", "probability": 0.3}]
    assert answer_row("1889", nbest, CONTEXT) == {"answer": "1889", "score": 0.7, "start": 30, "end": 34}
    assert answer_row("", nbest, CONTEXT) == {"answer": "", "score": 0.3, "start": -1, "end": -1}
    filler = [{"text": "empty", "probability": 1.0, "offsets": [0, 0]}]
    assert answer_row("empty", filler, CONTEXT)["answer"] == ""


@pytest.fixture
def store(tmp_path: Path) -> Tracker:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"tracking": {"registered_model_name": "serve-qa"}}))
    return Tracker.from_config(load_config(tmp_path / "params.yaml").tracking, tmp_path)


def test_a_model_without_its_recipe_is_refused_before_logging(store: Tracker, tiny_bert_dir: Path) -> None:
    run_id = store.create_run("no-recipe")
    with pytest.raises(FileNotFoundError, match="no inference recipe"):
        log_qa_model(store, run_id, tiny_bert_dir)
    assert store.client.list_artifacts(run_id) == [] and not store.has_ready_model(run_id, "model")


def test_served_model_follows_the_data_version(store: Tracker, tiny_bert_dir: Path, tmp_path: Path) -> None:
    """v2 data switches null answers on (null odds written); the stored recipe alone (`answer`) keeps them off."""
    served = model_with_recipe(tiny_bert_dir, tmp_path / "served", max_seq_length=64, doc_stride=16)
    run_id = store.create_run("served")
    log_qa_model(store, run_id, served)
    qa = load_qa_model(store, f"runs:/{run_id}/model")
    examples = load_dataset_file(SAMPLE_DEV_V2, max_samples=6).examples
    v2 = qa.run_examples(examples, tmp_path / "v2", data_version="2.0")
    assert v2.null_odds is not None and set(json.loads(v2.files["null_odds"].read_text())) == set(v2.predictions)
    plain = qa.run_examples(examples, tmp_path / "plain")
    assert plain.null_odds is None and "null_odds" not in plain.files
    assert qa.recipe.windows.max_seq_length == 64


def test_logged_model_holds_no_pickle(store: Tracker, tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Models-from-code: loading runs our shipped code, never an unpickled object; training_args.bin stays out."""
    served = model_with_recipe(tiny_bert_dir, tmp_path / "served", max_seq_length=64, doc_stride=16)
    (served / "training_args.bin").write_bytes(b"pickled TrainingArguments")
    run_id = store.create_run("no-pickle")
    log_qa_model(store, run_id, served)
    local = store.download_model(f"runs:/{run_id}/model", tmp_path / "dl")
    names = {p.name for p in local.rglob("*") if p.is_file()}
    assert "python_model.pkl" not in names and "training_args.bin" not in names
    assert not [n for n in names if n.endswith((".pkl", ".pickle"))]
    assert "served_model.py" in names and "inference_recipe.json" in names
    out = store.load_pyfunc(f"runs:/{run_id}/model").predict(
        [{"question": "When was the tower built?", "context": CONTEXT}]
    )
    assert list(out.columns) == ["id", "answer", "score", "start", "end"]
