"""The `retrain` flow: DVC data stages → train → predict + n-best → score → MLflow run → register as challenger.

A short recipe over typed steps (`tasks.pipeline`). Re-running with nothing changed trains nothing (the run key is
the data version plus the model parameters); a run killed mid-way resumes its MLflow run and its last complete
checkpoint. Only the steps that touch shared services retry, and only on transient errors. The flow builds its
`Tracker` once, computes the run key once, and loads the trained model (predictor + stored recipe) once for
calibration, the dev score, the logged model and the suite.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.device_slot import check_device_limit, device_slot
from flows.evaluate_flow import log_suite_scores, suite_summary
from flows.prefect_report import publish_retrain_report, route_logs_to_prefect
from flows.retry import retry_transient
from tasks.core.artifacts import DataSnapshot, TrainResult, write_result
from tasks.core.config import QAFlowConfig, load_config
from tasks.core.data import QADataset, load_dataset_file
from tasks.core.layout import RunPaths
from tasks.core.specs import InferenceRecipe
from tasks.core.suites import resolve_suite
from tasks.pipeline import data_stages, run_record
from tasks.pipeline.calibration import calibrate_stored
from tasks.pipeline.data_stages import calibration_set
from tasks.pipeline.dvc_metrics import write_dvc_metrics
from tasks.pipeline.prediction import PredictionSummary, StoredModel, predict_dataset
from tasks.pipeline.promote import champion_unchanged
from tasks.pipeline.runplan import RunPlan, run_key
from tasks.pipeline.suites import score_suite
from tasks.pipeline.training import train_model
from tasks.tracking.compile_cache import TrackedCompileCacheStore
from tasks.tracking.tracker import Tracker


@task(retries=3, retry_delay_seconds=10, retry_condition_fn=retry_transient)
def prepare_data(root: Path, params_path: Path, overrides: dict | None) -> DataSnapshot:
    """`dvc repro` (only what changed) and a snapshot of this version's outputs (see `tasks.pipeline.data_stages`)."""
    logger = get_run_logger()
    report = data_stages.run_data_stages(root, params_path, overrides)
    for key, value in report.params_changed.items():
        logger.info("params.yaml: %s set to %r (a DVC-tracked parameter)", key, value)
    for name in report.snapshot.stages_ran:
        logger.info("DVC stage %s: ran", name)
    for name in report.snapshot.stages_pulled:
        logger.info("DVC stage %s: outputs pulled from the DVC remote (not run)", name)
    for name in report.skipped:
        logger.info("DVC stage %s: unchanged, skipped", name)
    logger.info("data version %s: DVC stages %.1f s, %d file(s) pushed to the DVC remote", report.snapshot.version,
                report.seconds, report.pushed)  # fmt: skip
    return report.snapshot


@task(retries=3, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def unchanged_since_champion(tracker: Tracker, snapshot: DataSnapshot, key: str) -> str | None:
    """The reason to skip when the champion was trained on this data version with these params, else None."""
    return champion_unchanged(tracker, snapshot.version, key)


@task
def open_run(tracker: Tracker, key: str, snapshot: DataSnapshot, force: bool) -> RunPlan:
    plan = run_record.open_run(tracker, key, snapshot, force)
    get_run_logger().info("%s: %s", plan.action, plan.reason)
    return plan


@task
def train(
    cfg: QAFlowConfig, root: Path, tracker: Tracker, plan: RunPlan, snapshot: DataSnapshot, paths: RunPaths
) -> TrainResult:
    """Train into the run's directory; loss, learning rate, steps/s and system metrics reach its MLflow run live."""
    cfg.train.output_dir = str(paths.train.root)
    with run_record.live_tracking(tracker, root, plan, snapshot) as callbacks:
        result = train_model(
            cfg, features_path=snapshot.train_features, data_path=snapshot.train_json, paths=paths.train,
            data_version=load_dataset_file(snapshot.train_json).version, callbacks=callbacks,
            compile_cache=TrackedCompileCacheStore(tracker),
            eval_data=snapshot.eval_json,
        )  # fmt: skip
    write_result(result, paths.train.result_file)
    return result


@task(cache_policy=NO_CACHE)  # a loaded model is no cache key
def calibrate(
    cfg: QAFlowConfig, root: Path, model: StoredModel, paths: RunPaths
) -> tuple[StoredModel, dict[str, float]]:
    """Calibrate the v2 no-answer threshold on `postprocess.calibration_file`; stored in the model's recipe."""
    calibrated, result = calibrate_stored(model, calibration_set(cfg, root), paths.predict_dir / "calibration")
    get_run_logger().info(
        "no-answer threshold calibrated: %.4f (F1 %.2f vs %.2f at %.2f on the calibration set)",
        result.threshold, result.calibrated_f1, result.configured_f1, result.configured_threshold,
    )  # fmt: skip
    return calibrated, result.metrics()


@task(cache_policy=NO_CACHE)
def predict_and_score(model: StoredModel, snapshot: DataSnapshot, paths: RunPaths) -> PredictionSummary:
    """Predict the snapshot's eval split with the model's stored inference recipe; official EM/F1."""
    return predict_dataset(model.predictor, load_dataset_file(snapshot.eval_json), model.recipe, paths.predict_dir)


@task(retries=3, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def track(
    tracker: Tracker, cfg: QAFlowConfig, root: Path, plan: RunPlan, snapshot: DataSnapshot, paths: RunPaths,
    trained: TrainResult, predicted: PredictionSummary, recipe: InferenceRecipe,
) -> None:  # fmt: skip
    """Log params, metrics, history, artifacts and the pyfunc model into the run (idempotent on resume)."""
    run_record.record_run(tracker, cfg, root, plan, snapshot, paths, trained, predicted, recipe)


@task(retries=3, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def logged_scores(tracker: Tracker, run_id: str) -> dict[str, float]:
    return run_record.logged_scores(tracker, run_id)


@task(retries=3, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def register(tracker: Tracker, plan: RunPlan) -> str:
    return run_record.register_run(tracker, plan)


@task(retries=3, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def report(tracker: Tracker, summary: dict[str, Any]) -> dict[str, Any]:
    """This flow run's table and markdown artifacts in Prefect (metrics, versions, the MLflow run link)."""
    link = tracker.run_url(summary["run_id"]) if summary.get("run_id") else None
    publish_retrain_report(summary, link, tracker.model_name)
    return {**summary, "mlflow_run_url": link} if link else summary


@task(cache_policy=NO_CACHE)
def score_on_suite(
    cfg: QAFlowConfig, root: Path, tracker: Tracker, model: StoredModel, paths: RunPaths, run_id: str,
    dev: tuple[QADataset, PredictionSummary],
) -> dict:  # fmt: skip
    """The challenger scored on the configured evaluation suite (its own recipe), logged as one suite run.

    A member with exactly the dev set's examples reuses the dev score (same model, recipe and questions)."""
    name, members = resolve_suite(cfg, root)
    label = f"models:/{tracker.model_name}@challenger (run {run_id})"
    result = score_suite(model.predictor, model.recipe, name, members, paths.run_dir / f"suite-{name}", label,
                         known=dev)  # fmt: skip
    return suite_summary(result, log_suite_scores.fn(tracker, result, run_id))


@flow(name="retrain", log_prints=True)
def retrain(
    params_path: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    root: str = ".",
) -> dict[str, Any]:
    """Retrain on the current data version; register the result as `challenger`."""
    route_logs_to_prefect()
    repo = Path(root).resolve()
    cfg = load_config(repo / params_path, overrides)
    data_stages.check_inputs(cfg, repo)  # bad data fails here, once, before params.yaml or data/ change
    if cfg.evaluation.suite:
        resolve_suite(cfg, repo)  # so do missing or changed suite files
    check_device_limit(cfg.train.device_concurrency_limit)  # and a device limit the Prefect server does not know
    tracker = Tracker.from_config(cfg.tracking, repo)
    snapshot = prepare_data(repo, repo / params_path, overrides)
    key = run_key(cfg, snapshot.version)
    summary: dict[str, Any] = {
        "data_version": snapshot.version, "run_key": key, "flow_run_id": flow_run.id,
        "data_stages": {"ran": list(snapshot.stages_ran), "pulled": list(snapshot.stages_pulled)},
    }  # fmt: skip
    reason = None if force else unchanged_since_champion(tracker, snapshot, key)
    if reason:
        print(f"retrain skipped: {reason}")
        return report(tracker, {**summary, "action": "skip", "reason": reason, "run_id": None})
    with run_record.run_owner(repo, key):  # one live process per run key
        plan = open_run(tracker, key, snapshot, force)
        if plan.action == "skip":
            print(f"retrain skipped: {plan.reason}")
            return report(tracker, {**summary, **asdict(plan), "metrics": logged_scores(tracker, plan.run_id)})
        paths = RunPaths.for_run(repo, plan.run_id)
        calibration: dict[str, float] = {}
        with device_slot(cfg.train.device_concurrency_limit) as slot:  # queue behind other jobs on this device
            trained = train(cfg, repo, tracker, plan, snapshot, paths)
            model = StoredModel.load(trained.model_dir)  # once: calibration, the dev score, the log, the suite
            if cfg.postprocess.calibration_file:
                model, calibration = calibrate(cfg, repo, model, paths)
            predicted = predict_and_score(model, snapshot, paths)
        if slot:
            print(f"held device slot {slot['limit']} after waiting {slot['waited_s']:.1f} s")
        predicted.metrics = {**(predicted.metrics or {}), **calibration}
        track(tracker, cfg, repo, plan, snapshot, paths, trained, predicted, model.recipe)
        version = register(tracker, plan)
        write_dvc_metrics(
            repo, data_version=snapshot.version, run_id=plan.run_id, scores=predicted.metrics or {},
            figures={**trained.metrics, **predicted.speed}, log_history=trained.log_history,
        )  # fmt: skip
        print(f"registered {tracker.model_name} v{version} as challenger; dev metrics: {predicted.metrics}")
        dev = (load_dataset_file(snapshot.eval_json), predicted)
        suite = score_on_suite(cfg, repo, tracker, model, paths, plan.run_id, dev) if cfg.evaluation.suite else None
        return report(tracker, {
            **summary, **asdict(plan), "version": version, "metrics": predicted.metrics, "train": trained.metrics,
            "run_dir": str(paths.run_dir), "slices": str(predicted.files.get("slices", "")), "suite": suite,
            "device_slot": slot or None,
        })  # fmt: skip
