"""Checking a configuration before anything expensive: allowed choices and bounds, the rules between fields,
in-training evaluation (transformers' rules, the best-checkpoint metric) and the `tune` search space."""

from __future__ import annotations

import re
from typing import Any

from tasks.core.config.sections import ConfigError, QAFlowConfig, TrainConfig, TuneConfig

CHOICES: dict[tuple[str, str], set[Any]] = {
    ("data", "bad_record_policy"): {"error", "skip"},
    ("train", "save_strategy"): {"steps", "epoch", "no"},
    ("features", "question_policy"): {"error", "truncate", "skip"},
    ("train", "torch_compile_mode"): {None, "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"},
    ("train", "eval_strategy"): {"no", "steps", "epoch"},
    ("train", "report_to"): {"none", "mlflow"},
    ("tune", "metric"): {"f1", "exact_match"},
    ("tune", "direction"): {"maximize", "minimize"},
    ("tune", "pruner"): {"median", "none"},
}
# (section, key) -> (lowest allowed, whether the bound itself is allowed); None values are skipped (optional)
BOUNDS: dict[tuple[str, str], tuple[float, bool]] = {
    ("data", "max_train_samples"): (1, True),
    ("data", "max_eval_samples"): (1, True),
    ("data", "max_predict_samples"): (1, True),
    ("data", "split_eval_fraction"): (0, False),
    ("features", "max_seq_length"): (8, True),
    ("features", "doc_stride"): (0, True),
    ("features", "preprocessing_num_workers"): (1, True),
    ("features", "max_query_length"): (1, True),
    ("train", "learning_rate"): (0, False),
    ("train", "per_device_train_batch_size"): (1, True),
    ("train", "per_device_eval_batch_size"): (1, True),
    ("train", "pad_to_multiple_of"): (1, True),
    ("train", "gradient_accumulation_steps"): (1, True),
    ("train", "warmup_ratio"): (0, True),
    ("train", "weight_decay"): (0, True),
    ("train", "save_steps"): (1, True),
    ("train", "eval_steps"): (1, True),
    ("train", "early_stopping_patience"): (1, True),
    ("train", "early_stopping_threshold"): (0, True),
    ("train", "save_total_limit"): (1, True),
    ("train", "logging_steps"): (1, True),
    ("train", "dataloader_num_workers"): (0, True),
    ("postprocess", "n_best_size"): (1, True),
    ("postprocess", "max_answer_length"): (1, True),
    ("postprocess", "val_max_answer_length"): (1, True),
    ("postprocess", "num_beams"): (1, True),
    ("ipu", "micro_batch_size"): (1, True),
    ("ipu", "ipu_gradient_accumulation_steps"): (1, True),
    ("tune", "n_trials"): (1, True),
    ("tune", "timeout_s"): (0, False),
    ("tune", "pruner_startup_trials"): (0, True),
    ("tune", "pruning_eval_samples"): (1, True),
}


def validate(cfg: QAFlowConfig) -> None:
    """Every check that needs no file or model: run before anything expensive (one ConfigError line each)."""
    for (section, key), allowed in CHOICES.items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            shown = sorted(str(a) for a in allowed)
            raise ConfigError(f"{section}.{key}: {value!r} is not one of {shown}")
    for (section, key), (low, inclusive) in BOUNDS.items():
        value = getattr(getattr(cfg, section), key)
        if value is not None and (value < low or (value == low and not inclusive)):
            raise ConfigError(f"{section}.{key}: {value!r} must be {'>=' if inclusive else '>'} {low}")
    f, t = cfg.features, cfg.train
    if f.doc_stride >= f.max_seq_length:
        raise ConfigError(f"features.doc_stride ({f.doc_stride}) must be < max_seq_length ({f.max_seq_length})")
    if cfg.data.split_eval_fraction is not None and cfg.data.split_eval_fraction >= 1:
        raise ConfigError(f"data.split_eval_fraction: {cfg.data.split_eval_fraction!r} must be < 1")
    if t.warmup_ratio >= 1:
        raise ConfigError(f"train.warmup_ratio: {t.warmup_ratio!r} must be < 1 (a fraction of the training steps)")
    if t.max_steps <= 0 and t.num_train_epochs <= 0:
        raise ConfigError(
            f"train.num_train_epochs: {t.num_train_epochs!r} must be > 0 (or set max_steps > 0); nothing would train"
        )
    if t.max_steps == 0 or t.max_steps < -1:
        raise ConfigError(f"train.max_steps: {t.max_steps!r} must be > 0, or -1 for num_train_epochs")
    if t.bf16 and t.fp16:
        raise ConfigError("train.bf16 and train.fp16 are mutually exclusive")
    if t.group_by_length and f.pad_to_max_length:
        raise ConfigError(
            "train.group_by_length: needs features.pad_to_max_length false (padded windows all have the same length)"
        )
    validate_evaluation(t)
    validate_search_space(cfg.tune)
    e = cfg.evaluation
    if e.suite is not None and e.suite not in e.suites:
        known = ", ".join(e.suites) or "none defined"
        raise ConfigError(f"evaluation.suite: {e.suite!r} is not a suite in evaluation.suites ({known})")


# the official scorers' keys a best checkpoint can be chosen by (SQuAD v1.1; v2.0), as run_qa.py offers them
BEST_METRICS = {
    "1.1": ("exact_match", "f1"),
    "2.0": ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_exact", "best_f1"),
}
# the train settings of a run that does not evaluate while training (e.g. a throughput benchmark)
NO_EVALUATION = {"eval_strategy": "no", "eval_steps": None, "load_best_model_at_end": False,
                 "metric_for_best_model": None, "greater_is_better": None, "early_stopping_patience": None,
                 "early_stopping_threshold": 0.0}  # fmt: skip


def best_metric(t: TrainConfig) -> str | None:
    """The metric that picks the best checkpoint (without `eval_`): the setting, else f1 when one is needed."""
    if t.metric_for_best_model is not None:
        return t.metric_for_best_model.removeprefix("eval_")
    return "f1" if t.load_best_model_at_end or t.early_stopping_patience is not None else None


def check_best_metric(t: TrainConfig, squad_version: str, where: str = "train.metric_for_best_model") -> None:
    """The best-checkpoint metric must be one the official scorer of the eval data's version reports."""
    metric = best_metric(t)
    if t.eval_strategy != "no" and metric is not None and metric not in BEST_METRICS[squad_version]:
        raise ConfigError(
            f"{where}: {metric!r} is not an official SQuAD v{squad_version} score (one of "
            f"{', '.join(BEST_METRICS[squad_version])})"
        )


def validate_evaluation(t: TrainConfig) -> None:
    """transformers' rules for in-training evaluation, checked before any model work (one line each)."""
    known = {m for names in BEST_METRICS.values() for m in names}
    metric = best_metric(t)
    if metric is not None and metric not in known:
        raise ConfigError(f"train.metric_for_best_model: {t.metric_for_best_model!r} is not one of {sorted(known)}")
    if t.eval_steps is not None and t.eval_strategy != "steps":
        raise ConfigError(f"train.eval_steps: needs eval_strategy steps (it is {t.eval_strategy!r})")
    if t.eval_strategy == "no":
        for name in ("load_best_model_at_end", "metric_for_best_model", "greater_is_better", "early_stopping_patience"):
            if getattr(t, name) not in (None, False):
                raise ConfigError(f"train.{name}: needs in-training evaluation (eval_strategy steps or epoch)")
    if t.greater_is_better is not None and metric is None:
        raise ConfigError("train.greater_is_better: needs metric_for_best_model (or load_best_model_at_end)")
    if t.early_stopping_threshold and t.early_stopping_patience is None:
        raise ConfigError("train.early_stopping_threshold: needs early_stopping_patience")
    if not t.load_best_model_at_end:
        return
    if t.save_strategy != t.eval_strategy:
        raise ConfigError(
            f"train.load_best_model_at_end: needs save_strategy ({t.save_strategy!r}) == eval_strategy "
            f"({t.eval_strategy!r}): the best model is a saved checkpoint"
        )
    eval_steps = t.eval_steps or t.logging_steps
    if t.eval_strategy == "steps" and t.save_steps % eval_steps:
        raise ConfigError(
            f"train.load_best_model_at_end: save_steps ({t.save_steps}) must be a multiple of eval_steps ({eval_steps})"
        )


def _check_range(name: str, values: list, low: float, high: float | None = None) -> None:
    """`values` is `[low, high]` with `low <= high`, both within [low, high) of the parameter."""
    if len(values) != 2 or values[0] > values[1]:
        raise ConfigError(f"tune.{name}: {values!r} must be [low, high] with low <= high")
    if values[0] < low or (high is not None and values[1] >= high):
        bound = f">= {low}" + (f" and < {high}" if high is not None else "")
        raise ConfigError(f"tune.{name}: {values!r} must lie {bound}")


def validate_search_space(tune: TuneConfig) -> None:
    """The `tune` ranges: well-formed and within what the train/features sections accept."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", tune.study_name):
        raise ConfigError(f"tune.study_name: {tune.study_name!r} must be letters, digits, '.', '_' or '-'")
    if len(tune.learning_rate_range) == 2 and tune.learning_rate_range[0] <= 0:
        raise ConfigError(f"tune.learning_rate_range: {tune.learning_rate_range!r} must be > 0 (log scale)")
    _check_range("learning_rate_range", tune.learning_rate_range, 0)
    _check_range("epochs_range", tune.epochs_range, 1)
    _check_range("warmup_ratio_range", tune.warmup_ratio_range, 0, 1)
    if not tune.batch_size_choices or min(tune.batch_size_choices) < 1:
        raise ConfigError(f"tune.batch_size_choices: {tune.batch_size_choices!r} must be one or more sizes >= 1")
    if not tune.window_choices:
        raise ConfigError("tune.window_choices: must name one or more [max_seq_length, doc_stride] pairs")
    for pair in tune.window_choices:
        if len(pair) != 2 or pair[0] < 8 or not 0 <= pair[1] < pair[0]:
            raise ConfigError(
                f"tune.window_choices: {pair!r} must be [max_seq_length >= 8, doc_stride] with 0 <= doc_stride < "
                "max_seq_length"
            )
