"""Every MLflow tag name qaflow writes or reads, and the one derivation of a run's "run mode"."""

from __future__ import annotations

from collections.abc import Mapping

PREFIX = "qaflow."
RUN_KEY = "qaflow.run_key"  # data version + model parameters (tasks.pipeline.runplan.run_key)
DATA_VERSION = "qaflow.data_version"  # DVC data version the run trained on
MODEL = "qaflow.model"  # configured model name or path
FAMILY = "qaflow.family"  # extractive | beam | seq2seq | ...
RUN_MODE = "qaflow.run_mode"  # eager | compile | compile-<mode>
KIND = "qaflow.kind"  # retrain (no tag) | evaluation | suite | benchmark | comparison
BACKEND = "qaflow.backend"
DEVICE = "qaflow.device"
MODEL_URI = "qaflow.model_uri"  # evaluation runs: what was scored
EVAL_DATA = "qaflow.eval_data"
EVAL_DATA_SHA256 = "qaflow.eval_data_sha256"
COMPARED_RUNS = "qaflow.compared_runs"
COMPARE_METRIC = "qaflow.compare_metric"
ARTIFACT_PATH = "qaflow.artifact_path"  # model version tag: the run artifact it was registered from
PROMOTION = "qaflow.promotion"  # model version tag prefix: who/when/why promoted
ROLLBACK = "qaflow.rollback"  # model version tag prefix
HUB = "qaflow.hub"  # model version tag prefix: where and when it was pushed to the hub
GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's own tag
PARENT_RUN = "mlflow.parentRunId"  # MLflow's own tag: a nested run (a tune trial under its study's run)
TUNE_STUDY = "qaflow.tune_study"  # tune study and trial runs: the Optuna study name
TUNE_TRIAL = "qaflow.tune_trial"  # tune trial runs: the Optuna trial number
TUNE_STATE = "qaflow.tune_state"  # tune trial runs: complete | pruned | failed | interrupted
TUNE_BEST_RUN = "qaflow.tune_best_run"  # tune study runs: the run id of the best trial
GIT_BRANCH = "mlflow.source.git.branch"  # MLflow's own tag
GIT_DIRTY = "qaflow.git_dirty"  # true | false: uncommitted changes to tracked files when the run started

KIND_EVALUATION = "evaluation"
KIND_BENCHMARK = "benchmark"
KIND_COMPARISON = "comparison"
KIND_TUNE = "tune"  # the parent run of one tune study
KIND_TUNE_TRIAL = "tune-trial"
KIND_SUITE = "suite"
KIND_COMPILE_CACHE = "compile-cache"  # one run per compile cache key (experiment `<experiment>-compile-cache`)
COMPILE_CACHE_KEY = "qaflow.compile_cache.key"  # the key's digest (tasks.train.compile_cache)
COMPILE_CACHE_SHA256 = "qaflow.compile_cache.sha256"  # the archive's digest, checked before it is used
COMPILE_CACHE_FIELD = "qaflow.compile_cache.field."  # prefix: what the key is made of (torch, device, shapes, ...)
SUITE = "qaflow.suite"  # suite runs: the suite's name
SCORED_RUN = "qaflow.scored_run"  # suite runs of a retrain: the training run whose model was scored

EAGER = "eager"
_DEFAULT_MODES = {None, "", "default", "none", "None"}


def run_mode(torch_compile: bool, torch_compile_mode: str | None) -> str:
    """`eager`, `compile` (default mode) or `compile-<mode>` (e.g. `compile-max-autotune`)."""
    if not (torch_compile or torch_compile_mode):
        return EAGER
    return "compile" if torch_compile_mode in _DEFAULT_MODES else f"compile-{torch_compile_mode}"


def run_mode_of(tags: Mapping[str, str], params: Mapping[str, str]) -> str:
    """A logged run's mode: its tag, else derived from its logged `train.*` params."""
    if tags.get(RUN_MODE):
        return tags[RUN_MODE]
    compiled = params.get("train.torch_compile", "False").lower() in {"true", "1"}
    mode = params.get("train.torch_compile_mode")
    return run_mode(compiled, None if mode in _DEFAULT_MODES and not compiled else mode)


def run_kind(tags: Mapping[str, str]) -> str:
    """`evaluation` / `benchmark` / `comparison` from the tag; a run with a run key is a `retrain`."""
    if tags.get(KIND):
        return tags[KIND]
    return "retrain" if RUN_KEY in tags else "run"
