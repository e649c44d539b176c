"""`qaflow train`'s output directory and console are run_qa.py's (`TrainPaths`, `pipeline.results`), and
`--push_to_hub` uploads it (`pipeline.hub`): a dry run, and an unreachable hub after the outputs are written."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from flows.cli import main
from tasks.core.layout import TrainPaths
from tasks.pipeline.results import metrics_block, save_metrics
from tests.servers import free_port
from tests.tiny_models import SAMPLE_DEV_V1, SAMPLE_DEV_V2, SAMPLE_TRAIN

TOKEN = "hf_qaflowTESTtoken0train7e"  # a made-up token: it must appear nowhere qaflow writes

# What run_qa.py writes into --output_dir for `--do_train --do_eval --do_predict` (transformers
# examples/pytorch/question-answering/run_qa.py with trainer_qa.py and utils_qa.py):
#   trainer.save_model()                   -> the model, its tokenizer (processing_class) and training_args.bin
#   trainer.log_metrics / save_metrics     -> {split}_results.json, merged into all_results.json (combined=True)
#   trainer.save_state()                   -> trainer_state.json
#   post-processing, prefix "eval"/"predict" -> {prefix}_predictions.json, {prefix}_nbest_predictions.json
#                                             (+ {prefix}_null_odds.json with --version_2_with_negative)
#   trainer.create_model_card()            -> README.md;  the Trainer's checkpoints -> checkpoint-N/
# trainer.evaluate() prefixes metrics "eval_" and logs the state's epoch; trainer.predict() prefixes them "test_"
# (its default metric_key_prefix); main() adds {split}_samples (windows: len of the featurized split).
RUN_QA_FILES = {
    "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "training_args.bin",
    "trainer_state.json", "all_results.json", "train_results.json", "eval_results.json", "predict_results.json",
    "eval_predictions.json", "eval_nbest_predictions.json", "predict_predictions.json",
    "predict_nbest_predictions.json", "README.md",
}  # fmt: skip
RUN_QA_V2_FILES = {"eval_null_odds.json", "predict_null_odds.json"}
RUN_QA_KEYS = {
    "train": {"epoch", "total_flos", "train_loss", "train_runtime", "train_samples", "train_samples_per_second",
              "train_steps_per_second"},
    "eval": {"epoch", "eval_exact_match", "eval_f1", "eval_runtime", "eval_samples", "eval_samples_per_second",
             "eval_steps_per_second"},
    "predict": {"predict_samples", "test_exact_match", "test_f1", "test_runtime", "test_samples_per_second",
                "test_steps_per_second"},
}  # fmt: skip
V2_SCORES = ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "HasAns_total", "NoAns_exact", "NoAns_f1",
             "NoAns_total", "best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh")  # fmt: skip
RUN_QA_V2_KEYS = {
    "train": RUN_QA_KEYS["train"],
    "eval": {"epoch", "eval_runtime", "eval_samples", "eval_samples_per_second", "eval_steps_per_second",
             *(f"eval_{k}" for k in V2_SCORES)},
    "predict": {"predict_samples", "test_runtime", "test_samples_per_second", "test_steps_per_second",
                *(f"test_{k}" for k in V2_SCORES)},
}  # fmt: skip
# where qaflow differs, on purpose
NOT_WRITTEN = {"README.md": "the model card is written with --push_to_hub (it is the hub's card)"}
QAFLOW_FILES = {  # qaflow's extras beside run_qa's files
    "inference_recipe.json", "train_record.json", "train_features.npz", "eval_slices.json", "eval_slices.png",
    "predict_slices.json", "predict_slices.png",
}  # fmt: skip
QAFLOW_DIRS = {"checkpoints", "eval_raw_predictions", "predict_raw_predictions"}  # run_qa: checkpoint-N at the root
QAFLOW_KEYS = {
    "train": {"train_examples", "train_features", "train_tokens_per_second", "train_padded_tokens_per_second",
              "first_step_seconds", "steady_train_steps_per_second", "median_step_seconds", "peak_memory_mb",
              "model_parameters", "train_real_tokens", "train_computed_positions", "compile_cache_warm"},
    "eval": {"eval_examples"},
    "predict": {"predict_examples"},
}  # fmt: skip


def train_argv(model: Path, out: Path, *extra: str, train: Path = SAMPLE_TRAIN, dev: Path = SAMPLE_DEV_V1) -> list[str]:
    return [
        "train", "--model_name_or_path", str(model), "--train_file", str(train), "--validation_file", str(dev),
        "--test_file", str(dev), "--max_train_samples", "40", "--max_eval_samples", "12", "--max_predict_samples",
        "10", "--max_seq_length", "96", "--doc_stride", "32", "--per_device_train_batch_size", "8", "--backend",
        "cpu", "--max_steps", "4", "--save_steps", "2", "--logging_steps", "1", "--output_dir", str(out), *extra,
    ]  # fmt: skip


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no params.yaml: the built-in defaults plus the flags
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def layout_of(out: Path) -> tuple[set[str], set[str], dict[str, dict]]:
    files = {p.name for p in out.iterdir() if p.is_file()}
    dirs = {p.name for p in out.iterdir() if p.is_dir()}
    results = {s: json.loads((out / f"{s}_results.json").read_text()) for s in ("train", "eval", "predict")}
    return files, dirs, results


@pytest.mark.parametrize("v2", [False, True], ids=["squad", "squad_v2"])
def test_output_directory_and_console_are_run_qas(capsys, tmp_path: Path, tiny_bert_dir: Path, v2: bool) -> None:
    out = tmp_path / "debug_squad"
    data = SAMPLE_DEV_V2 if v2 else SAMPLE_DEV_V1
    argv = train_argv(tiny_bert_dir, out, "--do_train", "--do_eval", "--do_predict", train=data, dev=data)
    assert main(argv + (["--version_2_with_negative"] if v2 else [])) == 0, capsys.readouterr().err[-3000:]
    printed = capsys.readouterr().out
    files, dirs, results = layout_of(out)

    expected_files = RUN_QA_FILES | (RUN_QA_V2_FILES if v2 else set())
    assert expected_files - set(NOT_WRITTEN) <= files, "every file run_qa.py writes"
    assert files - expected_files <= QAFLOW_FILES, f"undocumented extras: {files - expected_files - QAFLOW_FILES}"
    assert dirs == QAFLOW_DIRS
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["checkpoint-2", "checkpoint-4"]
    expected_keys = RUN_QA_V2_KEYS if v2 else RUN_QA_KEYS
    for split, keys in expected_keys.items():
        assert keys <= set(results[split]), f"{split}_results.json lacks {keys - set(results[split])}"
        assert set(results[split]) - keys <= QAFLOW_KEYS[split], f"{split}: {set(results[split]) - keys}"
    combined = json.loads((out / "all_results.json").read_text())
    assert combined == {**results["train"], **results["eval"], **results["predict"]}
    assert results["train"]["train_samples"] == results["train"]["train_features"]  # run_qa counts windows
    assert results["eval"]["eval_examples"] == 12 and results["predict"]["predict_examples"] == 10
    assert isinstance(results["eval"]["eval_samples"], int) and results["eval"]["eval_samples"] >= 12
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 4 and any("loss" in entry for entry in state["log_history"])

    for split in ("train", "eval", "predict"):  # transformers' log_metrics blocks, in run_qa's order
        assert metrics_block(split, results[split]) in printed
    assert (
        printed.index("***** train metrics *****")
        < printed.index("***** eval metrics *****")
        < printed.index("***** predict metrics *****")
    )


def test_metrics_files_merge_and_print_as_transformers_does(tmp_path: Path) -> None:
    paths = TrainPaths(tmp_path)
    save_metrics(paths, "train", {"train_runtime": 61.5, "train_samples": 40.0, "total_flos": 3 * 2**30, "epoch": 1.0})
    save_metrics(paths, "eval", {"eval_f1": 12.345678, "eval_samples": 7.0, "epoch": 1.0})
    assert json.loads((tmp_path / "train_results.json").read_text())["train_samples"] == 40  # a count: an int
    assert json.loads((tmp_path / "all_results.json").read_text()) == {
        "epoch": 1.0, "eval_f1": 12.345678, "eval_samples": 7, "total_flos": 3 * 2**30, "train_runtime": 61.5,
        "train_samples": 40,
    }  # fmt: skip
    assert (tmp_path / "all_results.json").read_text().startswith('{\n    "epoch"')  # indent 4, sorted keys
    assert metrics_block("train", {"train_runtime": 61.5, "train_samples": 40.0, "total_flos": 3 * 2**30}) == (
        "***** train metrics *****\n  total_flos    =        3GF\n  train_runtime = 0:01:01.50\n"
        "  train_samples =         40"
    )


def test_push_to_hub_dry_run_writes_the_upload_folder_and_the_card(
    capsys, tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    out, upload = tmp_path / "run", tmp_path / "upload"
    argv = train_argv(tiny_bert_dir, out, "--do_train", "--do_eval", "--push_to_hub", "--hub_model_id", "me/qa-tiny",
                      "--hub_dry_run", str(upload), "--json")  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err[-3000:]
    captured = capsys.readouterr()
    files = {p.name for p in upload.iterdir()}
    assert {"README.md", "model.safetensors", "config.json", "tokenizer.json", "inference_recipe.json",
            "train_results.json", "eval_results.json", "all_results.json", "trainer_state.json"} <= files  # fmt: skip
    assert not files & {"training_args.bin", "train_features.npz", "train_record.json", "eval_predictions.json"}
    card = ModelCard.load(upload / "README.md")
    assert card.data.pipeline_tag == "question-answering" and "me/qa-tiny" in card.text
    meta = yaml.safe_load((upload / "README.md").read_text().split("---\n")[1])
    scores = {m["type"]: m["value"] for m in meta["model-index"][0]["results"][0]["metrics"]}
    eval_results = json.loads((out / "eval_results.json").read_text())
    assert scores == {
        "exact_match": round(eval_results["eval_exact_match"], 4),
        "f1": round(eval_results["eval_f1"], 4),
    }
    assert (out / "README.md").read_text() == (upload / "README.md").read_text()  # run_qa's card at the root
    assert json.loads(captured.out[captured.out.rindex("\n{\n") :])["hub"]["dry_run"] == str(upload)
    assert TOKEN not in captured.out + captured.err
    assert not [p for p in [*upload.rglob("*"), *out.rglob("*")] if p.is_file() and TOKEN.encode() in p.read_bytes()]


def test_push_to_an_unreachable_hub_fails_in_one_line_after_the_outputs_are_written(
    capsys, tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    out = tmp_path / "run"
    t0 = time.monotonic()
    assert main(train_argv(tiny_bert_dir, out, "--push_to_hub", "--hub_model_id", "me/qa-tiny")) == 2
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.startswith("qaflow")]
    assert len(err) == 1 and err[0].startswith(f"qaflow train: error: push of {out} (kept as written) to {endpoint}")
    assert "the hub is unreachable" in err[0] and TOKEN not in captured.out + captured.err
    assert time.monotonic() - t0 < 240
    files = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "train_results.json", "all_results.json", "trainer_state.json"} <= files
    assert "***** train metrics *****" in captured.out  # the outputs were complete before the push


def test_push_without_a_token_fails_before_training(capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no token saved by `hf auth login`
    assert main(train_argv(tmp_path / "no-model", tmp_path / "run", "--push_to_hub", "--hub_model_id", "me/qa")) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("qaflow")]
    assert len(err) == 1 and "no Hugging Face token" in err[0] and not (tmp_path / "run").exists()
