"""SIGKILL in the middle of `qaflow predict`: the previous good outputs survive whole, and a clean re-run gives
exactly the result of an uninterrupted run (the raw logits are written beside and swapped in at the end)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.reliability

TRAIN = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"


def predict_argv(model: Path, out: Path, data: Path = TRAIN) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "predict", "--model_dir", str(model), "--data", str(data),
            "--output_dir", str(out), "--max_seq_length", "96", "--doc_stride", "32", "--backend", "cpu"]  # fmt: skip


def digests(directory: Path) -> dict[str, str]:
    files = (p for p in sorted(directory.rglob("*")) if p.is_file())
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_killed_predict_keeps_the_previous_outputs_and_reruns_identically(tiny_bert_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "pred"
    first = subprocess.run(predict_argv(tiny_bert_dir, out), env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    before = digests(out)
    assert any(name.startswith("raw_predictions/part-") for name in before)

    victim = subprocess.Popen(predict_argv(tiny_bert_dir, out), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("pred/.outputs.pid*.tmp/raw_predictions/part-00001.npz")):  # mid-way, shards staged
        assert victim.poll() is None and time.monotonic() < deadline, "predict ended before it could be killed"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    after_kill = {k: v for k, v in digests(out).items() if not k.startswith(".")}
    assert after_kill == before, "the killed run replaced or damaged the previous outputs"

    post = subprocess.run(
        [sys.executable, "-m", "flows.cli", "postprocess", "--raw", str(out / "raw_predictions"), "--data",
         str(TRAIN), "--output_dir", str(tmp_path / "post")], env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert post.returncode == 0, post.stderr[-3000:]
    assert (tmp_path / "post" / "predictions.json").read_bytes() == (out / "predictions.json").read_bytes()

    again = subprocess.run(predict_argv(tiny_bert_dir, out), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {k: v for k, v in digests(out).items() if not k.startswith(".")} == before
    assert not list(out.glob(".*")), "the re-run swept what the killed run left behind"


def visible(directory: Path) -> dict[str, str]:
    """Digests of what a reader sees (hidden staging and journal entries left out)."""
    return {k: v for k, v in digests(directory).items() if not any(p.startswith(".") for p in Path(k).parts)}


def small_squad(path: Path, articles: int = 2) -> Path:
    source = json.loads(TRAIN.read_text(encoding="utf-8"))
    path.write_text(json.dumps({"version": "1.1", "data": source["data"][:articles]}), encoding="utf-8")
    return path


def test_postprocess_killed_before_each_rename_leaves_the_old_or_the_new_answers(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """`qaflow postprocess` SIGKILLed before each file rename in turn (tests/killpoint.py): the reader (`score`)
    then sees the previous answer files or the new ones, whole; a clean re-run equals an uninterrupted one."""
    from tasks.core.scoring import score_files

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"}
    data = small_squad(tmp_path / "small.json")
    pred = tmp_path / "pred"
    done = subprocess.run(predict_argv(tiny_bert_dir, pred, data), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    def postprocess(out: Path, *extra: str, kill_at: int | None = None) -> subprocess.CompletedProcess:
        runner = [str(REPO_ROOT / "tests" / "killpoint.py"), str(kill_at)] if kill_at else ["-m"]
        argv = [sys.executable, *runner, "flows.cli", "postprocess", "--raw", str(pred / "raw_predictions"),
                "--data", str(data), "--output_dir", str(out), *extra]  # fmt: skip
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)

    new_settings = ("--n_best_size", "2", "--max_answer_length", "2")
    assert postprocess(tmp_path / "old").returncode == 0
    assert postprocess(tmp_path / "new", *new_settings).returncode == 0
    old, new = visible(tmp_path / "old"), visible(tmp_path / "new")
    assert old["predictions.json"] != new["predictions.json"], "the two settings must give different answers"

    seen = []
    for kill_at in range(1, 40):
        out = Path(shutil.copytree(tmp_path / "old", tmp_path / f"out{kill_at}"))
        run = postprocess(out, *new_settings, kill_at=kill_at)
        score_files(data, out / "predictions.json")  # a reader: finishes a set killed mid-swap first
        state = visible(out)
        assert state in (old, new), f"killed before rename {kill_at}: a mix of old and new files"
        assert not list(out.glob(".*")), f"killed before rename {kill_at}: staging or journal left behind"
        seen.append(state == new)
        if run.returncode == 0:
            break
        assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert seen[-1] and False in seen and True in seen[:-1], f"kills landed on both sides of the commit: {seen}"
    assert postprocess(out, *new_settings).returncode == 0 and visible(out) == new


# ------------------------------------------------------------------------------------ Ctrl-C


def _default_sigint() -> None:
    """Ctrl-C as on a terminal: a pytest-xdist worker ignores SIGINT, and a child inherits an ignored signal (Python
    then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interrupt_when(argv: list[str], env: dict[str, str], ready: Callable[[], bool], timeout: float = 600) -> tuple:
    """Start `argv` in its own process group, send the group SIGINT (Ctrl-C on a terminal) once `ready()`; returns
    (exit code, stderr, seconds from Ctrl-C to exit). Fails if the command ends before it could be interrupted."""
    victim = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              start_new_session=True, preexec_fn=_default_sigint)  # fmt: skip
    deadline = time.monotonic() + timeout
    while not ready():
        assert victim.poll() is None, f"ended before Ctrl-C: {victim.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "not ready for Ctrl-C in time"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGINT)
    interrupted = time.monotonic()
    _, err = victim.communicate(timeout=300)
    return victim.returncode, err, time.monotonic() - interrupted


def interrupted_once(code: int, err: str, command: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith(f"qaflow {command}")]
    assert code == 130 and len(lines) == 1 and "interrupted" in lines[0], err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]


def test_ctrl_c_during_predict_exits_130_and_keeps_the_previous_outputs(tiny_bert_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "pred"
    first = subprocess.run(predict_argv(tiny_bert_dir, out), env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    before = digests(out)
    staged = lambda: bool(list(out.glob(".outputs.pid*.tmp/raw_predictions/part-00001.npz")))  # noqa: E731
    code, err, _ = interrupt_when(predict_argv(tiny_bert_dir, out), env, staged)
    interrupted_once(code, err, "predict")
    assert digests(out) == before, "the interrupted run changed the previous outputs or left its staging behind"


def test_ctrl_c_during_training_exits_130_and_leaves_only_complete_checkpoints(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    from tasks.train.checkpointing import is_complete_checkpoint

    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "train"
    argv = [sys.executable, "-m", "flows.cli", "train", "--params", str(REPO_ROOT / "params.yaml"),
            "--model_name_or_path", str(tiny_bert_dir), "--train_file", str(TRAIN), "--max_train_samples", "120",
            "--max_seq_length", "96", "--doc_stride", "32", "--per_device_train_batch_size", "4", "--backend", "cpu",
            "--max_steps", "24", "--save_steps", "3", "--logging_steps", "1", "--output_dir", str(out)]  # fmt: skip
    code, err, _ = interrupt_when(argv, env, lambda: is_complete_checkpoint(out / "checkpoints" / "checkpoint-6"))
    interrupted_once(code, err, "train")
    saved = sorted((out / "checkpoints").glob("checkpoint-*"))
    assert saved and all(is_complete_checkpoint(p) for p in saved), saved
    assert not (out / "model").exists()
    resumed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr


@pytest.mark.slow
def test_ctrl_c_during_a_retrain_exits_130_kills_the_mlflow_run_and_frees_its_lock(
    tiny_bert_dir: Path, tmp_path: Path
) -> None:
    """Ctrl-C reaches the whole process group (Prefect's ephemeral API server included): the retrain ends at once
    with one line, its MLflow run is KILLED (the next retrain resumes it), and its run-key lock is free."""
    from filelock import FileLock

    from tests.integration.test_retrain_flow import env_for, make_repo, retrain_argv

    root = make_repo(tmp_path / "repo", tiny_bert_dir, max_steps=400, save_steps=4)
    training = lambda: bool(list(root.glob("outputs/runs/*/train/checkpoints/checkpoint-8")))  # noqa: E731
    code, err, seconds = interrupt_when(retrain_argv(root), env_for(root), training)
    interrupted_once(code, err, "retrain")
    assert seconds < 60, f"{seconds:.0f} s from Ctrl-C to exit"
    with contextlib.closing(sqlite3.connect(root / "mlruns" / "mlflow.db")) as db:
        statuses = [row[0] for row in db.execute("SELECT status FROM runs")]
    assert statuses == ["KILLED"], statuses
    for path in root.glob("outputs/locks/*.lock"):
        lock = FileLock(str(path))
        lock.acquire(timeout=0)  # raises Timeout if the interrupted retrain still held it
        lock.release()
