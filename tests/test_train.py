"""Training: CPU fine-tuning, resume after a real kill, two-process DDP (gloo), backend checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from tasks.core.artifacts import read_result
from tasks.core.config import load_config
from tasks.train.checkpointing import is_complete_checkpoint, last_complete_checkpoint
from tasks.train.hardware import BackendUnavailableError, resolve_backend
from tests.conftest import REPO_ROOT
from tests.family_helpers import TRAIN_METRIC_KEYS

SAMPLE = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"
DEV = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"
METRIC_KEYS = set(TRAIN_METRIC_KEYS)


def train_argv(model_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "flows.cli", "train",
        "--params", str(REPO_ROOT / "params.yaml"),
        "--model_name_or_path", str(model_dir),
        "--train_file", str(SAMPLE),
        "--max_train_samples", "120",
        "--max_seq_length", "96", "--doc_stride", "32",
        "--per_device_train_batch_size", "4",
        "--learning_rate", "1e-3",
        "--logging_steps", "1",
        "--backend", "cpu",
        "--output_dir", str(out),
        *extra,
    ]  # fmt: skip


def run_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"}


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(model_dir / "model.safetensors"))


def test_cpu_training_writes_model_and_throughput(tiny_bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        train_argv(tiny_bert_dir, out, "--max_steps", "6", "--save_steps", "3"),
        env=run_env(), capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = read_result(out / "train_record.json")
    assert result.model_dir == out  # run_qa.py's layout: the model at the output root
    assert set(result.metrics) >= METRIC_KEYS
    assert result.metrics["train_steps_per_second"] > 0
    assert result.device.backend == "cpu" and result.device.world_size == 1
    assert (result.model_dir / "model.safetensors").exists() and (result.model_dir / "tokenizer.json").exists()
    assert any("loss" in entry for entry in result.log_history)
    before, after = weights(tiny_bert_dir), weights(result.model_dir)
    assert any(not torch.equal(before[k], after[k]) for k in before), "training changed no weight"


def test_train_command_loads_each_split_and_resolves_the_model_once(
    tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`qaflow train --do_train --do_eval` with in-training evaluation: the train and eval splits are loaded once
    each (eval checked before training, then scored during and after training from the same examples); the model
    spec, family, backend and the checks of the train settings against them are resolved once."""
    import tasks.families.registry as registry
    import tasks.pipeline.prediction as prediction
    import tasks.pipeline.stages as stages
    import tasks.pipeline.train_eval as train_eval
    import tasks.pipeline.training as training
    import tasks.train.hardware as hardware
    from flows.cli import main
    from tasks.core.model_spec import ModelSpec

    calls: Counter[str] = Counter()

    def counted(name: str, fn: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls[name if name != "load_split" else f"load_split {args[1]}"] += 1
            return fn(*args, **kwargs)

        return call

    load_split, resolve = counted("load_split", stages.load_split), counted("resolve_family", registry.resolve_family)
    for module in (stages, training, prediction, train_eval):
        monkeypatch.setattr(module, "load_split", load_split)
    for module in (registry, training, prediction):
        monkeypatch.setattr(module, "resolve_family", resolve)
    monkeypatch.setattr(training, "check_training", counted("check_training", training.check_training))
    backend_for = counted("backend_for", hardware.backend_for)
    for module in (hardware, training):
        monkeypatch.setattr(module, "backend_for", backend_for)
    from_config = ModelSpec.from_config.__func__
    monkeypatch.setattr(ModelSpec, "from_config", classmethod(counted("ModelSpec.from_config", from_config)))
    steps = ("--max_steps", "2", "--max_train_samples", "16", "--do_train", "--do_eval", "--eval_strategy", "steps",
             "--eval_steps", "2")  # in-training evaluation reads the same eval split  # fmt: skip
    argv = train_argv(tiny_bert_dir, tmp_path / "run", *steps, "--validation_file", str(DEV), "--max_eval_samples", "8")
    argv = argv[3:]  # main() takes the words after `python -m flows.cli`
    assert main(argv) == 0
    assert dict(calls) == {"load_split train": 1, "load_split eval": 1, "ModelSpec.from_config": 1,
                           "resolve_family": 1, "backend_for": 1, "check_training": 1}  # fmt: skip
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert any("eval_f1" in entry for entry in state["log_history"])  # evaluated in training, on the same split
    assert (tmp_path / "run" / "eval_predictions.json").is_file()  # run_qa's layout: the eval answers at the root


def test_resume_after_kill_matches_uninterrupted_run(tiny_bert_dir: Path, tmp_path: Path) -> None:
    steps = ["--max_steps", "40", "--save_steps", "5", "--save_total_limit", "3"]
    full = tmp_path / "full"
    proc = subprocess.run(
        train_argv(tiny_bert_dir, full, *steps), env=run_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    killed = tmp_path / "killed"
    victim = subprocess.Popen(
        train_argv(tiny_bert_dir, killed, *steps),
        env=run_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    target = killed / "checkpoints" / "checkpoint-15"
    while not is_complete_checkpoint(target):
        assert victim.poll() is None, "training ended before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint-15 within 300 s"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    assert not (killed / "model.safetensors").exists() and not (killed / "train_results.json").exists()

    proc = subprocess.run(
        train_argv(tiny_bert_dir, killed, *steps), env=run_env(), capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = read_result(killed / "train_record.json")
    assert resumed.resumed_from is not None and int(resumed.resumed_from.rsplit("-", 1)[1]) >= 15
    reference = read_result(full / "train_record.json")
    final_loss = {e["step"]: e["loss"] for e in reference.log_history if "loss" in e}
    resumed_loss = {e["step"]: e["loss"] for e in resumed.log_history if "loss" in e}
    assert resumed_loss[40] == pytest.approx(final_loss[40], rel=1e-5)
    a, b = weights(full), weights(killed)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6, msg=name)

    scores = []
    for run in (full, killed):
        pred = subprocess.run(
            [sys.executable, "-m", "flows.cli", "predict", "--params", str(REPO_ROOT / "params.yaml"),
             "--model_dir", str(run), "--data", str(DEV), "--output_dir", str(run / "pred"),
             "--max_eval_samples", "40", "--max_seq_length", "96", "--doc_stride", "32", "--backend", "cpu"],
            env=run_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert pred.returncode == 0, pred.stderr[-3000:]
        scores.append(json.loads((run / "pred" / "metrics.json").read_text()))
    assert scores[0] == scores[1]


def test_two_process_ddp_on_cpu(tiny_bert_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    proc = subprocess.run(
        train_argv(tiny_bert_dir, out, "--max_steps", "4", "--save_steps", "2", "--nproc_per_node", "2", "--json"),
        env=run_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = read_result(out / "train_record.json")
    assert result.device.world_size == 2
    assert set(result.metrics) >= METRIC_KEYS
    assert (out / "model.safetensors").exists() and (out / "trainer_state.json").exists()
    lines = proc.stdout.splitlines()  # Trainer's progress logs come first; the CLI's JSON summary is last
    printed = json.loads("\n".join(lines[max(i for i, line in enumerate(lines) if line == "{") :]))
    assert printed["model_dir"] == str(out) and printed["train_steps_per_second"] > 0


def test_incomplete_checkpoint_is_deleted(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    for step, state in ((4, '{"global_step": 4}'), (8, '{"global_step": 8}'), (12, '{"global_st')):
        saved = ckpts / f"checkpoint-{step}"
        saved.mkdir(parents=True)
        save_file({"w": torch.zeros(2)}, saved / "model.safetensors")
        for name in ("optimizer.pt", "scheduler.pt"):
            (saved / name).write_text("x")
        (saved / "trainer_state.json").write_text(state)  # 12: the disk filled while writing it
    (ckpts / "checkpoint-8" / "optimizer.pt").unlink()  # killed before the optimizer state was written
    (ckpts / "incomplete-checkpoint-2-1700000000").mkdir()  # set aside by an earlier version, never cleaned
    assert last_complete_checkpoint(ckpts) == ckpts / "checkpoint-4"
    assert sorted(p.name for p in ckpts.iterdir()) == ["checkpoint-4"]  # nothing left to pile up


def test_backend_detection_errors_are_actionable() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendUnavailableError, match="no CUDA device"):
        resolve_backend("cuda")
    assert resolve_backend("auto", load_config(None, {"ipu_python": "/nonexistent/python"})).name == "cpu"
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        resolve_backend("tpu")


def test_config_overrides_follow_run_qa_names() -> None:
    cfg = load_config(REPO_ROOT / "params.yaml", {"per_device_train_batch_size": "16", "doc_stride": "64"})
    assert cfg.train.per_device_train_batch_size == 16 and cfg.features.doc_stride == 64
