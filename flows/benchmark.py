"""The `benchmark` flow: training throughput across run modes (eager / compile / max-autotune), one MLflow run each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from tasks.benchmark import RUN_MODES, ModeResult, comparison_rows, run_mode
from tasks.config import QAFlowConfig, load_config


@task
def benchmark_mode(cfg: QAFlowConfig, features_path: Path, backend: str, mode: str, out_dir: Path) -> ModeResult:
    from tasks.features import load_features

    return run_mode(cfg, load_features(features_path), backend, mode, out_dir)


@task(retries=3, retry_delay_seconds=5)
def log_mode(cfg: QAFlowConfig, root: Path, result: ModeResult, backend: str) -> str:
    import mlflow

    from tasks.tracking import configure_mlflow, log_run

    experiment_id = configure_mlflow(cfg.tracking, root)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"benchmark-{result.mode}") as run:
        log_run(
            params={"train": {"per_device_train_batch_size": cfg.train.per_device_train_batch_size,
                              "max_steps": cfg.train.max_steps, "bf16": cfg.train.bf16},
                    "features": {"max_seq_length": cfg.features.max_seq_length},
                    "model": {"model_name_or_path": cfg.model.model_name_or_path}},
            metrics=result.metrics,
            artifacts=[(p, "autotune") for p in result.artifacts.values()],
            tags={"qaflow.kind": "benchmark", "qaflow.run_mode": result.mode, "qaflow.backend": backend,
                  "qaflow.device": result.device_name, "qaflow.model": cfg.model.model_name_or_path},
            environment=False,
        )  # fmt: skip
        return run.info.run_id


@flow(name="benchmark", log_prints=True)
def benchmark(
    features_path: str = "data/features/train.npz",
    params_path: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    modes: list[str] | None = None,
    root: str = ".",
) -> list[dict[str, Any]]:
    """Short training runs per mode on the same features; prints and logs the comparison table."""
    from tasks.train.common import detect_backend

    repo = Path(root).resolve()
    cfg = load_config(repo / params_path, overrides)
    backend = detect_backend(cfg.train.backend, cfg.ipu.ipu_python)
    results = []
    for mode in modes or list(RUN_MODES):
        result = benchmark_mode(cfg, repo / features_path, backend, mode, repo / "outputs" / "benchmark" / mode)
        log_mode(cfg, repo, result, backend)
        results.append(result)
    rows = comparison_rows(results)
    for row in rows:
        print(" | ".join(f"{k}={v}" for k, v in row.items()))
    return rows
