"""Hub publishing: the dry-run folder (weights, tokenizer, model card), a push to an unreachable hub, the token."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from tasks.core.config import QAFlowConfig, load_config
from tasks.pipeline.hub import (
    HubError,
    assert_no_secret,
    base_model_id,
    build_hub_folder,
    model_card,
    push_to_hub,
    resolve_token,
)
from tasks.pipeline.serving import log_qa_model
from tasks.tracking.tracker import Tracker
from tests.conftest import REPO_ROOT
from tests.servers import free_port
from tests.tiny_models import cached_model_dir, model_with_recipe

TOKEN = "hf_qaflowTESTtoken8d1c5e77"  # a made-up token: it must appear nowhere qaflow writes
NAME = "qa-hub"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> tuple[QAFlowConfig, Path]:
    """A registry whose `champion` is a tiny-model version with retrain-style params, metrics and tags."""
    root = tmp_path_factory.mktemp("hub") / "project"
    root.mkdir()
    params = {"tracking": {"tracking_uri": "sqlite:///mlruns/mlflow.db", "registered_model_name": NAME},
              "train": {"learning_rate": 5e-5, "max_steps": 16},
              "model": {"model_name_or_path": str(tiny_bert_dir)}}  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    cfg = load_config(root / "params.yaml")
    tracker = Tracker.from_config(cfg.tracking, root)
    with tracker.run("hub") as run_id:
        tracker.log_params(run_id, cfg.to_dict())
        tracker.set_tags(run_id, {"qaflow.data_version": "dv-hub-1", "qaflow.backend": "cpu",
                                  "qaflow.device": "x86_64 (2 cores)", "qaflow.run_key": "k1"})  # fmt: skip
        tracker.log_metrics(run_id, {"exact_match": 61.5, "f1": 72.25, "train_steps_per_second": 3.5,
                                     "train_samples_per_second": 42.0})  # fmt: skip
        served = model_with_recipe(tiny_bert_dir, root / "served", max_seq_length=96, doc_stride=32)
        log_qa_model(tracker, run_id, served)
    tracker.register(run_id, "model")
    tracker.set_alias("champion", "1")
    return cfg, root


def _registry_state(cfg: QAFlowConfig, root: Path) -> tuple[dict, list]:
    client = Tracker.from_config(cfg.tracking, root).client
    model = client.get_registered_model(NAME)
    versions = [(v.version, dict(v.tags)) for v in client.search_model_versions(f"name = '{NAME}'")]
    return dict(model.aliases), sorted(versions)


def _files_containing(folder: Path, needle: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_dry_run_folder_has_card_weights_and_no_token(project: tuple[QAFlowConfig, Path], tmp_path: Path) -> None:
    cfg, root = project
    out = tmp_path / "upload"
    env = {**os.environ, "HF_TOKEN": TOKEN}
    cli = subprocess.run(
        [sys.executable, "-m", "flows.cli", "push-to-hub", "--root", str(root), "--repo-id", "me/qa-tiny",
         "--dry-run", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr[-3000:]
    files = {p.name for p in out.iterdir()}
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json", "inference_recipe.json"} <= files
    assert "training_args.bin" not in files
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and ModelCard.load(out / "README.md").data.pipeline_tag == "question-answering"
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["pipeline_tag"] == "question-answering" and meta["library_name"] == "transformers"
    results = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    assert results == {"exact_match": 61.5, "f1": 72.25}
    assert meta["qaflow"]["data_version"] == "dv-hub-1" and meta["qaflow"]["train_steps_per_second"] == 3.5
    assert meta["qaflow"]["device"] == "x86_64 (2 cores)" and meta["qaflow"]["version"] == "1"
    assert "| train.learning_rate | 5e-05 |" in card and "me/qa-tiny" in card
    assert str(Path(cfg.model.model_name_or_path).parent) not in card  # no local paths in a public card
    assert TOKEN not in cli.stdout + cli.stderr and not _files_containing(out, TOKEN)

    with pytest.raises(HubError, match="not empty"):
        build_hub_folder(Tracker.from_config(cfg.tracking, root), out)


def test_push_to_unreachable_hub_fails_clearly_and_changes_nothing(project: tuple[QAFlowConfig, Path]) -> None:
    cfg, root = project
    before = _registry_state(cfg, root)
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {**os.environ, "HF_TOKEN": TOKEN, "HF_ENDPOINT": endpoint, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    cli = subprocess.run(
        [sys.executable, "-m", "flows.cli", "push-to-hub", "--root", str(root), "--repo-id", "me/qa-tiny"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 2
    assert "unreachable" in cli.stderr and endpoint in cli.stderr and "nothing was changed" in cli.stderr
    assert TOKEN not in cli.stdout + cli.stderr
    assert _registry_state(cfg, root) == before

    with pytest.raises(HubError, match="unreachable") as err:
        push_to_hub(Tracker.from_config(cfg.tracking, root), "me/qa-tiny", TOKEN, endpoint=endpoint)
    assert TOKEN not in str(err.value) and err.value.__cause__ is None
    assert _registry_state(cfg, root) == before
    assert not _files_containing(root, TOKEN)  # the store (db, artifacts), params, outputs


def test_token_sources_and_secret_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(HubError, match="HF_TOKEN"):
        resolve_token()
    monkeypatch.setenv("HF_TOKEN", f" {TOKEN}\n")
    assert resolve_token() == TOKEN
    token_file = tmp_path / "token"
    token_file.write_text("hf_fromfile\n")
    assert resolve_token(token_file) == "hf_fromfile"
    with pytest.raises(HubError, match="does not exist"):
        resolve_token(tmp_path / "missing")

    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "README.md").write_text("clean")
    assert_no_secret(tmp_path / "folder", TOKEN)
    (tmp_path / "folder" / "config.json").write_text(f'{{"hub_token": "{TOKEN}"}}')
    with pytest.raises(HubError, match="config.json") as err:
        assert_no_secret(tmp_path / "folder", TOKEN)
    assert TOKEN not in str(err.value)


def test_dry_run_runs_the_secret_scan(project: tuple[QAFlowConfig, Path], tmp_path: Path) -> None:
    """A token that occurs in the upload folder stops a dry run as it stops a push (one line, exit 2)."""
    _, root = project
    out = tmp_path / "upload"
    env = {**os.environ, "HF_TOKEN": "model_type"}  # a "token" that occurs in every config.json
    cli = subprocess.run(
        [sys.executable, "-m", "flows.cli", "push-to-hub", "--root", str(root), "--dry-run", str(out)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 2 and "refusing to upload: the token occurs in config.json" in cli.stderr


@pytest.mark.parametrize(
    ("family", "pipeline_tag", "loader"),
    [
        ("extractive", "question-answering", "AutoModelForQuestionAnswering"),
        ("beam", "question-answering", "XLNetForQuestionAnswering"),
        ("seq2seq", "text2text-generation", "AutoModelForSeq2SeqLM"),
    ],
)
def test_model_card_of_each_family_parses_with_huggingface_hub(
    family: str, pipeline_tag: str, loader: str, tmp_path: Path
) -> None:
    info = {
        "model": NAME, "version": "3", "run_id": "r" * 32,
        "metrics": {"exact": 55.0, "f1": 60.125, "HasAns_f1": 40.0, "NoAns_f1": 80.0, "train_runtime": 12.0},
        "params": {"model.model_name_or_path": "minilm", "data.validation_file": "/home/me/dev-v2.json"},
        "tags": {"qaflow.data_version": "dv-7", "qaflow.backend": "cpu"},
    }  # fmt: skip
    card = model_card(info, "me/qa", family)
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.pipeline_tag == pipeline_tag and loaded.data.library_name == "transformers"
    assert loaded.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    results = {r.metric_type: r.metric_value for r in loaded.data.eval_results}
    assert results == {"exact": 55.0, "f1": 60.125, "HasAns_f1": 40.0, "NoAns_f1": 80.0}
    assert {r.dataset_type for r in loaded.data.eval_results} == {"squad_v2"}
    assert loaded.data.qaflow["family"] == family and loaded.data.qaflow["data_version"] == "dv-7"
    assert f'{loader}.from_pretrained("me/qa")' in loaded.text and "/home/me" not in loaded.content
    assert base_model_id("/abs/checkpoint") is None and base_model_id("google/flan-t5-small") == "google/flan-t5-small"


@pytest.mark.parametrize("family", ["extractive", "beam", "seq2seq"])
def test_usage_snippet_of_each_family_runs(
    family: str, tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The card's usage code, as a reader would paste it, on a tiny model of that family."""
    base = tmp_path_factory.getbasetemp()
    model_dir = {"extractive": tiny_bert_dir, "beam": cached_model_dir("xlnet", base),
                 "seq2seq": cached_model_dir("t5", base)}[family]  # fmt: skip
    info = {"model": NAME, "version": "1", "run_id": "r", "metrics": {}, "params": {}, "tags": {}}
    text = model_card(info, str(model_dir), family).text
    code = text.split("```python\n", 1)[1].split("```", 1)[0]
    exec(compile(code, f"{family}-usage", "exec"), {})  # the snippet exactly as the card publishes it
