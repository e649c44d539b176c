"""The one configuration object: built from `params.yaml` plus command-line/flow overrides, passed down.

Field names follow Hugging Face `run_qa.py` so users keep their habits (`--max_seq_length`, `--doc_stride`,
`--per_device_train_batch_size`, ...). Every field name is unique across sections, so a flat override
`{"learning_rate": 3e-5}` finds its section without ambiguity.

The rooms: `sections` (the dataclasses and ConfigError), `help_text` (each field's help), `loading` (params.yaml
and overrides, type coercion, suites, `load_config`, `save_params`), `validation` (choices, bounds and the rules
between fields). This package re-exports the public names, so callers import from `tasks.core.config`.
"""

from tasks.core.config.help_text import HELP
from tasks.core.config.loading import coerce, field_types, load_config, owner_of, parse_suites, save_params
from tasks.core.config.sections import (
    RUN_SECTIONS,
    SECTIONS,
    TUNE_SECTION,
    ConfigError,
    DataConfig,
    EvaluationConfig,
    FeatureConfig,
    IPUSettings,
    ModelConfig,
    PostprocessConfig,
    QAFlowConfig,
    SuiteMember,
    TrackingConfig,
    TrainConfig,
    TuneConfig,
)
from tasks.core.config.validation import (
    BEST_METRICS,
    BOUNDS,
    CHOICES,
    NO_EVALUATION,
    best_metric,
    check_best_metric,
    validate,
    validate_evaluation,
    validate_search_space,
)

__all__ = [
    "BEST_METRICS",
    "BOUNDS",
    "CHOICES",
    "HELP",
    "NO_EVALUATION",
    "RUN_SECTIONS",
    "SECTIONS",
    "TUNE_SECTION",
    "ConfigError",
    "DataConfig",
    "EvaluationConfig",
    "FeatureConfig",
    "IPUSettings",
    "ModelConfig",
    "PostprocessConfig",
    "QAFlowConfig",
    "SuiteMember",
    "TrackingConfig",
    "TrainConfig",
    "TuneConfig",
    "best_metric",
    "check_best_metric",
    "coerce",
    "field_types",
    "load_config",
    "owner_of",
    "parse_suites",
    "save_params",
    "validate",
    "validate_evaluation",
    "validate_search_space",
]
