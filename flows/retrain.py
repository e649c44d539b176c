"""The `retrain` flow: DVC data stages → train → predict + n-best → score → MLflow run → register as challenger.

A thin composition of `tasks` functions. Re-running with nothing changed trains nothing (the run key is the data
version plus the model parameters); a run killed mid-way resumes its MLflow run and its last complete checkpoint.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from filelock import FileLock
from prefect import flow, get_run_logger, task

from tasks.config import QAFlowConfig, load_config, persist_stage_overrides, save_params
from tasks.runplan import RunPlan, plan_run, run_key

STAGE_LOCK = ".dvc/tmp/qaflow-stages.lock"


@task(retries=3, retry_delay_seconds=10)
def run_data_stages(root: Path, snapshot_root: Path, params_path: Path, overrides: dict | None) -> dict[str, Any]:
    """`dvc repro` (only what changed), then copy the stage outputs this run needs out of the shared workspace.

    Overrides of DVC-tracked parameters (data, model, features) are written to params.yaml first, under the lock.
    """
    from tasks.versioning import data_version, push, reproduce

    logger = get_run_logger()
    with FileLock(str(root / STAGE_LOCK), timeout=1800):  # two retrains at once must not interleave stages
        for key, value in persist_stage_overrides(params_path, overrides).items():
            logger.info("params.yaml: %s set to %r (a DVC-tracked parameter)", key, value)
        stages = reproduce(root, env_path_prefix=str(Path(sys.executable).parent))
        version = data_version(root)
        snapshot = snapshot_root / version.id
        if not (snapshot / "train.npz").exists():
            tmp = snapshot.with_name(f".{snapshot.name}.tmp-{os.getpid()}")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            for src in ("data/prepared/train.json", "data/prepared/eval.json", "data/prepared/report.json",
                        "data/features/train.npz", "data/features/report.json"):  # fmt: skip
                shutil.copy2(root / src, tmp / Path(src).name)
            shutil.rmtree(snapshot, ignore_errors=True)
            tmp.rename(snapshot)
        pushed = push(root)
    for name in stages.ran:
        logger.info("DVC stage %s: ran", name)
    for name in stages.skipped:
        logger.info("DVC stage %s: unchanged, skipped", name)
    logger.info("data version %s (%d file(s) pushed to the DVC remote)", version.id, pushed)
    return {"version": version.id, "hashes": version.outs, "dir": str(snapshot), "stages_ran": list(stages.ran)}


@task(retries=3, retry_delay_seconds=5)
def unchanged_since_champion(cfg: QAFlowConfig, root: Path, data_version: str) -> str | None:
    """The reason to skip when the champion was trained on this data version with these params, else None."""
    from tasks.promote import champion_unchanged
    from tasks.tracking import configure_mlflow

    configure_mlflow(cfg.tracking, root)
    return champion_unchanged(cfg, root, data_version)


@task
def open_run(cfg: QAFlowConfig, root: Path, data: dict[str, Any], force: bool) -> RunPlan:
    """Find or create the MLflow run for (data version, params); decide skip / resume / new."""
    import mlflow

    from tasks.registry import find_version_for_run
    from tasks.tracking import RUN_KEY_TAG, configure_mlflow, find_run_by_key

    experiment_id = configure_mlflow(cfg.tracking, root)
    key = run_key(cfg, data["version"])
    existing = find_run_by_key(experiment_id, key)
    registered = existing is not None and (
        find_version_for_run(cfg.tracking.registered_model_name, existing.info.run_id, "model") is not None
    )
    plan = plan_run(key, existing, registered=registered, force=force)
    if plan.action == "new":
        run = mlflow.MlflowClient().create_run(
            experiment_id, tags={RUN_KEY_TAG: key, "qaflow.data_version": data["version"]}, run_name=f"retrain-{key}"
        )
        plan = RunPlan("new", key, run.info.run_id, plan.reason)
    get_run_logger().info("%s: %s", plan.action, plan.reason)
    return plan


@task
def train_model(cfg: QAFlowConfig, data: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    from tasks.train import train
    from tasks.train.common import write_result

    cfg.train.output_dir = str(run_dir / "train")
    result = train(
        cfg, features_path=Path(data["dir"]) / "train.npz", data_path=Path(data["dir"]) / "train.json",
        output_dir=run_dir / "train",
    )  # fmt: skip
    write_result(result, run_dir / "train" / "train_result.json")
    return result.to_json()


@task
def predict_and_score(cfg: QAFlowConfig, model_dir: str, data: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    from tasks.stages import predict_from_config

    return predict_from_config(
        cfg, model_dir=model_dir, data=Path(data["dir"]) / "eval.json", output_dir=run_dir / "predict"
    )


@task(retries=3, retry_delay_seconds=5)
def track(cfg: QAFlowConfig, root: Path, plan: RunPlan, data: dict, trained: dict, predicted: dict) -> None:
    """Log params, metrics, history, artifacts and the pyfunc model into the run (idempotent on resume)."""
    import mlflow

    from tasks.pyfunc import log_qa_model
    from tasks.stages import pyfunc_settings
    from tasks.tracking import log_run
    from tasks.train.common import read_result

    run_dir = Path(trained["model_dir"]).parent.parent
    save_params(cfg, run_dir / "params.yaml")
    pred_files = [(Path(p), "predictions") for k, p in predicted["files"].items() if k != "raw"]
    artifacts = [
        *pred_files,
        (run_dir / "params.yaml", None),
        (root / "dvc.lock", "data"),
        (Path(data["dir"]) / "report.json", "data"),
        (run_dir / "predict" / "metrics.json", None),
    ]
    result = read_result(run_dir / "train" / "train_result.json")
    with mlflow.start_run(run_id=plan.run_id):
        client = mlflow.MlflowClient()
        if not any(a.path == "model" for a in client.list_artifacts(plan.run_id)):
            log_qa_model(result.model_dir, pyfunc_settings(cfg, predicted))
        log_run(
            params=cfg.to_dict(),
            metrics={**predicted["metrics"], **_prefixed(predicted, "predict_")},
            train_result=result,
            artifacts=artifacts,
            tags={
                "qaflow.data_version": data["version"],
                "qaflow.model": cfg.model.model_name_or_path,
                "qaflow.family": predicted.get("model_family", "extractive"),
                "qaflow.run_mode": _run_mode(cfg),
            },
            run_id=plan.run_id,
        )


def _run_mode(cfg: QAFlowConfig) -> str:
    if not (cfg.train.torch_compile or cfg.train.torch_compile_mode):
        return "eager"
    return "compile-max-autotune" if cfg.train.torch_compile_mode == "max-autotune" else "compile"


def _prefixed(summary: dict[str, Any], prefix: str) -> dict[str, float]:
    return {k: float(v) for k, v in summary.items() if k.startswith(prefix) and isinstance(v, int | float)}


@task(retries=3, retry_delay_seconds=5)
def tracked_metrics(cfg: QAFlowConfig, root: Path, run_id: str) -> dict[str, float]:
    """The official-metric values an earlier run logged (shown when a retrain is skipped)."""
    import mlflow

    from tasks.tracking import configure_mlflow

    configure_mlflow(cfg.tracking, root)
    logged = mlflow.MlflowClient().get_run(run_id).data.metrics
    return {k: logged[k] for k in ("exact_match", "exact", "f1", "HasAns_f1", "NoAns_f1") if k in logged}


@task(retries=3, retry_delay_seconds=5)
def register(cfg: QAFlowConfig, plan: RunPlan) -> str:
    import mlflow

    from tasks.registry import register_model

    version = register_model(plan.run_id, "model", cfg.tracking.registered_model_name, run_key=plan.run_key)
    mlflow.MlflowClient().set_terminated(plan.run_id, "FINISHED")
    return str(version.version)


@flow(name="retrain", log_prints=True)
def retrain(
    params_path: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    root: str = ".",
) -> dict[str, Any]:
    """Retrain on the current data version; register the result as `challenger`."""
    repo = Path(root).resolve()
    cfg = load_config(repo / params_path, overrides)
    data = run_data_stages(repo, repo / "outputs" / "data", repo / params_path, overrides)
    reason = None if force else unchanged_since_champion(cfg, repo, data["version"])
    if reason:
        print(f"retrain skipped: {reason}")
        return {"action": "skip", "reason": reason, "run_id": None, "data_version": data["version"],
                "run_key": run_key(cfg, data["version"])}  # fmt: skip
    plan = open_run(cfg, repo, data, force)
    if plan.action == "skip":
        print(f"retrain skipped: {plan.reason}")
        return {"action": "skip", "run_id": plan.run_id, "run_key": plan.run_key, "data_version": data["version"],
                "metrics": tracked_metrics(cfg, repo, plan.run_id)}  # fmt: skip
    run_dir = repo / "outputs" / "runs" / plan.run_id
    trained = train_model(cfg, data, run_dir)
    predicted = predict_and_score(cfg, trained["model_dir"], data, run_dir)
    track(cfg, repo, plan, data, trained, predicted)
    version = register(cfg, plan)
    metrics = predicted["metrics"]
    print(f"registered {cfg.tracking.registered_model_name} v{version} as challenger; dev metrics: {metrics}")
    return {
        **asdict(plan),
        "version": version,
        "metrics": metrics,
        "data_version": data["version"],
        "train": trained["metrics"],
        "run_dir": str(run_dir),
    }
