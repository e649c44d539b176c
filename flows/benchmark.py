"""The `benchmark` flow: training throughput across run modes (eager / compile / max-autotune), one MLflow run each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.prefect_report import route_logs_to_prefect
from tasks.core.config import QAFlowConfig, load_config
from tasks.core.features import load_features
from tasks.core.layout import benchmark_dir
from tasks.pipeline.benchmark import RUN_MODES, ModeResult, comparison_rows, run_mode
from tasks.tracking import tags as tag
from tasks.tracking.compile_cache import TrackedCompileCacheStore
from tasks.tracking.tracker import Tracker
from tasks.train.hardware import detect_backend


@task
def benchmark_mode(
    cfg: QAFlowConfig, features_path: Path, backend: str, mode: str, root: Path, tracker: Tracker
) -> ModeResult:
    """One mode's run; compiled modes keep their Inductor caches in the tracking store (`*-cached` modes read them)."""
    store = TrackedCompileCacheStore(tracker)
    return run_mode(cfg, load_features(features_path), backend, mode, benchmark_dir(root, mode), store)


@task(retries=3, retry_delay_seconds=5)
def log_mode(tracker: Tracker, cfg: QAFlowConfig, result: ModeResult, backend: str) -> str:
    with tracker.run(f"benchmark-{result.mode}") as run_id:
        tracker.log_run(
            run_id,
            params={"train": {"per_device_train_batch_size": cfg.train.per_device_train_batch_size,
                              "max_steps": cfg.train.max_steps, "bf16": cfg.train.bf16},
                    "features": {"max_seq_length": cfg.features.max_seq_length},
                    "model": {"model_name_or_path": cfg.model.model_name_or_path}},
            metrics=result.metrics,
            artifacts=[(p, "autotune") for p in result.artifacts.values()],
            tags={tag.KIND: tag.KIND_BENCHMARK, tag.RUN_MODE: result.mode, tag.BACKEND: backend,
                  tag.DEVICE: result.device_name, tag.MODEL: cfg.model.model_name_or_path},
            environment=False,
        )  # fmt: skip
        return run_id


@flow(name="benchmark", log_prints=True)
def benchmark(
    features_path: str = "data/features/train.npz",
    params_path: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    modes: list[str] | None = None,
    root: str = ".",
) -> list[dict[str, Any]]:
    """Short training runs per mode on the same features; prints and logs the comparison table."""
    route_logs_to_prefect()

    repo = Path(root).resolve()
    cfg = load_config(repo / params_path, overrides)
    tracker = Tracker.from_config(cfg.tracking, repo)
    backend = detect_backend(cfg.train.backend, cfg.ipu.ipu_python)
    results = []
    for mode in modes or list(RUN_MODES):
        result = benchmark_mode(cfg, repo / features_path, backend, mode, repo, tracker)
        log_mode(tracker, cfg, result, backend)
        results.append(result)
    rows = comparison_rows(results)
    for row in rows:
        print(" | ".join(f"{k}={v}" for k, v in row.items()))
    return rows
