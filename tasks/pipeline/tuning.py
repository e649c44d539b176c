"""Hyperparameter search for `qaflow tune`: an Optuna study in a sqlite file; one trial = train + score + MLflow run.

The study lives in `outputs/tune/<study>/study.db` (Optuna's RDB storage) and is found again by name, so a killed
search continues where it stopped: trials it finished stay finished, a trial it was running is marked failed and
its parameters are queued to run again. Each trial is a nested MLflow run under the study's run. At each epoch end
but the last, a trial scores its in-memory model on the first `pruning_eval_samples` eval questions and reports
that to Optuna's median pruner; a pruned trial stops training. The best complete trial's model is logged and
registered as `challenger`.
"""

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
from optuna.trial import FrozenTrial, Trial, TrialState
from transformers import TrainerCallback

from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import TUNE_SECTION, ConfigError, QAFlowConfig, TuneConfig, validate
from tasks.core.data import QADataset
from tasks.core.family import ModelFamily
from tasks.core.features import feature_settings, fit_questions
from tasks.core.layout import TrainPaths, tune_dir
from tasks.core.model_spec import ModelSpec
from tasks.core.specs import InferenceRecipe, inference_recipe
from tasks.families.registry import resolve_family
from tasks.pipeline.featurize import build_train_features, train_feature_spec
from tasks.pipeline.prediction import Predictor, predict_dataset, predict_with_stored_recipe
from tasks.pipeline.run_record import MODEL_ARTIFACT
from tasks.pipeline.serving import log_qa_model
from tasks.pipeline.stages import load_split
from tasks.pipeline.training import train_model
from tasks.tracking import tags as tag
from tasks.tracking.compile_cache import TrackedCompileCacheStore
from tasks.tracking.tracker import Tracker

log = logging.getLogger(__name__)

STUDY_DB = "study.db"
PARENT_RUN_ATTR = "mlflow_parent_run_id"  # study user attribute
RUN_ATTR = "mlflow_run_id"  # trial user attributes
MODEL_DIR_ATTR = "model_dir"
RETRY_OF_ATTR = "retry_of"
# the parameters a trial sets (flat config names); overriding them for `qaflow tune` would do nothing
SEARCHED = ("learning_rate", "per_device_train_batch_size", "num_train_epochs", "warmup_ratio", "max_seq_length",
            "doc_stride")  # fmt: skip
METRIC_KEYS = {"f1": ("f1",), "exact_match": ("exact_match", "exact")}  # SQuAD v1.1 / v2.0 names
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


# --------------------------------------------------------------------------------------------- inputs


@dataclass
class TuneData:
    """Both splits, loaded and checked once before the search starts."""

    train: QADataset
    eval: QADataset


def check_tunable(cfg: QAFlowConfig, overrides: Mapping[str, Any] | None) -> None:
    """Settings the search would silently ignore are refused (one ConfigError line)."""
    searched = sorted(set(SEARCHED) & {key.rpartition(".")[2] for key in overrides or {}})
    if searched:
        raise ConfigError(f"override: {searched[0]} is searched by tune; set its range in the tune section instead")
    if "output_dir" in {key.rpartition(".")[2] for key in overrides or {}}:
        raise ConfigError("override: output_dir is set by tune (each trial trains in outputs/tune/<study>/trial-NNN)")
    if cfg.train.max_steps > 0:
        raise ConfigError(f"train.max_steps: {cfg.train.max_steps} must be -1 for tune (num_train_epochs is searched)")
    if cfg.train.backend == "ipu":
        raise ConfigError("train.backend: tune trains on cpu or cuda (its pruning runs inside the Trainer)")
    if cfg.train.eval_strategy != "no":
        raise ConfigError("train.eval_strategy: tune scores each epoch itself (tune.pruning_eval_samples); use no")


def load_tune_data(cfg: QAFlowConfig, root: Path) -> TuneData:
    """The configured train and eval splits; relative data paths are the project's (`root`)."""
    local = copy.deepcopy(cfg)
    for key in ("train_file", "validation_file"):
        value = Path(getattr(local.data, key))
        setattr(local.data, key, str(value if value.is_absolute() else Path(root) / value))
    return TuneData(train=load_split(local, "train"), eval=load_split(local, "eval"))


def check_windows(cfg: QAFlowConfig, data: TuneData) -> None:
    """Every window choice fits the questions of both splits under `question_policy` (checked before any trial).

    Also loads the checkpoint's config and tokenizer once, so a bad model path fails here.
    """
    spec = ModelSpec.from_config(cfg)
    if not resolve_family(spec.family, spec.path).windowed:
        return
    tokenizer = load_tokenizer(spec.tokenizer_path)
    for seq, stride in cfg.tune.window_choices:
        windowed = copy.deepcopy(cfg)
        windowed.features.max_seq_length, windowed.features.doc_stride = seq, stride
        for dataset in (data.train, data.eval):
            fit_questions(dataset.examples, tokenizer, feature_settings(windowed))


# --------------------------------------------------------------------------------------------- study


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


# --------------------------------------------------------------------------------------------- one trial


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
    family: ModelFamily, tokenizer: Any, recipe: InferenceRecipe, dataset: QADataset, out_dir: Path, metric: str
) -> Callable[[Any], float]:
    """Score a model in training (on whatever device it is) on `dataset` with the official metric."""

    def score(model: Any) -> float:
        predictor = Predictor(family, model, tokenizer, next(model.parameters()).device)
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
              parent_run_id: str, data: TuneData) -> TrialOutcome:  # fmt: skip
    """Train and score one trial into its nested run, and tell the study its result (or that it was pruned).

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
    scorer = epoch_scorer(family, tokenizer, recipe, subset, paths.root / "epoch_eval", cfg.tune.metric)
    report = PruningReport(trial, scorer, int(params["num_train_epochs"]))
    try:
        trained = train_model(
            tcfg, features_path=features, data_path=Path(data.train.source), paths=paths,
            data_version=data.train.version, family=family, callbacks=[report],
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
        trained.model_dir, data.eval, paths.root / "predict", save_raw=False, use_cuda=tcfg.train.backend != "cpu"
    )
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
