"""Bad input through the `qaflow` entry point: exit 2, one stderr line naming the culprit, no traceback, nothing
written or changed. Each case runs in-process (`flows.cli.main`), before any model work."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from flows.cli import main
from tests.conftest import REPO_ROOT

DEV = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"


def fingerprint(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def run_bad(capsys: pytest.CaptureFixture[str], root: Path, *argv: str) -> str:
    """`qaflow ARGV` must exit 2 with one stderr line and leave `root` byte-identical; returns that line."""
    before = fingerprint(root)
    code = main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    errors = [line for line in err if line.startswith("qaflow ")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    assert fingerprint(root) == before, "a failed command changed the workspace"
    return errors[0]


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copy(DEV, tmp_path / "dev.json")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: the hub is unreachable, at once
    return tmp_path


@pytest.mark.parametrize(
    ("flag", "value", "expect"),
    [
        ("--num_train_epochs", "-1", "train.num_train_epochs: -1.0 must be > 0"),
        ("--learning_rate", "-1", "train.learning_rate: -1.0 must be > 0"),
        ("--per_device_train_batch_size", "0", "train.per_device_train_batch_size: 0 must be >= 1"),
        ("--max_steps", "0", "train.max_steps: 0 must be > 0"),
        ("--warmup_ratio", "1.5", "train.warmup_ratio: 1.5 must be < 1"),
        ("--eval_strategy", "always", "argument --eval_strategy/--eval-strategy: invalid choice: 'always'"),
        ("--doc_stride", "400", "features.doc_stride (400) must be < max_seq_length"),
        ("--n_best_size", "0", "postprocess.n_best_size: 0 must be >= 1"),
        ("--max_seq_length", "abc", "argument --max_seq_length/--max-seq-length: invalid int value: 'abc'"),
        ("--model_family", "generative", "model_family 'generative' is not one of"),
    ],
)
def test_bad_parameter_fails_before_any_work(capsys, workspace: Path, flag: str, value: str, expect: str) -> None:
    line = run_bad(capsys, workspace, "train", flag, value, "--output_dir", "out")
    assert expect in line and not (workspace / "out").exists()


def test_missing_params_file_is_an_error(capsys, workspace: Path) -> None:
    assert "nope.yaml: parameter file not found" in run_bad(capsys, workspace, "train", "--params", "nope.yaml")


def test_params_section_that_is_a_list(capsys, workspace: Path) -> None:
    (workspace / "bad.yaml").write_text("train:\n  - 1\n")
    assert "section 'train' must be a mapping" in run_bad(capsys, workspace, "train", "--params", "bad.yaml")


def test_score_names_the_data_file_for_duplicate_ids(capsys, workspace: Path) -> None:
    data = json.loads(DEV.read_text())
    qas = data["data"][0]["paragraphs"][0]["qas"]
    qas.append(dict(qas[0]))
    (workspace / "dup.json").write_text(json.dumps(data))
    (workspace / "pred.json").write_text(json.dumps({qas[0]["id"]: "x"}))
    line = run_bad(capsys, workspace, "score", "--data", "dup.json", "--predictions", "pred.json")
    assert "dup.json: record" in line and "duplicate question id" in line


def test_score_blames_the_data_file_not_the_predictions(capsys, workspace: Path) -> None:
    (workspace / "broken.json").write_text(json.dumps({"version": "1.1", "data": [{"paragraphs": [{"qas": 3}]}]}))
    (workspace / "pred.json").write_text("{}")
    line = run_bad(capsys, workspace, "score", "--data", "broken.json", "--predictions", "pred.json")
    assert "broken.json" in line and "pred.json" not in line


@pytest.mark.parametrize("kind", ["missing", "truncated", "no-config", "hub-offline"])
def test_unloadable_model_is_one_line(capsys, workspace: Path, tiny_bert_dir: Path, kind: str) -> None:
    model = {"missing": "./no-such-model", "hub-offline": "someone/some-model"}.get(kind, "model")
    if kind in ("truncated", "no-config"):
        shutil.copytree(tiny_bert_dir, workspace / "model")
        if kind == "truncated":
            weights = workspace / "model" / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[:100])
        else:
            (workspace / "model" / "config.json").unlink()
    line = run_bad(capsys, workspace, "predict", "--model_dir", model, "--output_dir", "pred", "--data", "dev.json")
    expect = {
        "missing": "model directory not found", "truncated": "unreadable weights", "no-config": "no config.json",
        "hub-offline": "hub (http://127.0.0.1:9) is unreachable",
    }[kind]  # fmt: skip
    assert expect in line and not (workspace / "pred").exists()


def test_answer_context_from_a_directory(capsys, workspace: Path) -> None:
    (workspace / "passages").mkdir()
    line = run_bad(capsys, workspace, "answer", "--question", "q", "--context", "@passages")
    assert "passages is not a file" in line


def test_hub_dry_run_onto_an_existing_file(capsys, workspace: Path) -> None:
    (workspace / "folder").write_text("not a directory")
    line = run_bad(capsys, workspace, "push-to-hub", "--dry-run", "folder")
    assert "folder exists and is not a directory" in line


def test_too_long_question_fails_before_the_model_loads(capsys, workspace: Path, tiny_bert_dir: Path) -> None:
    data = json.loads(DEV.read_text())
    qa = data["data"][0]["paragraphs"][0]["qas"][1]
    qa["question"] = "why " * 200 + qa["question"]
    (workspace / "long.json").write_text(json.dumps(data))
    line = run_bad(capsys, workspace, "predict", "--model_dir", str(tiny_bert_dir), "--output_dir", "pred",
                   "--data", "long.json", "--max_seq_length", "128", "--doc_stride", "32")  # fmt: skip
    assert f"(first: '{qa['id']}'" in line and "question_policy: truncate" in line
