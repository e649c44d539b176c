"""The `evaluate` flow: score a registered model version on a dataset and log it as an MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from tasks.config import QAFlowConfig, load_config


@task
def score_model(model_uri: str, data: str, max_samples: int | None, out_dir: Path) -> dict[str, Any]:
    from tasks.data import load_dataset_file
    from tasks.evaluation import evaluate_model, file_digest

    dataset = load_dataset_file(data, max_samples=max_samples)
    result = evaluate_model(model_uri, dataset, out_dir)
    result["eval_data"] = {"path": str(data), "sha256": file_digest(data), "examples": len(dataset.examples)}
    return result


@task(retries=3, retry_delay_seconds=5)
def log_evaluation(cfg: QAFlowConfig, root: Path, model_uri: str, result: dict[str, Any]) -> str:
    import mlflow

    from tasks.tracking import configure_mlflow, log_run

    experiment_id = configure_mlflow(cfg.tracking, root)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"evaluate {model_uri}") as run:
        log_run(
            metrics={**result["metrics"], **result["speed"]},
            artifacts=[(Path(p), "predictions") for p in result["files"].values()],
            tags={"qaflow.kind": "evaluation", "qaflow.model_uri": model_uri,
                  "qaflow.eval_data": result["eval_data"]["path"],
                  "qaflow.eval_data_sha256": result["eval_data"]["sha256"]},
            environment=False,
        )  # fmt: skip
        return run.info.run_id


@flow(name="evaluate", log_prints=True)
def evaluate(
    model_uri: str,
    data: str,
    max_samples: int | None = None,
    params_path: str = "params.yaml",
    root: str = ".",
) -> dict[str, Any]:
    """Score `model_uri` (e.g. `models:/qaflow-qa@challenger`) on `data`; returns metrics and the MLflow run id."""
    repo = Path(root).resolve()
    cfg = load_config(repo / params_path)
    from tasks.tracking import configure_mlflow

    configure_mlflow(cfg.tracking, repo)
    result = score_model(model_uri, data, max_samples, repo / "outputs" / "evaluate")
    result["run_id"] = log_evaluation(cfg, repo, model_uri, result)
    print(f"{model_uri} on {data}: {result['metrics']}")
    return result
