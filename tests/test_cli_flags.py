"""Typed run_qa.py-compatible flags (flows/cli_flags.py): every flag reaches the config or the Trainer, run_qa's
steps and data flags keep run_qa's meaning, and the HF README's BERT command runs (local paths, a few steps)."""

from __future__ import annotations

import copy
import json
import time
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from flows.cli import build_parser, main
from flows.cli_flags import RunSteps, run_steps
from flows.commands.common import config_from_args
from tasks.core.config import HELP, SECTIONS, QAFlowConfig, TrainConfig
from tasks.train.backends.cpu import CPUBackend
from tasks.train.backends.cuda import CUDABackend
from tests.conftest import REPO_ROOT

DEV = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"

# A value different from the built-in default, per type, for the walk below.
SAMPLE = {int: "7", float: "0.25", str: "cpu"}
SPECIAL = {  # fields whose values are constrained: a valid non-default value
    "backend": "cpu", "bad_record_policy": "skip", "question_policy": "truncate", "save_strategy": "epoch",
    "eval_strategy": "steps", "torch_compile_mode": "max-autotune", "report_to": "mlflow", "model_family": "beam",
    "layers_per_ipu": ["1", "2"], "split_eval_fraction": "0.25", "warmup_ratio": "0.25", "max_seq_length": "200",
    "doc_stride": "50", "metric": "exact_match", "direction": "minimize", "pruner": "none",
    "window_choices": ["[[64, 16]]"], "learning_rate_range": ["1e-5", "2e-5"], "batch_size_choices": ["4"],
    "epochs_range": ["2", "4"], "warmup_ratio_range": ["0.1", "0.3"],
    "group_by_length": ["true", "--pad_to_max_length", "false"],  # grouping needs dynamic padding
    # in-training evaluation settings need an eval_strategy (and one another): the words after the value
    "eval_steps": ["5", "--eval_strategy", "steps"],
    "load_best_model_at_end": ["true", "--eval_strategy", "steps"],
    "metric_for_best_model": ["exact_match", "--eval_strategy", "steps"],
    "greater_is_better": ["false", "--eval_strategy", "steps", "--metric_for_best_model", "f1"],
    "early_stopping_patience": ["3", "--eval_strategy", "steps"],
    "early_stopping_threshold": ["0.5", "--eval_strategy", "steps", "--early_stopping_patience", "2"],
}  # fmt: skip


def _flag_value(name: str, default: Any, annotation: Any = None) -> list[str] | None:
    """Command-line words that set field `name` to a valid value other than its default (None: none exists)."""
    if name in SPECIAL:
        value = SPECIAL[name]
        return None if value is None else (value if isinstance(value, list) else [value])
    if isinstance(default, bool):
        return [] if not default else ["false"]  # bare `--flag` means true
    kinds = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation or type(default)]
    return [] if kinds[0] is bool else [SAMPLE.get(kinds[0], "x-value")]


def _annotation(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def test_every_config_field_is_a_typed_flag_with_help_that_reaches_the_config(tmp_path: Path) -> None:
    parsers = {command: build_parser(command) for command in ("train", "tune")}
    defaults = QAFlowConfig()
    walked = 0
    for section, cls in SECTIONS.items():
        command = "tune" if section == "tune" else "train"
        parser = parsers[command]
        if section == "evaluation":  # suites are declared in params.yaml; `--suite` belongs to evaluate/promote
            assert all(HELP.get(f.name) for f in fields(cls))
            continue
        for f in fields(cls):
            assert HELP.get(f.name), f"{section}.{f.name} has no help text"
            default = getattr(getattr(defaults, section), f.name)
            value = _flag_value(f.name, default, _annotation(cls, f.name))
            if value is None:  # a single allowed value: nothing to change
                continue
            args = parser.parse_args([command, f"--{f.name}", *value, "--params", str(tmp_path / "none.yaml")])
            got = getattr(getattr(config_from_args(args), section), f.name)
            assert got != default, f"--{f.name} {value} did not reach {section}.{f.name}"
            walked += 1
    assert walked >= 55


# Train fields that act outside TrainingArguments, each covered by its own test.
NOT_TRAINER_ARGS = {
    "backend": "tasks.train.hardware picks the device (use_cpu follows it)",
    "output_dir": "the run's directory (TrainPaths); the Trainer gets its checkpoints/ subdirectory",
    "early_stopping_patience": "transformers' EarlyStoppingCallback (test_train_eval.py)",
    "early_stopping_threshold": "transformers' EarlyStoppingCallback (test_train_eval.py)",
    "torch_compile_dynamic": "configure_compile (torch._dynamo settings) and dataloader_drop_last",
    "resume_from_checkpoint": "run_trainer's trainer.train(resume_from_checkpoint=...)",
    "overwrite_output_dir": "run_trainer deletes the checkpoints instead of resuming",
    "group_by_length": "run_trainer's length-grouped sampler (test_train_sampling.py)",
    "pad_to_multiple_of": "the family collator's batch width (test_train_sampling.py)",
    "device_concurrency_limit": "flows.device_slot around training (integration/test_prefect_postgres.py)",
    "compile_cache": "run_trainer restores and stores Inductor's caches (test_compile_cache.py)",
}


@pytest.mark.parametrize("name", [f.name for f in fields(TrainConfig)])
def test_every_train_flag_reaches_the_trainer_arguments(tmp_path: Path, name: str) -> None:
    from tasks.train.trainer import training_arguments

    if name in NOT_TRAINER_ARGS:
        pytest.skip(f"not a TrainingArguments field: {NOT_TRAINER_ARGS[name]}")
    value = _flag_value(name, getattr(TrainConfig(), name), _annotation(TrainConfig, name))
    companions = value[1:] if name in SPECIAL and isinstance(SPECIAL[name], list) else []  # flags it needs
    params = ["--params", str(tmp_path / "none.yaml")]
    base = config_from_args(build_parser("train").parse_args(["train", *companions, *params])).train
    changed = copy.deepcopy(base)
    parsed = config_from_args(build_parser("train").parse_args(["train", f"--{name}", *value, *params]))
    setattr(changed, name, getattr(parsed.train, name))
    if name == "fp16":
        changed.bf16 = False
    before = training_arguments(base, CPUBackend(), tmp_path).to_dict()
    after = training_arguments(changed, CUDABackend() if name == "fp16" else CPUBackend(), tmp_path).to_dict()
    assert before != after, f"--{name} changes nothing the Trainer sees"


def test_booleans_work_bare_and_with_a_value(tmp_path: Path) -> None:
    parser = build_parser("train")
    params = ["--params", str(tmp_path / "none.yaml")]
    assert config_from_args(parser.parse_args(["train", "--bf16", *params])).train.bf16 is True
    assert config_from_args(parser.parse_args(["train", "--bf16", "false", *params])).train.bf16 is False
    assert config_from_args(parser.parse_args(["train", "--bf16", "true", *params])).train.bf16 is True
    assert (
        config_from_args(parser.parse_args(["train", "--no_pad_to_max_length", *params])).features.pad_to_max_length
        is False
    )
    post = config_from_args(parser.parse_args(["train", "--version_2_with_negative", *params])).postprocess
    assert post.version_2_with_negative is True
    assert run_steps(parser.parse_args(["train", *params])) == RunSteps(do_train=True)
    assert run_steps(parser.parse_args(["train", "--do_eval", *params])) == RunSteps(do_eval=True)
    assert run_steps(parser.parse_args(["train", "--do_train", "--do_predict", *params])) == RunSteps(True, False, True)


def test_help_shows_types_choices_and_defaults(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--learning_rate FLOAT" in text and "peak AdamW learning rate (default: 3e-05)" in text
    assert "--backend STR" in text and "auto (the best present: cuda > ipu > cpu)" in text  # the seam parses it
    assert "--bf16 [{true,false}]" in text
    assert "--do_train" in text and "--dataset_name" in text and "--report_to {mlflow,none}" in text


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["train", "--backend", "tpu"], "train.backend: unknown backend 'tpu'; choose one of auto, cpu, cuda, ipu"),
        (["train", "--report_to", "wandb"], "argument --report_to/--report-to: invalid choice: 'wandb'"),
        (["train", "--learning_rate", "fast"], "invalid float value: 'fast'"),
        (["train", "--bogus_flag", "1"], "unrecognized arguments: --bogus_flag 1"),
        (["train", "--do_train", "false"], "nothing to do"),
        (["train", "--resume_from_checkpoint", "nowhere"], "train.resume_from_checkpoint: nowhere: not a Trainer"),
        (["train", "--do_predict", "--do_train", "false"], "data.test_file: --do_predict needs a test_file"),
        (["train", "--load_best_model_at_end"], "train.load_best_model_at_end: needs in-training evaluation"),
        (["train", "--eval_steps", "5"], "train.eval_steps: needs eval_strategy steps (it is 'no')"),
        (
            ["train", "--eval_strategy", "steps", "--load_best_model_at_end", "--save_strategy", "epoch"],
            "train.load_best_model_at_end: needs save_strategy ('epoch') == eval_strategy ('steps')",
        ),
        (
            [
                "train",
                "--eval_strategy",
                "steps",
                "--eval_steps",
                "20",
                "--save_steps",
                "50",
                "--load_best_model_at_end",
            ],
            "train.load_best_model_at_end: save_steps (50) must be a multiple of eval_steps (20)",
        ),
        (
            ["train", "--eval_strategy", "epoch", "--metric_for_best_model", "loss"],
            "train.metric_for_best_model: 'loss'",
        ),
        (["train", "--eval_strategy", "steps", "--backend", "ipu"], "the IPU backend cannot evaluate during training"),
        (["train", "--eval_strategy", "steps", "--greater_is_better", "false"], "train.greater_is_better: needs"),
        (["train", "--early_stopping_patience", "2"], "train.early_stopping_patience: needs in-training evaluation"),
        (["train", "--hub_token", "hf_secret"], "--hub_token: not accepted"),
        (["train", "--hub_model_id", "me/qa"], "--hub_model_id: needs --push_to_hub"),
        (["train", "--push_to_hub"], "--push_to_hub needs --hub_model_id user/name"),
        (["train", "--push_to_hub", "--hub_model_id", "no-namespace"], "repo id must look like 'user/name'"),
    ],
)
def test_what_cannot_be_honoured_exits_2_with_one_line(capsys, tmp_path: Path, monkeypatch, argv, expect) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("qaflow")]
    assert len(err) == 1 and expect in err[0], err


def _squad_records(articles: int) -> list[dict]:
    data = json.loads(DEV.read_text(encoding="utf-8"))["data"][:articles]

    def answers(qa: dict) -> dict:
        return {"text": [x["text"] for x in qa["answers"]], "answer_start": [x["answer_start"] for x in qa["answers"]]}

    return [
        {"id": qa["id"], "title": a["title"], "context": p["context"], "question": qa["question"],
         "answers": answers(qa)}
        for a in data for p in a["paragraphs"] for qa in p["qas"]
    ]  # fmt: skip


@pytest.fixture(scope="module")
def squad_on_disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SQuAD in the Hugging Face `datasets` save_to_disk layout (train / validation / test splits)."""
    import datasets

    rows = _squad_records(2)
    unlabeled = [{k: v for k, v in row.items() if k != "answers"} for row in rows[:6]]
    splits = datasets.DatasetDict(
        train=datasets.Dataset.from_list(rows[:40]),
        validation=datasets.Dataset.from_list(rows[40:60]),
        test=datasets.Dataset.from_list(unlabeled),
    )
    target = tmp_path_factory.mktemp("hf") / "squad-tiny"
    splits.save_to_disk(str(target))
    return target


def test_the_hf_readme_bert_command_runs_with_local_paths(
    capsys, tmp_path: Path, monkeypatch, tiny_bert_dir: Path, squad_on_disk: Path
) -> None:
    """HF's question-answering README command, paths swapped for local ones, plus a few-step budget for CPU."""
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "debug_squad"
    readme = [
        "train", "--model_name_or_path", str(tiny_bert_dir), "--dataset_name", str(squad_on_disk), "--do_train",
        "--do_eval", "--per_device_train_batch_size", "12", "--learning_rate", "3e-5", "--num_train_epochs", "2",
        "--max_seq_length", "384", "--doc_stride", "128", "--output_dir", f"{out}/",
    ]  # fmt: skip
    argv = [*readme, "--max_steps", "3", "--backend", "cpu", "--do_predict", "--json"]
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    lines = capsys.readouterr().out.splitlines()  # the Trainer prints its logs above qaflow's JSON summary
    result = json.loads("\n".join(lines[max(i for i, line in enumerate(lines) if line == "{") :]))
    assert result["train_examples"] == 40 and result["epoch"] > 0 and result["train_loss"] > 0
    assert {"eval_exact_match", "eval_f1"} <= set(result) and result["eval_examples"] == 20
    assert result["eval_samples"] >= 20  # run_qa counts windows
    assert result["predict_examples"] == 6 and not any(k.startswith(("test_f1", "predict_f1")) for k in result)
    assert (out / "eval_results.json").exists() and (out / "predict_predictions.json").exists()
    assert "test_f1" not in json.loads((out / "predict_results.json").read_text()), "unlabeled: predictions, no score"
    assert len(json.loads((out / "predict_predictions.json").read_text())) == 6


def test_an_unreachable_hub_dataset_fails_fast_in_one_line(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a closed port: the hub is unreachable at once
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "empty-cache"))
    t0 = time.monotonic()
    assert main(["train", "--dataset_name", "squad", "--output_dir", "out"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("qaflow")]
    assert len(err) == 1 and err[0].startswith("qaflow train: error: squad: not a local directory"), err
    assert "unreachable" in err[0] and time.monotonic() - t0 < 30
    assert not (tmp_path / "out").exists()


def test_dataset_split_limits_follow_run_qa(tmp_path: Path, squad_on_disk: Path) -> None:
    from tasks.core.config import load_config
    from tasks.pipeline.stages import load_split

    cfg = load_config(None, {"dataset_name": str(squad_on_disk), "max_train_samples": 5, "max_eval_samples": 4,
                             "max_predict_samples": 3})  # fmt: skip
    sizes = {split: len(load_split(cfg, split)) for split in ("train", "eval", "test")}
    assert sizes == {"train": 5, "eval": 4, "test": 3}
    assert load_split(cfg, "test").labeled is False and load_split(cfg, "eval").labeled is True


def _train(capsys, tiny: Path, data: Path, out: Path, *extra: str) -> dict:
    argv = ["train", "--model_name_or_path", str(tiny), "--dataset_name", str(data), "--output_dir", str(out),
            "--max_seq_length", "96", "--doc_stride", "32", "--per_device_train_batch_size", "8", "--backend", "cpu",
            "--save_steps", "2", "--logging_steps", "1", "--max_train_samples", "24", *extra]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    capsys.readouterr()
    return json.loads((out / "train_record.json").read_text(encoding="utf-8"))


def test_resume_and_overwrite_output_dir_follow_run_qa(
    capsys, tmp_path: Path, monkeypatch, tiny_bert_dir: Path, squad_on_disk: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    first = _train(capsys, tiny_bert_dir, squad_on_disk, out, "--max_steps", "2")
    assert first["resumed_from"] is None and (out / "checkpoints" / "checkpoint-2").is_dir()
    resumed = _train(capsys, tiny_bert_dir, squad_on_disk, out, "--max_steps", "3")
    assert resumed["resumed_from"].endswith("checkpoint-2")  # the last complete checkpoint, as run_qa.py does
    fresh = _train(capsys, tiny_bert_dir, squad_on_disk, out, "--max_steps", "3", "--overwrite_output_dir")
    assert fresh["resumed_from"] is None
    chosen = out / "checkpoints" / "checkpoint-2"
    explicit = _train(capsys, tiny_bert_dir, squad_on_disk, tmp_path / "other", "--max_steps", "3",
                      "--resume_from_checkpoint", str(chosen))  # fmt: skip
    assert explicit["resumed_from"] == str(chosen)


def test_report_to_mlflow_uses_the_trainers_callback(
    capsys, tmp_path: Path, monkeypatch, tiny_bert_dir: Path, squad_on_disk: Path
) -> None:
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    try:
        _train(capsys, tiny_bert_dir, squad_on_disk, tmp_path / "out", "--max_steps", "2", "--report_to", "mlflow",
               "--tracking_uri", uri, "--experiment_name", "run-qa-style")  # fmt: skip
        client = mlflow.MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("run-qa-style").experiment_id])
        assert len(runs) == 1 and "loss" in runs[0].data.metrics
        assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "loss")] == [1, 2]
    finally:
        mlflow.set_tracking_uri(None)
