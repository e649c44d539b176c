"""The DVC stage bodies and data splits (tasks/pipeline/stages.py), on the bundled sample and a tiny BERT."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tasks.core.config import QAFlowConfig
from tasks.core.data import load_dataset_file
from tasks.core.features import load_features
from tasks.pipeline.featurize import featurize, featurize_prepared, train_feature_spec
from tasks.pipeline.stages import load_split, prepare
from tests.conftest import REPO_ROOT
from tests.tiny_models import SAMPLE_DEV_V1, SAMPLE_DEV_V2, SAMPLE_TRAIN


def config(model_dir: Path, **data: object) -> QAFlowConfig:
    cfg = QAFlowConfig()
    cfg.model.model_name_or_path = str(model_dir)
    cfg.features.max_seq_length, cfg.features.doc_stride = 96, 32
    cfg.data.train_file, cfg.data.validation_file = str(SAMPLE_TRAIN), str(SAMPLE_DEV_V1)
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


def test_prepare_writes_normalised_splits_and_a_report(tiny_bert_dir: Path, tmp_path: Path) -> None:
    cfg = config(tiny_bert_dir, max_train_samples=30, max_eval_samples=12)
    report = prepare(cfg, tmp_path)
    train, evaluation = load_dataset_file(tmp_path / "train.json"), load_dataset_file(tmp_path / "eval.json")
    assert len(train.examples) == 30 and len(evaluation.examples) == 12
    assert [ex.id for ex in train.examples] == [ex.id for ex in load_dataset_file(SAMPLE_TRAIN).examples[:30]]
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == json.loads(json.dumps(report)) and on_disk["train"]["source"].endswith(SAMPLE_TRAIN.name)


def test_article_split_keeps_articles_whole_and_is_deterministic(tiny_bert_dir: Path) -> None:
    cfg = config(tiny_bert_dir, train_file=str(SAMPLE_DEV_V2), split_eval_fraction=0.3)
    train, evaluation = load_split(cfg, "train"), load_split(cfg, "eval")
    assert {ex.title for ex in train.examples}.isdisjoint({ex.title for ex in evaluation.examples})
    assert len(train.examples) + len(evaluation.examples) == len(load_dataset_file(SAMPLE_DEV_V2).examples)
    assert [ex.id for ex in load_split(cfg, "eval").examples] == [ex.id for ex in evaluation.examples]
    explicit = load_split(cfg, "eval", SAMPLE_DEV_V1)  # an explicit file wins over the split
    assert explicit.version == "1.1"


def test_featurize_prepared_writes_the_family_features_and_settings(tiny_bert_dir: Path, tmp_path: Path) -> None:
    cfg = config(tiny_bert_dir, max_train_samples=20, max_eval_samples=8)
    prepare(cfg, tmp_path / "prepared")
    report = featurize_prepared(cfg, tmp_path / "prepared", tmp_path / "features")
    features = load_features(tmp_path / "features" / "train.npz")
    assert report["train"]["features"] == len(features) >= 20 and features.start_positions is not None
    assert features.input_ids.shape[1] == 96
    assert report["eval"]["examples"] == 8 and report["eval"]["features"] >= 8
    assert report["settings"]["tokenizer"] == str(tiny_bert_dir)  # the configured name, not a resolved path
    assert report["settings"]["doc_stride"] == 32


def test_featurize_eval_split_has_offsets_and_no_labels(tiny_bert_dir: Path, tmp_path: Path) -> None:
    cfg = config(tiny_bert_dir)
    out = featurize(cfg, SAMPLE_DEV_V1, tmp_path / "eval.npz", split="eval")
    features = load_features(tmp_path / "eval.npz")
    assert out["features"] == len(features) and features.start_positions is None and features.offsets is not None
    assert np.all(features.example_index[:-1] <= features.example_index[1:])


def test_train_feature_spec_follows_the_config(tiny_bert_dir: Path) -> None:
    cfg = config(tiny_bert_dir)
    cfg.postprocess.max_answer_length, cfg.features.preprocessing_num_workers = 12, 2
    spec = train_feature_spec(cfg)
    assert (spec.windows.max_seq_length, spec.windows.doc_stride, spec.max_answer_length, spec.num_proc) == (
        96, 32, 12, 2,
    )  # fmt: skip


def test_bad_family_name_fails_before_any_work(tiny_bert_dir: Path, tmp_path: Path) -> None:
    cfg = config(tiny_bert_dir)
    cfg.model.model_family = "generative"
    with pytest.raises(ValueError, match="not one of"):
        featurize(cfg, SAMPLE_DEV_V1, tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


def stage_command(module: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """A stage as dvc.yaml runs it: `python -m <module> ...` in the project directory."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_stage_commands_print_the_report_and_fail_in_one_line(tiny_bert_dir: Path, tmp_path: Path) -> None:
    params = {"data": {"train_file": str(SAMPLE_TRAIN), "validation_file": str(SAMPLE_DEV_V1), "max_train_samples": 6,
                       "max_eval_samples": 4}, "model": {"model_name_or_path": str(tiny_bert_dir)},
              "features": {"max_seq_length": 96, "doc_stride": 32}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(json.dumps(params))  # JSON is YAML
    prepared = stage_command("tasks.pipeline.stages", tmp_path, "--out", "data/prepared")
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    assert json.loads(prepared.stdout)["train"]["questions"] == 6
    featurized = stage_command("tasks.pipeline.featurize", tmp_path, "--prepared", "data/prepared", "--out", "f")
    assert featurized.returncode == 0, featurized.stderr[-2000:]
    assert json.loads(featurized.stdout)["train"]["examples"] == 6 and (tmp_path / "f" / "train.npz").is_file()

    (tmp_path / "bad.json").write_text('{"version": "1.1", "data": [{"title": "t", "paragraphs": [{}]}]}')
    params["data"]["train_file"] = str(tmp_path / "bad.json")
    (tmp_path / "params.yaml").write_text(json.dumps(params))
    failed = stage_command("tasks.pipeline.stages", tmp_path, "--out", "data/prepared")
    assert failed.returncode == 2 and failed.stderr.count("\n") == 1, failed.stderr[-2000:]
    assert failed.stderr.startswith("qaflow stage prepare: error: ") and "bad.json" in failed.stderr
    missing = stage_command("tasks.pipeline.featurize", tmp_path, "--prepared", "nowhere", "--out", "f")
    assert missing.returncode == 2 and "nowhere" in missing.stderr.splitlines()[-1]
    usage = stage_command("tasks.pipeline.featurize", tmp_path)
    assert usage.returncode == 2 and usage.stderr.strip() == (
        "qaflow stage featurize: error: the following arguments are required: --out"
    )
