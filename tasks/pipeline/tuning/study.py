"""The study: stored in `outputs/tune/<study>/study.db` and found again by name (a killed search's running trial
failed and queued again), its parent MLflow run, and the result: the best complete trial's model logged and
registered as `challenger`, the other trials' weights freed."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from tasks.core.config import TUNE_SECTION, ConfigError, QAFlowConfig, TuneConfig
from tasks.core.layout import TrainPaths, tune_dir
from tasks.pipeline.run_record import MODEL_ARTIFACT
from tasks.pipeline.serving import log_qa_model
from tasks.pipeline.standings import label_version
from tasks.tracking import tags as tag
from tasks.tracking.tracker import Tracker

STUDY_DB = "study.db"
PARENT_RUN_ATTR = "mlflow_parent_run_id"  # study user attribute
RUN_ATTR = "mlflow_run_id"  # trial user attributes
MODEL_DIR_ATTR = "model_dir"
RETRY_OF_ATTR = "retry_of"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def study_dir(cfg: QAFlowConfig, root: Path) -> Path:
    return tune_dir(root, cfg.tune.study_name)


def open_study(tune: TuneConfig, directory: Path) -> optuna.Study:
    """Create or load the study stored in `directory/study.db` (sampler seeded anew per resume, see below)."""
    directory.mkdir(parents=True, exist_ok=True)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=tune.pruner_startup_trials)
        if tune.pruner == "median"
        else optuna.pruners.NopPruner()
    )
    study = optuna.create_study(
        storage=f"sqlite:///{directory / STUDY_DB}", study_name=tune.study_name, direction=tune.direction,
        pruner=pruner, load_if_exists=True,
    )  # fmt: skip
    if study.direction.name.lower() != tune.direction:
        raise ConfigError(
            f"tune.direction: study {tune.study_name} was created to {study.direction.name.lower()}; "
            "use another study_name"
        )
    # The seed moves on with the trials already stored: a resumed search does not replay its first suggestions.
    study.sampler = optuna.samplers.TPESampler(seed=tune.sampler_seed + len(study.trials))
    return study


def recover_interrupted(tracker: Tracker, study: optuna.Study) -> list[int]:
    """Trials left RUNNING by a killed search: mark them failed (and their runs killed), queue their params.

    Only called while holding the study's lock (so no live process owns a RUNNING trial).
    """
    recovered = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study.tell(trial.number, state=TrialState.FAIL)
        if trial.user_attrs.get(RUN_ATTR):
            tracker.set_tags(trial.user_attrs[RUN_ATTR], {tag.TUNE_STATE: "interrupted"})
            tracker.finish(trial.user_attrs[RUN_ATTR], "KILLED")
        if trial.params:
            study.enqueue_trial(trial.params, user_attrs={RETRY_OF_ATTR: trial.number})
        recovered.append(trial.number)
    return recovered


def finished_trials(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def open_parent_run(tracker: Tracker, cfg: QAFlowConfig, study: optuna.Study) -> str:
    """The study's run (created once, its id kept in the study; reopened on resume)."""
    run_id = study.user_attrs.get(PARENT_RUN_ATTR)
    if run_id:
        tracker.mark_running(run_id)
        return run_id
    run_id = tracker.create_run(
        f"tune-{cfg.tune.study_name}", tags={tag.KIND: tag.KIND_TUNE, tag.TUNE_STUDY: cfg.tune.study_name}
    )
    tracker.log_params(run_id, {TUNE_SECTION: cfg.to_dict()[TUNE_SECTION]})
    study.set_user_attr(PARENT_RUN_ATTR, run_id)
    return run_id


# --------------------------------------------------------------------------------------------- the result


@dataclass
class BestTrial:
    number: int
    value: float
    params: dict[str, Any]
    run_id: str
    version: str


def register_best(tracker: Tracker, cfg: QAFlowConfig, study: optuna.Study, parent_run_id: str) -> BestTrial:
    """Log the best complete trial's model into its run, register it as `challenger`; keep only its model on disk.

    Idempotent: a search killed after this began registers the same run's model once (one version per run).
    """
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ValueError(f"tune study {cfg.tune.study_name}: no trial completed; nothing to register")
    best = study.best_trial
    run_id = best.user_attrs[RUN_ATTR]
    if not tracker.has_ready_model(run_id, MODEL_ARTIFACT):  # logged once, whole (as a retrain's model)
        tracker.fail_unfinished_models(run_id, MODEL_ARTIFACT)
        log_qa_model(tracker, run_id, best.user_attrs[MODEL_DIR_ATTR], MODEL_ARTIFACT)
    version = tracker.register(run_id, MODEL_ARTIFACT)
    label_version(tracker, version.version, run_id)
    _drop_other_models(complete, best)
    _close_parent(tracker, study, parent_run_id, best, cfg.tune.metric)
    return BestTrial(best.number, float(best.value), dict(best.params), run_id, version.version)


def _drop_other_models(complete: list[FrozenTrial], best: FrozenTrial) -> None:
    """Free the disk the other trials' weights and checkpoints take; their results, predictions and records stay
    (the model sits at the trial's output root, run_qa's layout, beside them)."""
    for trial in complete:
        model_dir = trial.user_attrs.get(MODEL_DIR_ATTR)
        if trial.number == best.number or not model_dir:
            continue
        root = Path(model_dir)
        shutil.rmtree(TrainPaths(root).checkpoints_dir, ignore_errors=True)
        for weights in (*root.glob("*.safetensors"), *root.glob("*.safetensors.index.json")):
            weights.unlink(missing_ok=True)


def _close_parent(tracker: Tracker, study: optuna.Study, run_id: str, best: FrozenTrial, metric: str) -> None:
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
              for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}  # fmt: skip
    tracker.log_metrics(run_id, {f"best_{metric}": best.value, "best_trial": best.number,
                                 **{f"trials_{k}": v for k, v in counts.items()}})  # fmt: skip
    tracker.set_tags(run_id, {tag.TUNE_BEST_RUN: best.user_attrs[RUN_ATTR]})
    tracker.finish(run_id)
