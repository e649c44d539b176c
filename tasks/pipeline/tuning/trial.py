"""One trial: its recipe suggested from the search space, features built once per window, training with a
per-epoch score reported to the pruner, the official score on the eval split, and its nested MLflow run."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import Trial, TrialState
from transformers import TrainerCallback

from tasks.core.backend import Backend
from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import TUNE_SECTION, QAFlowConfig, TuneConfig, validate
from tasks.core.data import QADataset
from tasks.core.family import ModelFamily
from tasks.core.layout import TrainPaths
from tasks.core.model_spec import ModelSpec
from tasks.core.specs import InferenceRecipe, inference_recipe
from tasks.families.registry import resolve_family
from tasks.pipeline.featurize import build_train_features, train_feature_spec
from tasks.pipeline.prediction import Predictor, predict_dataset, predict_with_stored_recipe
from tasks.pipeline.training import check_training, train_model
from tasks.pipeline.tuning.inputs import TuneData
from tasks.pipeline.tuning.study import MODEL_DIR_ATTR, RUN_ATTR, study_dir
from tasks.tracking import tags as tag
from tasks.tracking.compile_cache import TrackedCompileCacheStore
from tasks.tracking.tracker import Tracker
from tasks.train.hardware import HardwareBackend, inference_backend

log = logging.getLogger(__package__)  # "tasks.pipeline.tuning", as before the package was split

METRIC_KEYS = {"f1": ("f1",), "exact_match": ("exact_match", "exact")}  # SQuAD v1.1 / v2.0 names


def suggest(trial: Trial, tune: TuneConfig) -> dict[str, Any]:
    """The trial's training recipe from the search space (flat config names)."""
    window = trial.suggest_categorical("window", [f"{seq}/{stride}" for seq, stride in tune.window_choices])
    max_seq_length, doc_stride = (int(v) for v in str(window).split("/"))
    return {
        "learning_rate": trial.suggest_float("learning_rate", *tune.learning_rate_range, log=True),
        "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size",
                                                                 tune.batch_size_choices),
        "num_train_epochs": trial.suggest_int("num_train_epochs", *tune.epochs_range),
        "warmup_ratio": trial.suggest_float("warmup_ratio", *tune.warmup_ratio_range),
        "max_seq_length": max_seq_length,
        "doc_stride": doc_stride,
    }  # fmt: skip


def trial_config(cfg: QAFlowConfig, params: Mapping[str, Any]) -> QAFlowConfig:
    """`cfg` with the trial's recipe applied (validated like any configuration)."""
    out = copy.deepcopy(cfg)
    for key in ("learning_rate", "per_device_train_batch_size", "warmup_ratio"):
        setattr(out.train, key, params[key])
    out.train.num_train_epochs = float(params["num_train_epochs"])
    out.features.max_seq_length = int(params["max_seq_length"])
    out.features.doc_stride = int(params["doc_stride"])
    validate(out)
    return out


def metric_value(metrics: Mapping[str, float], metric: str) -> float:
    """The tuned metric (`f1` or `exact_match`; SQuAD v2.0 calls exact match `exact`)."""
    for key in METRIC_KEYS[metric]:
        if key in metrics:
            return float(metrics[key])
    raise KeyError(f"metric {metric} not among the scores {sorted(metrics)}")


class PruningReport(TrainerCallback):
    """At each epoch end but the last, score the model in training and report it; stop a trial the pruner prunes."""

    def __init__(self, trial: Trial, score: Callable[[Any], float], epochs: int) -> None:
        self.trial, self.score, self.epochs = trial, score, epochs
        self.reports: dict[int, float] = {}

    def on_epoch_end(self, args, state, control, model=None, **kwargs):  # noqa: ANN001 - the Trainer's signature
        epoch = round(state.epoch or 0)
        if epoch >= self.epochs or model is None:
            return
        value = self.score(model)
        model.train()  # prediction switched it to eval mode
        self.reports[epoch] = value
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch}: {value:.2f} is below the median of earlier trials")


def epoch_scorer(
    family: ModelFamily, tokenizer: Any, recipe: InferenceRecipe, dataset: QADataset, out_dir: Path, metric: str,
    backend: Backend,
) -> Callable[[Any], float]:  # fmt: skip
    """Score a model in training (on `backend`, the one training it) on `dataset` with the official metric."""

    def score(model: Any) -> float:
        predictor = Predictor(family, model, tokenizer, backend)
        summary = predict_dataset(predictor, dataset, recipe, out_dir, save_raw=False)
        return metric_value(summary.metrics or {}, metric)

    return score


def cached_features(cfg: QAFlowConfig, family: ModelFamily, tokenizer: Any, data: TuneData, directory: Path) -> Path:
    """Training features for the trial's window, built once per window and kept beside the study.

    The file name carries a digest of what the features depend on (examples, tokenizer, family, feature spec), so
    a study resumed with other data or another model builds new ones.
    """
    spec = train_feature_spec(cfg)
    inputs = [[e.id for e in data.train.examples], ModelSpec.from_config(cfg).tokenizer_path, family.name, repr(spec)]
    digest = hashlib.sha256(json.dumps(inputs, default=str).encode("utf-8")).hexdigest()[:12]
    name = f"train-{cfg.features.max_seq_length}-{cfg.features.doc_stride}-{digest}.npz"
    path = directory / "features" / name
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    family.save_train_features(build_train_features(cfg, family, data.train.examples, tokenizer), tmp)
    os.replace(tmp, path)
    return path


@dataclass
class TrialOutcome:
    number: int
    state: str  # complete | pruned
    params: dict[str, Any]
    value: float | None
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    reports: dict[int, float] = field(default_factory=dict)


def open_trial_run(tracker: Tracker, cfg: QAFlowConfig, parent_run_id: str, trial: Trial, params: Mapping) -> str:
    run_id = tracker.create_run(
        f"{cfg.tune.study_name}-trial-{trial.number}",
        tags={tag.PARENT_RUN: parent_run_id, tag.KIND: tag.KIND_TUNE_TRIAL, tag.TUNE_STUDY: cfg.tune.study_name,
              tag.TUNE_TRIAL: str(trial.number), tag.MODEL: cfg.model.model_name_or_path},
    )  # fmt: skip
    run_cfg = {k: v for k, v in cfg.to_dict().items() if k != TUNE_SECTION}
    tracker.log_params(run_id, {**run_cfg, "trial": {"number": trial.number, **params}})
    return run_id


def run_trial(tracker: Tracker, cfg: QAFlowConfig, root: Path, study: optuna.Study, trial: Trial,
              parent_run_id: str, data: TuneData, backend: HardwareBackend) -> TrialOutcome:  # fmt: skip
    """Train and score one trial on `backend` (`check_tunable`'s) into its nested run, and tell the study its result
    (or that it was pruned).

    An exception other than pruning leaves the trial RUNNING for the caller to fail (`fail_trial`).
    """
    params = suggest(trial, cfg.tune)
    tcfg = trial_config(cfg, params)
    directory = study_dir(cfg, root)
    paths = TrainPaths(directory / f"trial-{trial.number:03d}")
    shutil.rmtree(paths.root, ignore_errors=True)
    tcfg.train.output_dir = str(paths.root)
    run_id = open_trial_run(tracker, tcfg, parent_run_id, trial, params)
    trial.set_user_attr(RUN_ATTR, run_id)
    spec = ModelSpec.from_config(tcfg)
    family = resolve_family(spec.family, spec.path)
    tokenizer = load_tokenizer(spec.tokenizer_path)
    features = cached_features(tcfg, family, tokenizer, data, directory)
    subset = QADataset(data.eval.examples[: cfg.tune.pruning_eval_samples], data.eval.version, data.eval.source)
    recipe = inference_recipe(tcfg, family.name, data.eval.version)
    scorer = epoch_scorer(family, tokenizer, recipe, subset, paths.root / "epoch_eval", cfg.tune.metric, backend)
    check_training(tcfg, family, backend)
    report = PruningReport(trial, scorer, int(params["num_train_epochs"]))
    try:
        trained = train_model(
            tcfg, features_path=features, data_path=Path(data.train.source), paths=paths,
            data_version=data.train.version, family=family, callbacks=[report], backend=backend,
            compile_cache=TrackedCompileCacheStore(tracker),
        )  # fmt: skip
    except optuna.TrialPruned as pruned:
        _log_reports(tracker, run_id, report.reports, cfg.tune.metric)
        tracker.set_tags(run_id, {tag.TUNE_STATE: "pruned"})
        tracker.finish(run_id)
        study.tell(trial, state=TrialState.PRUNED)
        shutil.rmtree(paths.root, ignore_errors=True)
        log.info("trial %d pruned: %s", trial.number, pruned)
        return TrialOutcome(trial.number, "pruned", params, None, run_id, reports=report.reports)
    predicted = predict_with_stored_recipe(
        trained.model_dir, data.eval, paths.root / "predict", save_raw=False,
        backend=inference_backend(tcfg.train.backend),
    )  # fmt: skip
    metrics = predicted.metrics or {}
    value = metric_value(metrics, cfg.tune.metric)
    _log_reports(tracker, run_id, report.reports, cfg.tune.metric)
    tracker.log_run(run_id, metrics={**metrics, **predicted.speed}, train_result=trained, environment=False,
                    tags={tag.TUNE_STATE: "complete", tag.FAMILY: family.name})  # fmt: skip
    tracker.finish(run_id)
    shutil.rmtree(paths.checkpoints_dir, ignore_errors=True)  # a trial is never resumed: only its model is kept
    trial.set_user_attr(MODEL_DIR_ATTR, str(trained.model_dir))
    study.tell(trial, value)
    return TrialOutcome(trial.number, "complete", params, value, run_id, metrics=metrics, reports=report.reports)


def _log_reports(tracker: Tracker, run_id: str, reports: Mapping[int, float], metric: str) -> None:
    """The per-epoch pruning scores as the step-wise metric `epoch_eval_<metric>` (step = epoch)."""
    for epoch, value in reports.items():
        tracker.log_metrics(run_id, {f"epoch_eval_{metric}": value}, step=epoch)


def fail_trial(tracker: Tracker, study: optuna.Study, trial: Trial, error: BaseException) -> None:
    """A trial that raised: failed in the study, its run FAILED."""
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    run_id = trial.user_attrs.get(RUN_ATTR)
    if run_id:
        tracker.set_tags(run_id, {tag.TUNE_STATE: "failed"})
        tracker.finish(run_id, "FAILED")
    log.warning("trial %d failed: %s", trial.number, error)
