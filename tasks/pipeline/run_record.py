"""The retrain run's MLflow record: own the run key, open (or find) its run, log it, register it.

Idempotent by design: a retrain killed half-way resumes the same run (its run key is the data version plus the
model parameters), logs again without duplicating anything, and registers one model version per run. A run key is
owned by one live process at a time (`run_owner`): a second retrain of the same key waits, then finds the run
finished and skips; only a dead owner's run is resumed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import mlflow
from filelock import FileLock, Timeout

from tasks.core.artifacts import DataSnapshot, TrainResult
from tasks.core.config import QAFlowConfig, save_params
from tasks.core.data import load_dataset_file
from tasks.core.layout import RunPaths, run_lock_file
from tasks.pipeline.error_slices import read_slices
from tasks.pipeline.prediction import PredictionSummary
from tasks.pipeline.question_table import question_table
from tasks.pipeline.runplan import RunPlan, plan_run, run_key
from tasks.pipeline.serving import log_qa_model
from tasks.tracking import tags as tag
from tasks.tracking.live import LiveMetrics, system_metrics
from tasks.tracking.registry import (
    fail_unfinished_logged_models,
    find_version_for_run,
    ready_logged_model,
    register_model,
)
from tasks.tracking.runs import configure_mlflow, find_run_by_key, git_tags, log_data_inputs, log_run, run_url
from tasks.tracking.slice_tables import log_slice_table

MODEL_ARTIFACT = "model"
QUESTION_TABLE = "evaluation/questions.json"  # per-question table (id, question, gold, prediction, EM, F1, null odds)
RUN_LOCK_TIMEOUT_S = 12 * 3600  # a second retrain of the same key waits at most this long for the first

log = logging.getLogger(__name__)


@contextlib.contextmanager
def run_owner(root: Path, key: str, timeout_s: float = RUN_LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock of run key `key` while a run is opened, trained, logged and registered.

    The lock is an OS file lock: it dies with its process, so a killed retrain leaves its run to be resumed by the
    next one, while a live one makes the next one wait (it then finds the run finished and skips).
    """
    path = run_lock_file(root, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner_file = path.with_suffix(".owner")
    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        owner = owner_file.read_text(encoding="utf-8").strip() if owner_file.exists() else "another process"
        log.warning("run key %s is being trained by %s; waiting for it", key, owner)
        try:
            lock.acquire(timeout=timeout_s)
        except Timeout:
            raise RuntimeError(f"run key {key} is still held by {owner} after {timeout_s:.0f} s") from None
    try:
        since = datetime.now(UTC).isoformat(timespec="seconds")
        owner_file.write_text(f"{socket.gethostname()} pid {os.getpid()} since {since}\n", encoding="utf-8")
        yield
    finally:
        lock.release()


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


@contextlib.contextmanager
def live_tracking(cfg: QAFlowConfig, root: Path, plan: RunPlan, snapshot: DataSnapshot) -> Iterator[list[LiveMetrics]]:
    """While the block trains: the run has its git tags and data inputs, and gets system metrics and (through the
    yielded Trainer callbacks) every training log entry as it happens; `mlflow ui` shows them live."""
    configure_mlflow(cfg.tracking, root)
    client = mlflow.MlflowClient()
    if client.get_run(plan.run_id).info.status != "RUNNING":  # a resumed run is running again
        client.update_run(plan.run_id, status="RUNNING")
    for key, value in {**git_tags(root), tag.DATA_VERSION: snapshot.version}.items():
        client.set_tag(plan.run_id, key, value)
    log_data_inputs(plan.run_id, snapshot.version, {"training": snapshot.train_json, "evaluation": snapshot.eval_json})
    with system_metrics(plan.run_id):
        yield [LiveMetrics(plan.run_id, client)]


def log_question_table(run_id: str, eval_json: Path, predicted: PredictionSummary) -> None:
    """The per-question table (`QUESTION_TABLE`, `mlflow.log_table`): once per run, since a table logged again
    would be appended to the one already there."""
    client = mlflow.MlflowClient()
    if any(a.path == QUESTION_TABLE for a in client.list_artifacts(run_id, QUESTION_TABLE.rsplit("/", 1)[0])):
        return
    predictions = json.loads(predicted.files["predictions"].read_text(encoding="utf-8"))
    odds_file = predicted.files.get("null_odds")
    null_odds = json.loads(odds_file.read_text(encoding="utf-8")) if odds_file else None
    table = question_table(load_dataset_file(eval_json), predictions, null_odds)
    client.log_table(run_id, data=table, artifact_file=QUESTION_TABLE)


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
        if ready_logged_model(plan.run_id, MODEL_ARTIFACT) is None:  # a resumed run logs its model once, whole
            fail_unfinished_logged_models(plan.run_id, MODEL_ARTIFACT)
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
        log_question_table(plan.run_id, snapshot.eval_json, predicted)
        if "slices" in predicted.files:
            log_slice_table(read_slices(predicted.files["slices"]), plan.run_id)


@contextlib.contextmanager
def ended_on_failure(cfg: QAFlowConfig, root: Path, plan: RunPlan) -> Iterator[None]:
    """The plan's run is never left RUNNING by a failure: KILLED on Ctrl-C or SIGTERM, FAILED on an error. (The
    next retrain of the same key resumes it either way.) Ending it is best effort: the failure itself is raised."""
    try:
        yield
    except BaseException as exc:
        status = "FAILED" if isinstance(exc, Exception) else "KILLED"
        try:
            configure_mlflow(cfg.tracking, root)
            client = mlflow.MlflowClient()
            if plan.run_id and client.get_run(plan.run_id).info.status == "RUNNING":
                client.set_terminated(plan.run_id, status)
        except Exception as ending:  # noqa: BLE001 - the store may be what failed; the first error is the news
            log.warning("could not mark MLflow run %s %s: %s", plan.run_id, status, ending)
        raise


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


def run_link(cfg: QAFlowConfig, root: Path, run_id: str) -> str:
    """The run's MLflow UI page (for a local store: where `mlflow ui --backend-store-uri URI` serves it)."""
    experiment_id = configure_mlflow(cfg.tracking, root)
    return run_url(mlflow.get_tracking_uri(), experiment_id, run_id)
