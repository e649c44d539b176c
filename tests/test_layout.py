"""`tasks.core.layout`: every path under `outputs/` comes from one place."""

from __future__ import annotations

from pathlib import Path

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
    assert train.model_dir == ROOT / "t" / "model"
    assert train.result_file == ROOT / "t" / "train_result.json"
    assert train.autotune_dir == ROOT / "t" / "autotune"
    assert train.features_file == ROOT / "t" / "train_features.npz"


def test_run_paths_of_different_runs_do_not_overlap() -> None:
    a, b = RunPaths.for_run(ROOT, "a"), RunPaths.for_run(ROOT, "b")
    assert a.run_dir != b.run_dir and not a.train.model_dir.is_relative_to(b.run_dir)


def test_snapshot_files_map_to_dvc_outputs() -> None:
    assert set(SNAPSHOT_FILES) == {"train.json", "eval.json", "data_report.json", "train.npz", "features_report.json"}
    assert all(source.startswith(("data/prepared/", "data/features/")) for source in SNAPSHOT_FILES.values())
    assert len(set(SNAPSHOT_FILES.values())) == len(SNAPSHOT_FILES)
