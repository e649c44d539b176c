"""What a search needs before its first trial: settings it would ignore refused, the backend trials train on, both
splits loaded once, and every window choice checked against their questions."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import ConfigError, QAFlowConfig
from tasks.core.data import QADataset
from tasks.core.features import feature_settings, fit_questions
from tasks.core.model_spec import ModelSpec
from tasks.families.registry import resolve_family
from tasks.pipeline.stages import load_split
from tasks.train.hardware import HardwareBackend, Launch, backend_for

# the parameters a trial sets (flat config names); overriding them for `qaflow tune` would do nothing
SEARCHED = ("learning_rate", "per_device_train_batch_size", "num_train_epochs", "warmup_ratio", "max_seq_length",
            "doc_stride")  # fmt: skip


@dataclass
class TuneData:
    """Both splits, loaded and checked once before the search starts."""

    train: QADataset
    eval: QADataset


def check_tunable(cfg: QAFlowConfig, overrides: Mapping[str, Any] | None) -> HardwareBackend:
    """Settings the search would silently ignore are refused (one ConfigError line); the backend trials train on."""
    searched = sorted(set(SEARCHED) & {key.rpartition(".")[2] for key in overrides or {}})
    if searched:
        raise ConfigError(f"override: {searched[0]} is searched by tune; set its range in the tune section instead")
    if "output_dir" in {key.rpartition(".")[2] for key in overrides or {}}:
        raise ConfigError("override: output_dir is set by tune (each trial trains in outputs/tune/<study>/trial-NNN)")
    if cfg.train.max_steps > 0:
        raise ConfigError(f"train.max_steps: {cfg.train.max_steps} must be -1 for tune (num_train_epochs is searched)")
    if cfg.train.eval_strategy != "no":
        raise ConfigError("train.eval_strategy: tune scores each epoch itself (tune.pruning_eval_samples); use no")
    backend = backend_for(cfg)
    if not backend.launcher(Launch()).trains_here:
        raise ConfigError(
            f"train.backend: {backend.name} trains outside this process; tune's pruning runs inside the Trainer "
            "(use a backend that trains in process, e.g. cpu or cuda)"
        )
    return backend


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
