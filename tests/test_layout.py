"""`tasks.core.layout`: every path under `outputs/` comes from one place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.core import layout
from tasks.core.layout import SNAPSHOT_FILES, RunPaths, TrainPaths

ROOT = Path("/project")


def test_outputs_directories() -> None:
    out = ROOT / "outputs"
    assert layout.outputs_dir(ROOT) == out
    assert layout.snapshots_dir(ROOT) == out / "data"
    assert layout.snapshot_dir(ROOT, "abc123") == out / "data" / "abc123"
    assert layout.evaluate_dir(ROOT) == out / "evaluate"
    assert layout.promote_dir(ROOT, "eval-1") == out / "promote" / "eval-1"
    assert layout.benchmark_dir(ROOT, "eager") == out / "benchmark" / "eager"
    assert layout.compare_dir(ROOT) == out / "compare"


def test_accepts_a_string_root() -> None:
    assert layout.snapshot_dir("rel", "v") == Path("rel/outputs/data/v")  # type: ignore[arg-type]


def test_run_paths() -> None:
    paths = RunPaths.for_run(ROOT, "run42")
    run_dir = ROOT / "outputs" / "runs" / "run42"
    assert paths.run_dir == run_dir
    assert paths.params_file == run_dir / "params.yaml"
    assert paths.train == TrainPaths(run_dir / "train")
    assert paths.predict_dir == run_dir / "predict"
    assert paths.metrics_file == run_dir / "predict" / "metrics.json"


def test_train_paths() -> None:
    train = TrainPaths(ROOT / "t")
    assert train.checkpoints_dir == ROOT / "t" / "checkpoints"
    assert train.model_dir == ROOT / "t"  # run_qa.py: trainer.save_model(output_dir)
    assert train.state_file == ROOT / "t" / "trainer_state.json"
    assert train.results_file("train") == ROOT / "t" / "train_results.json"
    assert train.results_file("predict") == ROOT / "t" / "predict_results.json"
    assert train.results_file("all") == ROOT / "t" / "all_results.json"
    assert train.result_file == ROOT / "t" / "train_record.json"
    assert train.model_card == ROOT / "t" / "README.md"
    assert train.autotune_dir == ROOT / "t" / "autotune"
    assert train.features_file == ROOT / "t" / "train_features.npz"
    with pytest.raises(ValueError, match="test"):
        train.results_file("test")


def test_model_files_leave_out_the_runs_outputs(tmp_path: Path) -> None:
    model = ["config.json", "model.safetensors", "tokenizer.json", "vocab.txt", "inference_recipe.json",
             "training_args.bin", "README.md", "spiece.model"]  # fmt: skip
    outputs = ["train_results.json", "eval_results.json", "all_results.json", "trainer_state.json",
               "train_record.json", "train_features.npz", "eval_predictions.json", "eval_nbest_predictions.json",
               "predict_null_odds.json", "eval_slices.png", "ddp_job.json", "ipu_job.json",
               ".model.pid1.tmp"]  # fmt: skip
    for name in model + outputs:
        (tmp_path / name).write_text("x")
    for directory in ("checkpoints", "eval_raw_predictions", "autotune"):
        (tmp_path / directory).mkdir()
    assert [p.name for p in layout.model_files(tmp_path)] == sorted(model)
    assert layout.model_files(tmp_path / "absent") == []


def test_run_paths_of_different_runs_do_not_overlap() -> None:
    a, b = RunPaths.for_run(ROOT, "a"), RunPaths.for_run(ROOT, "b")
    assert a.run_dir != b.run_dir and not a.train.model_dir.is_relative_to(b.run_dir)
    assert a.train.model_dir == a.run_dir / "train"


def test_snapshot_files_map_to_dvc_outputs() -> None:
    assert set(SNAPSHOT_FILES) == {"train.json", "eval.json", "data_report.json", "train.npz", "features_report.json"}
    assert all(source.startswith(("data/prepared/", "data/features/")) for source in SNAPSHOT_FILES.values())
    assert len(set(SNAPSHOT_FILES.values())) == len(SNAPSHOT_FILES)
