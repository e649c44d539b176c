"""`tasks.core.specs` and `tasks.core.model_spec`: the resolved model spec and the inference recipe stored with every
model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.core.config import load_config
from tasks.core.features import FeatureSettings
from tasks.core.model_spec import ModelSpec
from tasks.core.postprocess import NBestSettings
from tasks.core.specs import RECIPE_FILE, RECIPE_FORMAT, GenerationSettings, InferenceRecipe, inference_recipe

RECIPE = InferenceRecipe(
    family="seq2seq",
    windows=FeatureSettings(256, 64, False),
    nbest=NBestSettings(5, 12, True, 1.5),
    generation=GenerationSettings(16, 4),
    batch_size=8,
    null_answers=True,
)


# --- ModelSpec


def test_model_spec_tokenizer_falls_back_to_model() -> None:
    spec = ModelSpec.from_config(load_config(None, {"model_name_or_path": "some/hub-id", "model_family": "beam"}))
    assert (spec.name_or_path, spec.path) == ("some/hub-id", "some/hub-id")  # not local: passed through
    assert (spec.tokenizer_name, spec.tokenizer_path) == ("some/hub-id", "some/hub-id")
    assert spec.family == "beam"


def test_model_spec_explicit_tokenizer(tmp_path: Path) -> None:
    tok = tmp_path / "tok"
    tok.mkdir()
    spec = ModelSpec.from_config(load_config(None, {"model_name_or_path": "some/hub-id", "tokenizer_name": str(tok)}))
    assert spec.path == "some/hub-id"
    assert spec.tokenizer_name == str(tok)
    assert spec.tokenizer_path == str(tok.resolve())
    assert spec.family == "auto"


def test_model_spec_minilm_alias_resolves_to_a_directory() -> None:
    spec = ModelSpec.from_config(load_config(None))
    assert spec.name_or_path == "minilm" and spec.tokenizer_name == "minilm"
    assert Path(spec.path).is_dir() and (Path(spec.path) / "config.json").is_file()
    assert spec.tokenizer_path == spec.path


def test_model_spec_local_directory_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ckpt").mkdir()
    monkeypatch.chdir(tmp_path)
    spec = ModelSpec.from_config(load_config(None, {"model_name_or_path": "ckpt"}))
    assert spec.name_or_path == "ckpt"
    assert Path(spec.path).is_absolute() and spec.path == str((tmp_path / "ckpt").resolve())
    assert spec.tokenizer_path == spec.path


def test_model_spec_of_checkpoint(tmp_path: Path) -> None:
    spec = ModelSpec.of_checkpoint(tmp_path, family="extractive")
    assert spec.name_or_path == spec.tokenizer_name == str(tmp_path)
    assert spec.path == spec.tokenizer_path == str(tmp_path.resolve())
    assert spec.family == "extractive"


# --- InferenceRecipe persistence


def test_recipe_round_trip_directory_and_file(tmp_path: Path) -> None:
    written = RECIPE.save(tmp_path)
    assert written == tmp_path / RECIPE_FILE
    raw = json.loads(written.read_text(encoding="utf-8"))
    assert raw["format"] == RECIPE_FORMAT and raw["windows"]["max_seq_length"] == 256
    assert InferenceRecipe.load(tmp_path) == RECIPE
    assert InferenceRecipe.load(written) == RECIPE
    assert InferenceRecipe.from_dict(RECIPE.to_dict()) == RECIPE


def test_recipe_load_missing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=RECIPE_FILE):
        InferenceRecipe.load(tmp_path)


def test_recipe_wrong_format_names_file(tmp_path: Path) -> None:
    file = tmp_path / RECIPE_FILE
    file.write_text(json.dumps({**RECIPE.to_dict(), "format": "something/2"}), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{file}: format 'something/2' is not"):
        InferenceRecipe.load(tmp_path)


@pytest.mark.parametrize("missing", ["family", "windows", "nbest", "generation", "batch_size"])
def test_recipe_missing_key_names_file(tmp_path: Path, missing: str) -> None:
    raw = RECIPE.to_dict()
    del raw[missing]
    file = tmp_path / "recipe.json"
    file.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(ValueError, match=rf"{file}: not a complete inference recipe"):
        InferenceRecipe.load(file)


def test_recipe_unknown_nested_key_is_rejected() -> None:
    raw = RECIPE.to_dict()
    raw["windows"]["stride"] = 3
    with pytest.raises(ValueError, match="where.json: not a complete inference recipe"):
        InferenceRecipe.from_dict(raw, "where.json")


def test_recipe_missing_null_answers_means_follow_the_data() -> None:
    raw = RECIPE.to_dict()
    del raw["null_answers"]
    assert InferenceRecipe.from_dict(raw).null_answers is None


# --- for_data_version


@pytest.mark.parametrize(("version", "expected"), [("2.0", True), ("1.1", False)])
def test_for_data_version_follows_the_data(version: str, expected: bool) -> None:
    recipe = InferenceRecipe("extractive", nbest=NBestSettings(version_2_with_negative=not expected))
    adapted = recipe.for_data_version(version)
    assert adapted.nbest.version_2_with_negative is expected
    assert adapted.nbest.n_best_size == recipe.nbest.n_best_size and adapted.family == "extractive"


@pytest.mark.parametrize("configured", [True, False])
@pytest.mark.parametrize("version", ["2.0", "1.1"])
def test_for_data_version_explicit_setting_wins(configured: bool, version: str) -> None:
    recipe = InferenceRecipe("extractive", null_answers=configured)
    assert recipe.for_data_version(version).nbest.version_2_with_negative is configured


# --- inference_recipe from the config


def test_inference_recipe_takes_settings_from_config() -> None:
    cfg = load_config(
        None,
        {"max_seq_length": 200, "doc_stride": 50, "pad_to_max_length": False, "n_best_size": 7,
         "max_answer_length": 25, "null_score_diff_threshold": 0.5, "num_beams": 3,
         "per_device_eval_batch_size": 16, "per_device_train_batch_size": 2},
    )  # fmt: skip
    recipe = inference_recipe(cfg, "seq2seq", "1.1")
    assert recipe.family == "seq2seq"
    assert recipe.windows == FeatureSettings(200, 50, False)
    assert recipe.nbest == NBestSettings(7, 25, False, 0.5)
    assert recipe.generation == GenerationSettings(max_new_tokens=25, num_beams=3)  # falls back to max_answer_length
    assert recipe.batch_size == 16
    assert recipe.null_answers is None
    assert inference_recipe(cfg, "seq2seq", "2.0").nbest.version_2_with_negative is True


def test_inference_recipe_val_max_answer_length_and_explicit_null_answers() -> None:
    cfg = load_config(None, {"val_max_answer_length": 9, "max_answer_length": 25, "version_2_with_negative": False})
    recipe = inference_recipe(cfg, "seq2seq", "2.0")
    assert recipe.generation.max_new_tokens == 9
    assert recipe.nbest.max_answer_length == 25
    assert recipe.null_answers is False and recipe.nbest.version_2_with_negative is False


# --- validation


@pytest.mark.parametrize(("max_new_tokens", "num_beams"), [(0, 1), (1, 0), (-3, 2)])
def test_generation_settings_reject_values_below_one(max_new_tokens: int, num_beams: int) -> None:
    with pytest.raises(ValueError, match=">= 1"):
        GenerationSettings(max_new_tokens, num_beams)


def test_recipe_rejects_batch_size_below_one() -> None:
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        InferenceRecipe("extractive", batch_size=0)
    assert InferenceRecipe("extractive", batch_size=1).batch_size == 1


def test_recipe_from_dict_rejects_bad_generation() -> None:
    raw = RECIPE.to_dict()
    raw["generation"]["num_beams"] = 0
    with pytest.raises(ValueError, match="num_beams"):
        InferenceRecipe.from_dict(raw)
