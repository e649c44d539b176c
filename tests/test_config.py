"""`tasks.core.config`: defaults ← params.yaml ← overrides, typed coercion, validation and params.yaml persistence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tasks.core.config import (
    ConfigError,
    QAFlowConfig,
    best_metric,
    check_best_metric,
    load_config,
    save_params,
    validate,
)
from tasks.core.params_file import persist_stage_overrides
from tests.conftest import REPO_ROOT


def write_params(tmp_path: Path, params: dict[str, Any] | str) -> Path:
    """`params` (a mapping, or raw YAML text) written to `tmp_path/params.yaml`."""
    path = tmp_path / "params.yaml"
    path.write_text(params if isinstance(params, str) else yaml.safe_dump(params), encoding="utf-8")
    return path


# --- load_config: sources and precedence


def test_defaults_when_no_params_file(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "missing.yaml")
    assert cfg == QAFlowConfig()
    assert cfg.model.model_name_or_path == "minilm"
    assert (cfg.features.max_seq_length, cfg.features.doc_stride) == (384, 128)
    assert cfg.train.learning_rate == 3e-5
    assert load_config(None) == QAFlowConfig()


def test_params_file_overrides_defaults(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"features": {"max_seq_length": 256, "doc_stride": 64}, "train": {"seed": 7}})
    cfg = load_config(path)
    assert (cfg.features.max_seq_length, cfg.features.doc_stride) == (256, 64)
    assert cfg.train.seed == 7
    assert cfg.train.learning_rate == 3e-5  # untouched keys keep their defaults


def test_empty_file_and_empty_section_give_defaults(tmp_path: Path) -> None:
    assert load_config(write_params(tmp_path, "")) == QAFlowConfig()
    assert load_config(write_params(tmp_path, "features:\n")) == QAFlowConfig()


def test_flat_and_dotted_overrides_find_their_section(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train": {"learning_rate": 1e-4}})
    assert load_config(path, {"learning_rate": 5e-5}).train.learning_rate == 5e-5
    assert load_config(path, {"train.learning_rate": 2e-5}).train.learning_rate == 2e-5
    cfg = load_config(path, {"max_seq_length": "192", "features.doc_stride": "48", "n_best_size": 5})
    assert (cfg.features.max_seq_length, cfg.features.doc_stride) == (192, 48)
    assert cfg.postprocess.n_best_size == 5
    assert cfg.train.learning_rate == 1e-4  # the file's value where no override applies


# --- errors name where and what


def test_unknown_section_in_file(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"trian": {"seed": 1}})
    with pytest.raises(ConfigError, match=r"params\.yaml.*unknown section 'trian'"):
        load_config(path)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"train": {"learnin_rate": 1}})
    with pytest.raises(ConfigError, match=r"params\.yaml.*'train\.learnin_rate'"):
        load_config(path)


def test_unknown_override_key() -> None:
    with pytest.raises(ConfigError, match="learnin_rate"):
        load_config(None, {"learnin_rate": 1})
    with pytest.raises(ConfigError, match=r"override.*'train\.learnin_rate'"):
        load_config(None, {"train.learnin_rate": 1})


def test_unknown_flat_override_names_override() -> None:
    with pytest.raises(ConfigError, match=r"override.*learnin_rate"):
        load_config(None, {"learnin_rate": 1})


def test_unknown_override_section_is_config_error() -> None:
    with pytest.raises(ConfigError, match="bogus"):
        load_config(None, {"bogus.seed": 1})


def test_non_mapping_section_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train"):
        load_config(write_params(tmp_path, "train: 5\n"))


@pytest.mark.parametrize(
    ("section", "key", "value", "type_name"),
    [
        ("features", "max_seq_length", "abc", "int"),
        ("features", "max_seq_length", 1.5, "int"),
        ("features", "max_seq_length", True, "int"),
        ("train", "learning_rate", "fast", "float"),
        ("train", "bf16", "maybe", "bool"),
    ],
)
def test_bad_type_in_file_names_file_and_key(
    tmp_path: Path, section: str, key: str, value: Any, type_name: str
) -> None:
    path = write_params(tmp_path, {section: {key: value}})
    with pytest.raises(ConfigError, match=rf"params\.yaml: {section}\.{key}: cannot read .* as {type_name}"):
        load_config(path)


def test_bad_type_in_override_names_override_and_key() -> None:
    with pytest.raises(ConfigError, match=r"override: features\.max_seq_length: cannot read 'abc' as int"):
        load_config(None, {"max_seq_length": "abc"})
    with pytest.raises(ConfigError, match=r"override: train\.fp16"):
        load_config(None, {"fp16": "maybe"})


def test_non_optional_field_rejects_null(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.seed: must not be null"):
        load_config(write_params(tmp_path, "train:\n  seed: null\n"))


# --- coercion


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("True", True), ("1", True), ("yes", True), ("false", False), ("0", False), ("off", False)],
)
def test_bool_strings(text: str, expected: bool) -> None:
    assert load_config(None, {"pad_to_max_length": text}).features.pad_to_max_length is expected


def test_integral_float_and_numeric_strings() -> None:
    cfg = load_config(None, {"max_seq_length": 256.0, "learning_rate": "1e-4", "num_train_epochs": "3"})
    assert cfg.features.max_seq_length == 256 and isinstance(cfg.features.max_seq_length, int)
    assert cfg.train.learning_rate == 1e-4
    assert cfg.train.num_train_epochs == 3.0 and isinstance(cfg.train.num_train_epochs, float)


@pytest.mark.parametrize("text", ["none", "null", "None", "NULL", ""])
def test_optional_fields_accept_none_strings(tmp_path: Path, text: str) -> None:
    path = write_params(tmp_path, {"data": {"max_train_samples": 10}, "model": {"tokenizer_name": "tok"}})
    cfg = load_config(path, {"max_train_samples": text, "tokenizer_name": text})
    assert cfg.data.max_train_samples is None
    assert cfg.model.tokenizer_name is None


def test_optional_field_keeps_a_value() -> None:
    cfg = load_config(None, {"max_train_samples": "16", "version_2_with_negative": "true"})
    assert cfg.data.max_train_samples == 16
    assert cfg.postprocess.version_2_with_negative is True


def test_list_field_from_yaml_string_and_list(tmp_path: Path) -> None:
    assert load_config(None, {"layers_per_ipu": "[0, 4, 4, 4]"}).ipu.layers_per_ipu == [0, 4, 4, 4]
    assert load_config(None, {"ipu.layers_per_ipu": ["1", 2]}).ipu.layers_per_ipu == [1, 2]
    assert load_config(write_params(tmp_path, {"ipu": {"layers_per_ipu": [3, 3]}})).ipu.layers_per_ipu == [3, 3]
    assert load_config(None, {"layers_per_ipu": "null"}).ipu.layers_per_ipu is None
    with pytest.raises(ConfigError, match=r"ipu\.layers_per_ipu"):
        load_config(None, {"layers_per_ipu": "[1, x]"})


# --- validation


def test_validate_doc_stride_must_be_below_max_seq_length() -> None:
    with pytest.raises(ConfigError, match=r"doc_stride \(128\) must be < max_seq_length \(128\)"):
        load_config(None, {"max_seq_length": 128})
    cfg = QAFlowConfig()
    cfg.features.doc_stride = 500
    with pytest.raises(ConfigError, match="doc_stride"):
        validate(cfg)
    load_config(None, {"max_seq_length": 129})  # one above the stride is fine


def test_validate_bf16_and_fp16_exclusive() -> None:
    with pytest.raises(ConfigError, match="mutually exclusive"):
        load_config(None, {"bf16": True, "fp16": "true"})
    assert load_config(None, {"bf16": True}).train.bf16 is True


@pytest.mark.parametrize(("key", "value"), [("backend", "tpu"), ("bad_record_policy", "ignore")])
def test_validate_choices(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"{key}: '{value}' is not one of"):
        load_config(None, {key: value})


def test_model_family_is_checked_by_the_registry_not_the_config() -> None:
    """Families are pluggable (tasks.families.registry), so the config accepts any name; resolution refuses it."""
    assert load_config(None, {"model_family": "first-token"}).model.model_family == "first-token"


def test_validate_accepts_defaults() -> None:
    validate(QAFlowConfig())  # must not raise


def test_in_training_evaluation_follows_transformers_rules() -> None:
    steps = {"eval_strategy": "steps", "save_steps": 20, "logging_steps": 10}
    cfg = load_config(None, {**steps, "load_best_model_at_end": True})  # eval_steps default: logging_steps
    assert best_metric(cfg.train) == "f1"  # qaflow's default: there is no eval loss to fall back on
    assert load_config(None, {**steps, "eval_steps": 5, "load_best_model_at_end": True}).train.eval_steps == 5
    with pytest.raises(ConfigError, match=r"save_steps \(20\) must be a multiple of eval_steps \(15\)"):
        load_config(None, {**steps, "eval_steps": 15, "load_best_model_at_end": True})
    with pytest.raises(ConfigError, match="needs save_strategy"):
        load_config(None, {"eval_strategy": "epoch", "load_best_model_at_end": True})
    epoch = load_config(None, {"eval_strategy": "epoch", "save_strategy": "epoch", "load_best_model_at_end": True})
    assert epoch.train.load_best_model_at_end
    with pytest.raises(ConfigError, match="early_stopping_threshold: needs early_stopping_patience"):
        load_config(None, {**steps, "early_stopping_threshold": 0.5})
    with pytest.raises(ConfigError, match="early_stopping_patience: 0 must be >= 1"):
        load_config(None, {**steps, "early_stopping_patience": 0})
    assert best_metric(load_config(None, {**steps, "early_stopping_patience": 2}).train) == "f1"
    assert best_metric(load_config(None, steps).train) is None  # nothing picks a best checkpoint


def test_best_metric_is_an_official_score_of_the_data_version() -> None:
    train = load_config(None, {"eval_strategy": "steps", "metric_for_best_model": "eval_HasAns_f1"}).train
    assert best_metric(train) == "HasAns_f1"
    check_best_metric(train, "2.0")
    with pytest.raises(ConfigError, match=r"'HasAns_f1' is not an official SQuAD v1.1 score \(one of exact_match"):
        check_best_metric(train, "1.1")
    exact_match = load_config(None, {"eval_strategy": "steps", "metric_for_best_model": "exact_match"}).train
    with pytest.raises(ConfigError, match="v2.0 score"):  # the v2 scorer calls it `exact`
        check_best_metric(exact_match, "2.0")


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write_params(tmp_path, "- a\n- b\n")
    with pytest.raises(ConfigError, match=r"params\.yaml: top level must be a mapping"):
        load_config(path)


def test_invalid_yaml(tmp_path: Path) -> None:
    path = write_params(tmp_path, "train: {learning_rate: [1, 2\n")
    with pytest.raises(ConfigError, match=r"params\.yaml: not valid YAML"):
        load_config(path)


# --- persist_stage_overrides / save_params


def test_persist_stage_overrides_writes_dvc_sections_only(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"features": {"max_seq_length": 384}, "train": {"seed": 1}})
    changed = persist_stage_overrides(
        path,
        {"max_seq_length": "256", "model.model_name_or_path": "other", "max_train_samples": 8, "learning_rate": 1e-4},
    )
    assert changed == {"features.max_seq_length": 256, "model.model_name_or_path": "other", "data.max_train_samples": 8}
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert raw["features"]["max_seq_length"] == 256  # typed, not the string
    assert raw["model"] == {"model_name_or_path": "other"}
    assert raw["data"] == {"max_train_samples": 8}
    assert raw["train"] == {"seed": 1}  # train overrides stay in memory
    assert load_config(path).features.max_seq_length == 256


def test_persist_stage_overrides_no_change_writes_nothing(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"features": {"max_seq_length": 256}})
    before = path.read_bytes()
    stat = path.stat()
    assert persist_stage_overrides(path, {"max_seq_length": 256, "doc_stride": 128, "learning_rate": 1.0}) == {}
    assert path.read_bytes() == before
    assert path.stat().st_ino == stat.st_ino  # not even rewritten with the same content
    assert persist_stage_overrides(path, None) == {}


def test_persist_stage_overrides_creates_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    assert persist_stage_overrides(path, {"seed": 3}) == {}
    assert not path.exists()
    assert persist_stage_overrides(path, {"doc_stride": 64}) == {"features.doc_stride": 64}
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == {"features": {"doc_stride": 64}}


def test_persist_stage_overrides_rejects_bad_values(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"features": {"max_seq_length": 256}})
    with pytest.raises(ConfigError, match=r"override: features\.max_seq_length"):
        persist_stage_overrides(path, {"max_seq_length": "abc"})
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == {"features": {"max_seq_length": 256}}


def test_persist_stage_overrides_into_empty_section(tmp_path: Path) -> None:
    path = write_params(tmp_path, "features:\n")
    assert persist_stage_overrides(path, {"max_seq_length": 256}) == {"features.max_seq_length": 256}


def test_persist_stage_overrides_unknown_dotted_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="bogus"):
        persist_stage_overrides(write_params(tmp_path, ""), {"features.bogus": 1})


def test_save_params_round_trips(tmp_path: Path) -> None:
    cfg = load_config(
        None,
        {"max_seq_length": 256, "learning_rate": 1e-4, "tokenizer_name": "tok", "layers_per_ipu": "[1, 2]",
         "version_2_with_negative": True, "max_train_samples": 5},
    )  # fmt: skip
    path = tmp_path / "run" / "params.yaml"
    path.parent.mkdir()
    save_params(cfg, path)
    assert load_config(path) == cfg
    assert load_config(path) != QAFlowConfig()


def test_persist_stage_overrides_keeps_comments_and_layout(tmp_path: Path) -> None:
    """Only the overridden values change: every comment, key order, blank line and `null` stays as written."""
    path = tmp_path / "params.yaml"
    path.write_text((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    before = path.read_text(encoding="utf-8").splitlines()
    changed = persist_stage_overrides(path, {"max_seq_length": "256", "data.max_eval_samples": 7, "seed": 3})
    assert changed == {"features.max_seq_length": 256, "data.max_eval_samples": 7}
    after = path.read_text(encoding="utf-8").splitlines()
    assert len(after) == len(before)
    differ = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert [new.split("#")[0].strip() for _, new in differ] == ["max_eval_samples: 7", "max_seq_length: 256"]
    assert all(old.split(":")[0] == new.split(":")[0] for old, new in differ)
    assert load_config(path).features.max_seq_length == 256
