"""All three model families through the same retrain flow on SQuAD v2.0: the MLflow runs hold the same metric names."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.test_retrain_flow import env_for, make_repo, mlflow_client, retrain_argv, summary_of
from tests.tiny_models import cached_model_dir

V2 = "data/sample/squad-v2.0-sample-dev.json"


@pytest.mark.slow
def test_extractive_beam_and_seq2seq_retrain_with_the_same_metrics(tmp_path: Path, tiny_bert_dir: Path) -> None:
    base = tmp_path_factory_dir(tmp_path)
    models = {
        "extractive": tiny_bert_dir,
        "beam": cached_model_dir("xlnet", base),
        "seq2seq": cached_model_dir("t5", base),
    }
    repo = make_repo(tmp_path / "project", tiny_bert_dir, max_steps=4, save_steps=2)
    (repo / "data" / "sample" / Path(V2).name).write_bytes((Path(__file__).parents[2] / V2).read_bytes())
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"] = {"train_file": V2, "validation_file": V2, "split_eval_fraction": 0.34, "max_train_samples": 40,
                      "max_eval_samples": 20}  # fmt: skip  # no v2 train set: split dev by article
    (repo / "params.yaml").write_text(yaml.safe_dump(params))

    metric_names = {}
    client = mlflow_client(repo)
    for family, model_dir in models.items():
        proc = subprocess.run(
            retrain_argv(repo, "--model_name_or_path", str(model_dir), "--model_family", family),
            cwd=repo, env=env_for(repo), capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        assert proc.returncode == 0, f"{family}: {proc.stderr[-4000:]}"
        summary = summary_of(proc.stdout)
        assert summary["action"] == "new"
        run = client.get_run(summary["run_id"])
        assert run.data.tags["qaflow.family"] == family
        assert {"exact", "f1", "HasAns_exact", "NoAns_exact", "best_f1"} <= set(run.data.metrics)
        metric_names[family] = {
            k for k in run.data.metrics if not k.startswith(("train_", "predict_")) and k != "model_parameters"
        }
    assert metric_names["extractive"] == metric_names["beam"] == metric_names["seq2seq"]


def tmp_path_factory_dir(tmp_path: Path) -> Path:
    base = tmp_path / "tiny-models"
    base.mkdir()
    return base
