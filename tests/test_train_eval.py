"""In-training evaluation (`train.evaluation`, `pipeline.train_eval`): official scores in the Trainer's log history,
the best checkpoint as transformers picks it, early stopping, every family, and two DDP ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from flows.cli import main
from tasks.core.config import load_config
from tasks.pipeline.prediction import predict_from_config
from tasks.train.evaluation import predicting_precision
from tests.conftest import REPO_ROOT
from tests.tiny_models import SAMPLE_DEV_V1, SAMPLE_DEV_V2, SAMPLE_TRAIN, cached_model_dir


def train_argv(model: Path, out: Path, *extra: str, train: Path = SAMPLE_TRAIN, dev: Path = SAMPLE_DEV_V1) -> list[str]:
    return [
        "train", "--model_name_or_path", str(model),
        "--train_file", str(train), "--validation_file", str(dev), "--max_train_samples", "60",
        "--max_eval_samples", "20", "--max_seq_length", "96", "--doc_stride", "32",
        "--per_device_train_batch_size", "8", "--learning_rate", "1e-3", "--backend", "cpu", "--logging_steps", "1",
        "--output_dir", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No params.yaml here: the built-in defaults plus the flags."""
    monkeypatch.chdir(tmp_path)


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    return captured.out


def state(out: Path) -> dict:
    return json.loads((out / "trainer_state.json").read_text(encoding="utf-8"))


def evaluations(out: Path) -> dict[int, dict]:
    """The in-training evaluations of the log history, by global step."""
    return {e["step"]: e for e in state(out)["log_history"] if any(k.startswith("eval_") for k in e)}


def test_evaluation_scores_as_qaflow_predict_and_the_best_checkpoint_is_the_final_model(
    capsys, tmp_path: Path, tiny_bert_dir: Path
) -> None:
    out = tmp_path / "run"
    printed = run(capsys, train_argv(
        tiny_bert_dir, out, "--max_steps", "9", "--save_steps", "3", "--eval_strategy", "steps", "--eval_steps", "3",
        "--load_best_model_at_end", "--metric_for_best_model", "eval_f1", "--greater_is_better", "false",
        "--bf16",  # mixed-precision training; evaluation still predicts as `qaflow predict` does (float32 on a CPU)
    ))  # fmt: skip
    evals = evaluations(out)
    assert sorted(evals) == [3, 6, 9]
    for entry in evals.values():
        assert {"eval_exact_match", "eval_f1", "eval_runtime", "eval_samples_per_second", "epoch"} <= set(entry)
    # the Trainer's own choice, as in run_qa: the lowest eval_f1 (greater_is_better false), the earliest on ties
    trainer_state = state(out)
    best_step = min(evals, key=lambda step: (evals[step]["eval_f1"], step))
    assert best_step != 9, "with this seed an earlier checkpoint is the best (else the test would prove less)"
    assert trainer_state["best_metric"] == evals[best_step]["eval_f1"]
    assert trainer_state["best_model_checkpoint"] == str(out / "checkpoints" / f"checkpoint-{best_step}")
    final, best = load_file(out / "model.safetensors"), load_file(out / "checkpoints" / f"checkpoint-{best_step}" /
                                                                   "model.safetensors")  # fmt: skip
    assert all(torch.equal(final[k], best[k]) for k in best), "load_best_model_at_end: the final model is the best"

    # each evaluation is `qaflow predict` on the model of that step: the same code, the same official scores
    cfg = load_config(None, {"validation_file": str(SAMPLE_DEV_V1), "max_eval_samples": 20, "max_seq_length": 96,
                             "doc_stride": 32, "backend": "cpu"})  # fmt: skip
    for step in {best_step, 9}:
        checkpoint = out / "checkpoints" / f"checkpoint-{step}"
        scored = predict_from_config(
            cfg, model_dir=checkpoint, data=None, output_dir=tmp_path / f"p{step}", split="eval"
        )
        assert scored.metrics == {"exact_match": evals[step]["eval_exact_match"], "f1": evals[step]["eval_f1"]}

    # --eval_strategy implies --do_eval: the final (best) model scored into run_qa's eval_results.json
    results = json.loads((out / "eval_results.json").read_text())
    assert results["eval_f1"] == evals[best_step]["eval_f1"] and results["epoch"] == trainer_state["epoch"]
    assert (out / "eval_predictions.json").is_file() and (out / "eval_nbest_predictions.json").is_file()
    assert "***** train metrics *****" in printed and "***** eval metrics *****" in printed


def test_evaluation_predicts_in_qaflow_predicts_precision_under_mixed_precision(tiny_bert_dir: Path) -> None:
    """bf16 training: accelerate wraps the model's forward in autocast; an evaluation lifts the wrap (float32 on a
    CPU, as `qaflow predict` runs), so its scores are those of the saved checkpoint (MiniLM: F1 10.73 under the
    wrap vs 11.18 for the same weights in `qaflow predict`)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(str(tiny_bert_dir)).eval()
    inputs = {"input_ids": torch.randint(1000, 2000, (2, 32), generator=torch.Generator().manual_seed(0))}
    with torch.no_grad():
        plain = model(**inputs).start_logits
        try:
            Accelerator(mixed_precision="bf16", cpu=True).prepare_model(model)
            assert not torch.equal(model(**inputs).start_logits, plain), "training's forward runs in bf16"
            with predicting_precision(model):
                assert torch.equal(model(**inputs).start_logits, plain)
            assert not torch.equal(model(**inputs).start_logits, plain), "training goes on in bf16"
        finally:
            AcceleratorState._reset_state(reset_partial_state=True)
    with predicting_precision(model := AutoModelForQuestionAnswering.from_pretrained(str(tiny_bert_dir))):
        assert "forward" not in model.__dict__  # a model no one wrapped is left alone


def test_early_stopping_stops_after_the_patience(capsys, tmp_path: Path, tiny_bert_dir: Path) -> None:
    out = tmp_path / "run"
    run(capsys, train_argv(
        tiny_bert_dir, out, "--max_steps", "12", "--save_steps", "50", "--eval_strategy", "steps", "--eval_steps",
        "2", "--early_stopping_patience", "1", "--early_stopping_threshold", "1000", "--json",
    ))  # fmt: skip
    # no evaluation can improve by 1000 points: the second one exhausts a patience of 1 and training stops there
    assert sorted(evaluations(out)) == [2, 4] and state(out)["global_step"] == 4
    summary = json.loads((out / "train_results.json").read_text())
    assert summary["epoch"] < 12 * 8 / summary["train_samples"]


@pytest.mark.parametrize(
    ("family", "kind", "data", "metric"),
    [("beam", "xlnet", SAMPLE_DEV_V2, "HasAns_f1"), ("seq2seq", "t5", SAMPLE_DEV_V1, "exact_match")],
)
def test_every_family_evaluates_during_training(
    capsys, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, family: str, kind: str, data: Path, metric: str
) -> None:
    model = cached_model_dir(kind, tmp_path_factory.getbasetemp())
    out = tmp_path / "run"
    run(capsys, train_argv(
        model, out, "--model_family", family, "--max_steps", "4", "--save_steps", "2", "--eval_strategy", "steps",
        "--eval_steps", "2", "--load_best_model_at_end", "--metric_for_best_model", metric, "--max_train_samples",
        "24", "--max_eval_samples", "12", train=data, dev=data,
    ))  # fmt: skip
    evals = evaluations(out)
    assert sorted(evals) == [2, 4] and all(f"eval_{metric}" in e for e in evals.values())
    assert state(out)["best_metric"] == max(e[f"eval_{metric}"] for e in evals.values())
    results = json.loads((out / "eval_results.json").read_text())
    assert f"eval_{metric}" in results and results["eval_samples"] >= 12
    assert (out / "eval_null_odds.json").is_file() == (data == SAMPLE_DEV_V2)


def test_best_metric_must_be_a_score_of_the_eval_data(capsys, tmp_path: Path, tiny_bert_dir: Path) -> None:
    argv = train_argv(tiny_bert_dir, tmp_path / "run", "--eval_strategy", "steps", "--metric_for_best_model",
                      "HasAns_f1", "--max_steps", "2")  # fmt: skip
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("qaflow")]
    assert err == ["qaflow train: error: train.metric_for_best_model: 'HasAns_f1' is not an official SQuAD v1.1 "
                   "score (one of exact_match, f1)"]  # fmt: skip
    assert not (tmp_path / "run").exists(), "checked before any work"


SHARED_FILES = ("eval_predictions.json", "eval_nbest_predictions.json", "predict_predictions.json",
                "predict_nbest_predictions.json", "predict_null_odds.json")  # fmt: skip


def run_cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", *argv], capture_output=True, text=True, timeout=600, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def rank_shares(stderr: str) -> list[dict[int, int]]:
    """Per shared prediction, in order: the features each rank ran the model on (the workers' log lines); the
    total as rank 0 counted it under key -1."""
    shares: list[dict[int, int]] = []
    seen = {0: 0, 1: 0}
    for line in stderr.splitlines():
        if "the model ran" not in line:
            continue
        rank = int(line.split("prediction rank ")[1].split("/")[0])
        if seen[rank] == len(shares):
            shares.append({})
        shares[seen[rank]][rank] = int(line.split("the model ran ")[1].split()[0])
        if rank == 0:
            shares[seen[rank]][-1] = int(line.split(" of ")[1].split()[0])
        seen[rank] += 1
    return shares


def test_two_ddp_ranks_share_each_evaluation_and_write_the_files_of_one_process(
    capsys, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "ddp"
    predict_flags = ("--test_file", str(SAMPLE_DEV_V2), "--max_predict_samples", "20", "--per_device_eval_batch_size",
                     "4")  # fmt: skip
    argv = train_argv(tiny_bert_dir, out, "--max_steps", "4", "--save_steps", "2", "--eval_strategy", "steps",
                      "--eval_steps", "2", "--load_best_model_at_end", "--nproc_per_node", "2", "--do_train",
                      "--do_predict", *predict_flags)  # fmt: skip
    proc = run_cli(argv, tmp_path)
    evals = evaluations(out)
    assert sorted(evals) == [2, 4], "each evaluation logged once (rank 0's state), none lost"
    assert state(out)["best_model_checkpoint"] is not None
    assert json.loads((out / "train_record.json").read_text())["device"]["world_size"] == 2
    assert "***** eval metrics *****" in proc.stdout and "***** predict metrics *****" in proc.stdout

    # every prediction (the evaluations at steps 2 and 4, --do_eval, --do_predict) shared: each rank ran some
    # windows, together each window once
    shares = rank_shares(proc.stderr)
    assert len(shares) == 4, proc.stderr[-3000:]
    assert all(s[0] > 0 and s[1] > 0 and s[0] + s[1] == s[-1] for s in shares), shares
    assert shares[2][-1] == json.loads((out / "eval_results.json").read_text())["eval_samples"]

    # the shared in-training evaluations score as one process predicting each checkpoint
    cfg = load_config(None, {"validation_file": str(SAMPLE_DEV_V1), "max_eval_samples": 20, "max_seq_length": 96,
                             "doc_stride": 32, "backend": "cpu", "per_device_eval_batch_size": 4})  # fmt: skip
    for step in (2, 4):
        checkpoint = out / "checkpoints" / f"checkpoint-{step}"
        scored = predict_from_config(cfg, model_dir=checkpoint, data=None, output_dir=tmp_path / f"p{step}",
                                     split="eval")  # fmt: skip
        assert scored.metrics == {"exact_match": evals[step]["eval_exact_match"], "f1": evals[step]["eval_f1"]}

    # --do_eval / --do_predict: byte for byte the files of one process predicting the saved model, and the same
    # again when the workers predict without training (`qaflow train --do_eval --do_predict --nproc_per_node 2`)
    alone, shared = tmp_path / "alone", tmp_path / "shared"
    steps_only = ("--model_name_or_path", str(out), "--do_eval", "--do_predict", *predict_flags)
    run(capsys, train_argv(tiny_bert_dir, alone, *steps_only))
    proc = run_cli(train_argv(tiny_bert_dir, shared, *steps_only, "--nproc_per_node", "2"), tmp_path)
    assert len(rank_shares(proc.stderr)) == 2 and not (shared / "model.safetensors").exists()
    for name in SHARED_FILES:
        expected = (alone / name).read_bytes()
        assert (out / name).read_bytes() == expected, name
        assert (shared / name).read_bytes() == expected, name
    for split in ("eval", "predict"):
        ours, theirs = (json.loads((d / f"{split}_results.json").read_text()) for d in (shared, alone))
        assert {k: v for k, v in ours.items() if "runtime" not in k and "per_second" not in k} == {
            k: v for k, v in theirs.items() if "runtime" not in k and "per_second" not in k
        }
