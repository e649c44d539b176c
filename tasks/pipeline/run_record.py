"""The retrain run's MLflow record: open (or find) the run for a run key, log it, register it.

Idempotent by design: a retrain killed half-way resumes the same run (its run key is the data version plus the
model parameters), logs again without duplicating anything, and registers one model version per run.
"""

from __future__ import annotations

from pathlib import Path

import mlflow

from tasks.core.artifacts import DataSnapshot, TrainResult
from tasks.core.config import QAFlowConfig, save_params
from tasks.core.layout import RunPaths
from tasks.pipeline.prediction import PredictionSummary
from tasks.pipeline.runplan import RunPlan, plan_run, run_key
from tasks.pipeline.serving import log_qa_model
from tasks.tracking import tags as tag
from tasks.tracking.registry import find_version_for_run, register_model
from tasks.tracking.runs import configure_mlflow, find_run_by_key, log_run

MODEL_ARTIFACT = "model"
SCORE_KEYS = ("exact_match", "exact", "f1", "HasAns_f1", "NoAns_f1")


def open_run(cfg: QAFlowConfig, root: Path, snapshot: DataSnapshot, force: bool) -> RunPlan:
    """Find or create the MLflow run for (data version, params); decide skip / resume / new."""
    experiment_id = configure_mlflow(cfg.tracking, root)
    key = run_key(cfg, snapshot.version)
    existing = find_run_by_key(experiment_id, key)
    registered = existing is not None and (
        find_version_for_run(cfg.tracking.registered_model_name, existing.info.run_id, MODEL_ARTIFACT) is not None
    )
    plan = plan_run(key, existing, registered=registered, force=force)
    if plan.action != "new":
        return plan
    run = mlflow.MlflowClient().create_run(
        experiment_id, tags={tag.RUN_KEY: key, tag.DATA_VERSION: snapshot.version}, run_name=f"retrain-{key}"
    )
    return RunPlan("new", key, run.info.run_id, plan.reason)


def record_run(
    cfg: QAFlowConfig,
    root: Path,
    plan: RunPlan,
    snapshot: DataSnapshot,
    paths: RunPaths,
    trained: TrainResult,
    predicted: PredictionSummary,
) -> None:
    """Log params, metrics, history, artifacts and the pyfunc model (with its recipe) into the plan's run."""
    configure_mlflow(cfg.tracking, root)
    save_params(cfg, paths.params_file)
    artifacts = [
        *((path, "predictions") for name, path in predicted.files.items() if name not in ("raw", "metrics")),
        (paths.params_file, None),
        (root / "dvc.lock", "data"),
        (snapshot.data_report, "data"),
        (snapshot.features_report, "data"),
        (paths.metrics_file, None),
    ]
    with mlflow.start_run(run_id=plan.run_id):
        client = mlflow.MlflowClient()
        if not any(a.path == MODEL_ARTIFACT for a in client.list_artifacts(plan.run_id)):
            log_qa_model(trained.model_dir, MODEL_ARTIFACT)
        log_run(
            params=cfg.to_dict(),
            metrics={**(predicted.metrics or {}), **predicted.speed},
            train_result=trained,
            artifacts=artifacts,
            tags={
                tag.DATA_VERSION: snapshot.version,
                tag.MODEL: cfg.model.model_name_or_path,
                tag.FAMILY: predicted.model_family,
                tag.RUN_MODE: tag.run_mode(cfg.train.torch_compile, cfg.train.torch_compile_mode),
            },
            run_id=plan.run_id,
        )


def register_run(cfg: QAFlowConfig, root: Path, plan: RunPlan) -> str:
    """Register the run's model as a version (alias `challenger`) and mark the run finished; the version number."""
    configure_mlflow(cfg.tracking, root)
    version = register_model(plan.run_id, MODEL_ARTIFACT, cfg.tracking.registered_model_name, run_key=plan.run_key)
    mlflow.MlflowClient().set_terminated(plan.run_id, "FINISHED")
    return str(version.version)


def logged_scores(cfg: QAFlowConfig, root: Path, run_id: str) -> dict[str, float]:
    """The official-metric values an earlier run logged (shown when a retrain is skipped)."""
    configure_mlflow(cfg.tracking, root)
    logged = mlflow.MlflowClient().get_run(run_id).data.metrics
    return {k: logged[k] for k in SCORE_KEYS if k in logged}
