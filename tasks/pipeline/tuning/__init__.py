"""Hyperparameter search for `qaflow tune`: an Optuna study in a sqlite file; one trial = train + score + MLflow run.

The study lives in `outputs/tune/<study>/study.db` (Optuna's RDB storage) and is found again by name, so a killed
search continues where it stopped: trials it finished stay finished, a trial it was running is marked failed and
its parameters are queued to run again. Each trial is a nested MLflow run under the study's run. At each epoch end
but the last, a trial scores its in-memory model on the first `pruning_eval_samples` eval questions and reports
that to Optuna's median pruner; a pruned trial stops training. The best complete trial's model is logged and
registered as `challenger`.

The rooms: `inputs` (checks and data before the first trial), `study` (the stored study, its parent run, the
best trial registered), `trial` (one trial: train, prune, score, its run). This package re-exports the public
names, so callers import from `tasks.pipeline.tuning`.
"""

from tasks.pipeline.tuning.inputs import SEARCHED, TuneData, check_tunable, check_windows, load_tune_data
from tasks.pipeline.tuning.study import (
    FINISHED,
    MODEL_DIR_ATTR,
    PARENT_RUN_ATTR,
    RETRY_OF_ATTR,
    RUN_ATTR,
    STUDY_DB,
    BestTrial,
    finished_trials,
    open_parent_run,
    open_study,
    recover_interrupted,
    register_best,
    study_dir,
)
from tasks.pipeline.tuning.trial import (
    METRIC_KEYS,
    PruningReport,
    TrialOutcome,
    cached_features,
    epoch_scorer,
    fail_trial,
    metric_value,
    open_trial_run,
    run_trial,
    suggest,
    trial_config,
)

__all__ = [
    "FINISHED",
    "METRIC_KEYS",
    "MODEL_DIR_ATTR",
    "PARENT_RUN_ATTR",
    "RETRY_OF_ATTR",
    "RUN_ATTR",
    "SEARCHED",
    "STUDY_DB",
    "BestTrial",
    "PruningReport",
    "TrialOutcome",
    "TuneData",
    "cached_features",
    "check_tunable",
    "check_windows",
    "epoch_scorer",
    "fail_trial",
    "finished_trials",
    "load_tune_data",
    "metric_value",
    "open_parent_run",
    "open_study",
    "open_trial_run",
    "recover_interrupted",
    "register_best",
    "run_trial",
    "suggest",
    "study_dir",
    "trial_config",
]
