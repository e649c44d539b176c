"""The retrain run's record in the tracker: own the run key, open (or find) its run, log it, register it.

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

from filelock import FileLock, Timeout

from tasks.core.artifacts import DataSnapshot, TrainResult
from tasks.core.config import QAFlowConfig, save_params
from tasks.core.data import load_dataset_file
from tasks.core.layout import RunPaths, run_lock_file
from tasks.core.specs import InferenceRecipe
from tasks.pipeline.error_slices import read_slices
from tasks.pipeline.prediction import PredictionSummary
from tasks.pipeline.question_table import question_table
from tasks.pipeline.runplan import RunPlan, plan_run
from tasks.pipeline.serving import log_qa_model
from tasks.pipeline.standings import label_version
from tasks.tracking import tags as tag
from tasks.tracking.live import LiveMetrics
from tasks.tracking.provenance import git_tags
from tasks.tracking.tracker import Tracker

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


def open_run(tracker: Tracker, key: str, snapshot: DataSnapshot, force: bool) -> RunPlan:
    """Find or create the run of run key `key` (data version + params); decide skip / resume / new."""
    existing = tracker.find_run(key)
    registered = existing is not None and tracker.version_of_run(existing.run_id, MODEL_ARTIFACT) is not None
    plan = plan_run(key, existing, registered=registered, force=force)
    if plan.action != "new":
        return plan
    run_id = tracker.create_run(f"retrain-{key}", tags={tag.RUN_KEY: key, tag.DATA_VERSION: snapshot.version})
    return RunPlan("new", key, run_id, plan.reason)


@contextlib.contextmanager
def live_tracking(tracker: Tracker, root: Path, plan: RunPlan, snapshot: DataSnapshot) -> Iterator[list[LiveMetrics]]:
    """While the block trains: the run has its git tags and data inputs, and gets system metrics and (through the
    yielded Trainer callbacks) every training log entry as it happens; `mlflow ui` shows them live."""
    tracker.mark_running(plan.run_id)  # a resumed run is running again
    tracker.set_tags(plan.run_id, {**git_tags(root), tag.DATA_VERSION: snapshot.version})
    tracker.log_data_inputs(
        plan.run_id, snapshot.version, {"training": snapshot.train_json, "evaluation": snapshot.eval_json}
    )
    with tracker.system_metrics(plan.run_id):
        yield [tracker.live_metrics(plan.run_id)]


def log_question_table(tracker: Tracker, run_id: str, eval_json: Path, predicted: PredictionSummary) -> None:
    """The per-question table (`QUESTION_TABLE`, an MLflow table): once per run, since a table logged again
    would be appended to the one already there."""
    if tracker.has_artifact(run_id, QUESTION_TABLE):
        return
    predictions = json.loads(predicted.files["predictions"].read_text(encoding="utf-8"))
    odds_file = predicted.files.get("null_odds")
    null_odds = json.loads(odds_file.read_text(encoding="utf-8")) if odds_file else None
    table = question_table(load_dataset_file(eval_json), predictions, null_odds)
    tracker.log_table(run_id, table, QUESTION_TABLE)


def record_run(
    tracker: Tracker,
    cfg: QAFlowConfig,
    root: Path,
    plan: RunPlan,
    snapshot: DataSnapshot,
    paths: RunPaths,
    trained: TrainResult,
    predicted: PredictionSummary,
    recipe: InferenceRecipe | None = None,
) -> None:
    """Log params, metrics, history, artifacts and the pyfunc model (with its recipe) into the plan's run.

    `recipe`: the model's stored recipe, where the flow loaded it already."""
    save_params(cfg, paths.params_file)
    artifacts = [
        *((path, "predictions") for name, path in predicted.files.items() if name not in ("raw", "metrics")),
        (paths.params_file, None),
        (root / "dvc.lock", "data"),
        (snapshot.data_report, "data"),
        (snapshot.features_report, "data"),
        (paths.metrics_file, None),
    ]
    with tracker.resumed(plan.run_id) as run_id:
        if not tracker.has_ready_model(run_id, MODEL_ARTIFACT):  # a resumed run logs its model once, whole
            tracker.fail_unfinished_models(run_id, MODEL_ARTIFACT)
            log_qa_model(tracker, run_id, trained.model_dir, MODEL_ARTIFACT, recipe=recipe)
        tracker.log_run(
            run_id,
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
        )
        log_question_table(tracker, run_id, snapshot.eval_json, predicted)
        if "slices" in predicted.files:
            tracker.log_slice_table(run_id, read_slices(predicted.files["slices"]))


@contextlib.contextmanager
def ended_on_failure(tracker: Tracker, plan: RunPlan) -> Iterator[None]:
    """The plan's run is never left RUNNING by a failure: KILLED on Ctrl-C or SIGTERM, FAILED on an error. (The
    next retrain of the same key resumes it either way.) Ending it is best effort: the failure itself is raised."""
    try:
        yield
    except BaseException as exc:
        status = "FAILED" if isinstance(exc, Exception) else "KILLED"
        try:
            if plan.run_id and tracker.get_run(plan.run_id).status == "RUNNING":
                tracker.finish(plan.run_id, status)
        except Exception as ending:  # noqa: BLE001 - the store may be what failed; the first error is the news
            log.warning("could not mark MLflow run %s %s: %s", plan.run_id, status, ending)
        raise


def register_run(tracker: Tracker, plan: RunPlan) -> str:
    """Register the run's model as a version (alias `challenger`, its scores, data version and description) and
    mark the run finished; the version number."""
    version = tracker.register(plan.run_id, MODEL_ARTIFACT, run_key=plan.run_key)
    label_version(tracker, version.version, plan.run_id)
    tracker.finish(plan.run_id)
    return version.version


def logged_scores(tracker: Tracker, run_id: str) -> dict[str, float]:
    """The official-metric values an earlier run logged (shown when a retrain is skipped)."""
    logged = tracker.get_run(run_id).metrics
    return {k: logged[k] for k in SCORE_KEYS if k in logged}
