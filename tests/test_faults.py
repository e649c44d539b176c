"""Bad input through the `qaflow` entry point: exit 2, one stderr line naming the culprit, no traceback, nothing
written or changed. Each case runs in-process (`flows.cli.main`), before any model work."""

from __future__ import annotations

import hashlib
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import mlflow
import pytest

from flows.cli import main
from tasks.core.config import load_config
from tasks.pipeline.serving import log_qa_model
from tasks.tracking.tracker import Tracker
from tests import faultkit
from tests.conftest import REPO_ROOT
from tests.tiny_models import model_with_recipe

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


# ------------------------------------------------------------------------------------ untrusted models


def _spring(marker: str) -> Any:
    """What unpickling the trap model calls: proof that the model's own code ran."""
    Path(marker).write_text("the registered model's code ran", encoding="utf-8")
    return _Inert()


class _Inert(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):  # noqa: ANN001, ANN201 - pyfunc signature
        return model_input


class _Trap(_Inert):
    """A cloudpickled pyfunc whose unpickling runs `_spring` (as any pickle can run any code)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (_spring, (self.marker,))


def _register(workspace: Path, log: Any) -> None:
    """`log(tracker, run_id)` a model into a new run of the workspace's store; registered as qaflow-qa@champion."""
    tracker = Tracker.from_config(load_config(workspace / "params.yaml").tracking, workspace)
    run_id = tracker.create_run("logged")
    log(tracker, run_id)
    tracker.register(run_id, "model", alias="champion")


def refused_model(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """`qaflow ARGV` must exit 2 with one stderr line and no traceback (the store's files may be read)."""
    code = main(list(argv))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"qaflow {argv[0]}")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err[-3000:]
    return lines[0]


@pytest.mark.reliability
@pytest.mark.parametrize("command", ["answer", "evaluate"])
def test_a_pickled_model_is_refused_before_its_code_runs(capsys, workspace: Path, command: str) -> None:
    marker = workspace / "ran.txt"
    _register(workspace, lambda t, run: t.log_pyfunc_model(run, "model", python_model=_Trap(str(marker))))
    marker.unlink(missing_ok=True)
    argv = (["answer", "--question", "Who won?", "--context", "Denver won."] if command == "answer"
            else ["evaluate", "--model-uri", "models:/qaflow-qa@champion", "--data", "dev.json"])  # fmt: skip
    line = refused_model(capsys, *argv)
    assert "pickled" in line and "models:/qaflow-qa@champion" in line, line
    assert not marker.exists(), "loading the registered model ran its code"


@pytest.mark.reliability
def test_a_models_from_code_model_with_other_code_is_refused(capsys, workspace: Path) -> None:
    marker = workspace / "ran.txt"
    code = workspace / "other_model.py"
    code.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\nimport mlflow\n"
                    "class M(mlflow.pyfunc.PythonModel):\n    def predict(self, context, model_input):\n"
                    "        return model_input\nmlflow.models.set_model(M())\n")  # fmt: skip
    _register(workspace, lambda t, run: t.log_pyfunc_model(run, "model", python_model=str(code)))
    marker.unlink(missing_ok=True)
    line = refused_model(capsys, "answer", "--question", "Who won?", "--context", "Denver won.")
    assert "served_model.py" in line, line
    assert not marker.exists()


def test_qaflows_own_model_answers(capsys, workspace: Path, tiny_bert_dir: Path) -> None:
    """The control: a model logged by qaflow loads through the same check and answers."""
    served = model_with_recipe(tiny_bert_dir, workspace / "served", max_seq_length=64, doc_stride=16)
    _register(workspace, lambda t, run: log_qa_model(t, run, served))
    assert main(["answer", "--question", "Who won?", "--context", "Denver won the game."]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["model"] == "models:/qaflow-qa@champion" and "answer" in row


def _custom_code_checkpoint(tiny_bert_dir: Path, target: Path, marker: Path) -> Path:
    """The tiny model with its own model type and an `auto_map` to Python code shipped beside it."""
    shutil.copytree(tiny_bert_dir, target)
    config = json.loads((target / "config.json").read_text())
    config.update(model_type="evilbert", auto_map={"AutoConfig": "evil.EvilConfig",
                                                   "AutoModelForQuestionAnswering": "evil.EvilModel"})  # fmt: skip
    (target / "config.json").write_text(json.dumps(config))
    (target / "evil.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
        "from transformers import BertConfig, BertForQuestionAnswering\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evilbert'\n"
        "class EvilModel(BertForQuestionAnswering):\n    config_class = EvilConfig\n"
    )
    return target


def run_on_a_terminal(argv: list[str], cwd: Path, answer: bytes = b"y\n", timeout: float = 300) -> tuple[int, str]:
    """Run `argv` with a pseudo-terminal as stdin/stdout/stderr, answering `answer` to a [y/N] prompt."""
    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    out, answered, deadline = b"", False, time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
                if not answered and b"[y/N]" in out:
                    os.write(master, answer)
                    answered = True
            elif proc.poll() is not None:
                break
        else:
            proc.kill()
            pytest.fail(f"{argv} did not finish in {timeout:.0f} s:\n{out.decode(errors='replace')[-2000:]}")
        return proc.wait(timeout=60), out.decode(errors="replace")
    finally:
        os.close(master)


@pytest.mark.reliability
def test_a_checkpoint_with_custom_code_is_refused_without_a_prompt(workspace: Path, tiny_bert_dir: Path) -> None:
    """transformers asks on a terminal whether to run a checkpoint's `auto_map` code, and runs it on "y"."""
    marker = workspace / "ran.txt"
    _custom_code_checkpoint(tiny_bert_dir, workspace / "custom", marker)
    code, out = run_on_a_terminal([sys.executable, "-m", "flows.cli", "predict", "--model_dir", "custom",
                                   "--data", "dev.json", "--output_dir", "pred"], workspace)  # fmt: skip
    lines = [line for line in out.splitlines() if line.startswith("qaflow predict")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in out, out[-3000:]
    assert "auto_map" in lines[0] and "config.json" in lines[0], lines[0]
    assert "[y/N]" not in out and not marker.exists() and not (workspace / "pred").exists()


# ------------------------------------------------------------------------------------ the served model's errors


@pytest.fixture(scope="module")
def scoring_client(tmp_path_factory: pytest.TempPathFactory, tiny_bert_dir: Path) -> Any:
    """MLflow's own scoring server app (`mlflow models serve`) over a logged qaflow model, called in-process."""
    from fastapi.testclient import TestClient
    from mlflow.pyfunc import scoring_server

    root = tmp_path_factory.mktemp("served")
    (root / "params.yaml").write_text("tracking:\n  experiment_name: served\n")
    tracker = Tracker.from_config(load_config(root / "params.yaml").tracking, root)
    served = model_with_recipe(tiny_bert_dir, root / "served", max_seq_length=64, doc_stride=16)
    run_id = tracker.create_run("served")
    log_qa_model(tracker, run_id, served)
    app = scoring_server.init(tracker.load_pyfunc(f"runs:/{run_id}/model"))  # what `mlflow models serve` loads
    return TestClient(app, raise_server_exceptions=False)  # as a real server: an unhandled error is a 500


def _invoke(client: Any, body: bytes) -> Any:
    return client.post("/invocations", content=body, headers={"Content-Type": "application/json"})


CONTEXT = "Denver won the game in Santa Clara."


@pytest.mark.reliability
@pytest.mark.parametrize(
    ("question", "expect"),
    [('"\\u200b\\u200d"', "empty question"), ('" \\t "', "empty question"), ('"\\u0000\\u001b"', "empty question"),
     ('"Who \\ud800 won?"', "surrogate"), ('"' + "why " * 300 + '"', "question_policy")],
    ids=["zero-width", "whitespace", "control-only", "lone surrogate", "too long for the window"],
)  # fmt: skip
def test_the_served_model_refuses_bad_text_in_one_line_without_a_trace(scoring_client, question: str, expect: str):
    body = f'{{"dataframe_records": [{{"question": {question}, "context": "{CONTEXT}"}}]}}'.encode()
    response = _invoke(scoring_client, body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert expect in error["message"] and "stack_trace" not in error, error
    assert "Traceback" not in response.text and str(REPO_ROOT) not in response.text, response.text


@pytest.mark.reliability
def test_served_error_bodies_hold_no_trace_or_path(scoring_client) -> None:
    good = _invoke(scoring_client, json.dumps({"dataframe_records": [{"question": "Who won?",
                                                                     "context": CONTEXT}]}).encode())  # fmt: skip
    assert good.status_code == 200 and good.json()["predictions"][0]["answer"] is not None
    for body in (b'{"dataframe_records": [{"question": "q"}]}', b"[" * 100_000 + b"]" * 100_000,
                 b'{"dataframe_records": [{"question": "q", "context": ' + b"9" * 5000 + b"}]}"):  # fmt: skip
        response = _invoke(scoring_client, body)
        assert response.status_code >= 400, response.text[:500]
        assert "Traceback" not in response.text and "stack_trace" not in response.text, response.text[:2000]
        assert str(REPO_ROOT) not in response.text and "site-packages" not in response.text, response.text[:2000]


def test_served_error_of_a_bug_names_only_its_type() -> None:
    from tasks.pipeline.serving import served_error

    bug = served_error(KeyError(f"{REPO_ROOT}/tasks/secret.py"))
    assert bug.get_http_status_code() == 500 and "KeyError" in bug.message and str(REPO_ROOT) not in bug.message
    bad = served_error(ValueError(f"row 0: {REPO_ROOT}/data/x.json is odd"))
    assert bad.get_http_status_code() == 400 and str(REPO_ROOT) not in bad.message and "x.json" in bad.message


# ------------------------------------------------------------------------------------ a full disk while training


@pytest.mark.reliability
def test_a_full_disk_while_saving_a_checkpoint_leaves_none_to_resume(workspace: Path, tiny_bert_dir: Path) -> None:
    """The first checkpoint (weights 8 MB, optimizer state 16 MB) does not fit on a 20 MB disk: one line naming
    the checkpoint, and no partial checkpoint left that a re-run would resume from."""
    from tasks.train.checkpointing import is_complete_checkpoint

    with faultkit.tmpfs("20m") as disk:
        out = disk / "run"
        argv = [sys.executable, "-m", "flows.cli", "train", "--model_name_or_path", str(tiny_bert_dir),
                "--train_file", "dev.json", "--max_train_samples", "40", "--max_seq_length", "64", "--doc_stride",
                "16", "--per_device_train_batch_size", "4", "--backend", "cpu", "--max_steps", "4", "--save_steps",
                "2", "--output_dir", str(out)]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_ENDPOINT": "http://127.0.0.1:9"}
        done = subprocess.run(argv, cwd=workspace, env=env, capture_output=True, text=True, timeout=600)
        lines = [line for line in done.stderr.splitlines() if line.startswith("qaflow train")]
        assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
        assert "checkpoint-2: writing the checkpoint failed" in lines[0], lines[0]
        left = sorted((out / "checkpoints").glob("checkpoint-*"))
        assert all(is_complete_checkpoint(p) for p in left) and not (out / "model").exists(), left


# ------------------------------------------------------------------------------------ DVC: permanent vs transient


def test_only_transient_failures_are_retried() -> None:
    from flows.retry import is_transient
    from tasks.versioning import RemoteConfigError, RemoteUnreachableError, StageFailedError, VersioningError

    assert is_transient(RemoteUnreachableError("refused")) and is_transient(ConnectionResetError())
    for permanent in (VersioningError("cache lost"), StageFailedError("prepare", "failed", ""),
                      RemoteConfigError("no such remote"), PermissionError("denied")):  # fmt: skip
        assert not is_transient(permanent), permanent


@pytest.mark.slow
@pytest.mark.reliability
def test_a_lost_dvc_cache_and_remote_fail_once_in_one_line(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """Stage outputs in place but neither the cache nor the remote holds them: DVC refuses to re-run the stage
    (it would delete unsaved files). That does not change by waiting: no retry, no traceback, one line."""
    from tasks.pipeline.data_stages import run_data_stages
    from tests.integration.test_retrain_flow import env_for, make_repo, retrain_argv

    root = make_repo(tmp_path / "repo", tiny_bert_dir)
    run_data_stages(root, root / "params.yaml", None)
    shutil.rmtree(root / ".dvc" / "cache")
    shutil.rmtree(root / ".dvcstore")
    started = time.monotonic()
    done = subprocess.run(retrain_argv(root), env=env_for(root), capture_output=True, text=True, timeout=900)
    lines = [line for line in done.stderr.splitlines() if line.startswith("qaflow retrain")]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-4000:]
    assert "prepare" in lines[0], lines[0]
    assert "Retry 1/" not in done.stderr and "AwaitingRetry" not in done.stderr, "a permanent error was retried"
    assert time.monotonic() - started < 300
