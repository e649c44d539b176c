"""Model-family inference, the mismatch errors, and loading each family's model class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForQuestionAnswering,
    BartConfig,
    BertConfig,
    T5Config,
    T5ForConditionalGeneration,
    XLNetConfig,
    XLNetForQuestionAnswering,
    XLNetForQuestionAnsweringSimple,
)

from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import QAFlowConfig
from tasks.core.data import load_dataset_file
from tasks.core.layout import TrainPaths
from tasks.core.model_spec import ModelSpec
from tasks.core.scoring import score_dataset
from tasks.core.specs import inference_recipe
from tasks.families.featurizers import FEATURIZERS, resolve_featurizer
from tasks.families.registry import FAMILIES, get_family, infer_family, resolve_family
from tasks.families.seq2seq_features import Seq2SeqFeatures, load_seq2seq_features
from tasks.pipeline.featurize import build_train_features
from tasks.pipeline.training import train_family
from tests.family_helpers import TRAIN_METRIC_KEYS, load_model, predict
from tests.tiny_models import SAMPLE_DEV_V2, cached_model_dir

TINY_XLNET = {"vocab_size": 64, "d_model": 16, "n_layer": 1, "n_head": 2, "d_inner": 32}
TINY_T5 = {"vocab_size": 64, "d_model": 16, "d_kv": 8, "d_ff": 32, "num_layers": 1, "num_heads": 2}


def xlnet_config(architecture: str | None) -> XLNetConfig:
    return XLNetConfig(**TINY_XLNET, architectures=[architecture] if architecture else None)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny random checkpoints (weights + config, no tokenizer) of each kind."""
    base = tmp_path_factory.mktemp("families")
    out = {
        "t5": base / "t5",
        "xlnet-beam": base / "xlnet-beam",
        "xlnet-simple": base / "xlnet-simple",
        "bert": base / "bert",
    }
    T5ForConditionalGeneration(T5Config(**TINY_T5)).save_pretrained(out["t5"])
    XLNetForQuestionAnswering(XLNetConfig(**TINY_XLNET)).save_pretrained(out["xlnet-beam"])
    XLNetForQuestionAnsweringSimple(XLNetConfig(**TINY_XLNET)).save_pretrained(out["xlnet-simple"])
    out["bert"].mkdir()
    BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(out["bert"])
    return out


@pytest.mark.parametrize(
    ("config", "family"),
    [
        (T5Config(**TINY_T5, architectures=["T5ForConditionalGeneration"]), "seq2seq"),
        (T5Config(**TINY_T5), "seq2seq"),
        (xlnet_config("XLNetForQuestionAnswering"), "beam"),
        (xlnet_config("XLNetForQuestionAnsweringSimple"), "extractive"),
        (xlnet_config("XLNetLMHeadModel"), "extractive"),
        (xlnet_config(None), "extractive"),
        (BertConfig(architectures=["BertForQuestionAnswering"]), "extractive"),
        (BartConfig(architectures=["BartForQuestionAnswering"]), "extractive"),
        (BartConfig(architectures=["BartForConditionalGeneration"]), "seq2seq"),
    ],
)
def test_infer_family_from_config(config, family: str) -> None:
    assert infer_family(config) == family


def test_infer_family_from_dict_and_directories(checkpoints: dict[str, Path]) -> None:
    assert infer_family({"model_type": "t5", "is_encoder_decoder": True}) == "seq2seq"
    beam_dict = {"model_type": "xlnet", "architectures": ["XLNetForQuestionAnswering"], "start_n_top": 5}
    assert infer_family(beam_dict) == "beam"
    assert infer_family(checkpoints["t5"]) == "seq2seq"
    assert infer_family(str(checkpoints["xlnet-beam"])) == "beam"
    assert infer_family(checkpoints["xlnet-simple"]) == "extractive"
    assert infer_family(checkpoints["bert"]) == "extractive"


def test_beam_needs_an_xlnet_config() -> None:
    assert infer_family(BertConfig(architectures=["XLNetForQuestionAnswering"])) == "extractive"
    assert infer_family({"architectures": ["XLNetForQuestionAnswering"]}) == "extractive"


def test_resolve_auto_and_matching_requests(checkpoints: dict[str, Path]) -> None:
    assert resolve_family("auto", checkpoints["t5"]).name == "seq2seq"
    assert resolve_family("auto", checkpoints["xlnet-beam"]).name == "beam"
    assert resolve_family("seq2seq", checkpoints["t5"]).name == "seq2seq"
    assert resolve_family("extractive", checkpoints["bert"]).name == "extractive"
    # a pretrained XLNet language model may be fine-tuned either way
    assert resolve_family("beam", xlnet_config("XLNetLMHeadModel")).name == "beam"
    assert resolve_family("extractive", xlnet_config("XLNetLMHeadModel")).name == "extractive"


def test_featurizers_resolve_as_the_families_do(checkpoints: dict[str, Path]) -> None:
    """The featurize stage resolves with the featurizers (no model code): the same names, order and choices."""
    assert [f.name for f in FEATURIZERS] == [f.name for f in FAMILIES]
    for featurizer, family in zip(FEATURIZERS, FAMILIES, strict=True):
        assert isinstance(family, type(featurizer))  # a family is its featurizer plus the model side
        assert family.windowed == featurizer.windowed
        assert getattr(family, "train_offsets", None) == getattr(featurizer, "train_offsets", None)
    for requested, kind in [("auto", "t5"), ("auto", "xlnet-beam"), ("auto", "bert"), ("extractive", "xlnet-simple")]:
        model = checkpoints[kind]
        assert resolve_featurizer(requested, model).name == resolve_family(requested, model).name
    with pytest.raises(ValueError, match="use model_family: beam"):
        resolve_featurizer("extractive", checkpoints["xlnet-beam"])


def test_seq2seq_checkpoint_asked_for_extractive_names_the_fix(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ValueError) as err:
        resolve_family("extractive", checkpoints["t5"])
    message = str(err.value)
    assert str(checkpoints["t5"]) in message
    assert "is an encoder-decoder (t5)" in message
    assert "model_family 'extractive' needs an encoder with a span head" in message
    assert message.endswith("use model_family: seq2seq")
    with pytest.raises(ValueError, match="use model_family: seq2seq"):
        resolve_family("beam", checkpoints["t5"])


@pytest.mark.parametrize(
    ("requested", "kind", "fix"),
    [
        ("seq2seq", "bert", "use model_family: extractive"),
        ("beam", "bert", "use model_family: extractive"),
        ("seq2seq", "xlnet-beam", "use model_family: beam"),
        ("extractive", "xlnet-beam", "use model_family: beam"),
        ("beam", "xlnet-simple", "use model_family: extractive"),
    ],
)
def test_mismatches_raise(checkpoints: dict[str, Path], requested: str, kind: str, fix: str) -> None:
    with pytest.raises(ValueError, match=fix):
        resolve_family(requested, checkpoints[kind])


def test_unknown_family_is_rejected(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="not one of"):
        resolve_family("generative", checkpoints["t5"])
    with pytest.raises(ValueError, match="not one of"):
        get_family("generative")


def test_load_model_classes(checkpoints: dict[str, Path]) -> None:
    assert type(load_model("seq2seq", checkpoints["t5"])) is T5ForConditionalGeneration
    assert type(load_model("beam", checkpoints["xlnet-beam"])) is XLNetForQuestionAnswering
    # why beam loads explicitly: the Auto class gives the simple span head for the same checkpoint
    assert type(load_model("extractive", checkpoints["xlnet-beam"])) is XLNetForQuestionAnsweringSimple
    with pytest.raises(ValueError, match="needs an XLNet checkpoint"):
        load_model("beam", checkpoints["bert"])


@pytest.fixture(scope="session")
def t5_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_model_dir("t5", tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def xlnet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cached_model_dir("xlnet", tmp_path_factory.getbasetemp())


@pytest.mark.parametrize("kind", ["bert", "xlnet", "t5"])
def test_train_and_predict_dispatch_by_family(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """`auto` picks the family from the checkpoint; features, training and prediction follow it end to end."""
    model_dir = request.getfixturevalue({"bert": "tiny_bert_dir", "xlnet": "xlnet_dir", "t5": "t5_dir"}[kind])
    expected = {"bert": "extractive", "xlnet": "beam", "t5": "seq2seq"}[kind]
    cfg = QAFlowConfig()
    cfg.model.model_name_or_path = str(model_dir)
    cfg.features.max_seq_length, cfg.features.doc_stride = 96, 32
    cfg.train.max_steps, cfg.train.per_device_train_batch_size, cfg.train.save_steps = 2, 4, 100
    family = resolve_family(cfg.model.model_family, model_dir)
    assert family.name == expected
    tokenizer = load_tokenizer(str(model_dir))
    train = load_dataset_file(SAMPLE_DEV_V2, max_samples=8)
    features = build_train_features(cfg, family, train.examples, tokenizer)
    path = family.save_train_features(features, tmp_path / "features.npz")
    if family.name == "seq2seq":
        again = load_seq2seq_features(path)
        assert isinstance(features, Seq2SeqFeatures) and again.truncated == features.truncated
        np.testing.assert_array_equal(again.labels, features.labels)
    result = train_family(cfg, family, ModelSpec.from_config(cfg), path, "cpu", TrainPaths(tmp_path / "out"))
    assert set(TRAIN_METRIC_KEYS) <= set(result.metrics)
    dev = load_dataset_file(SAMPLE_DEV_V2, max_samples=6)
    model = load_model(family.name, result.model_dir)
    recipe = inference_recipe(cfg, family.name, "2.0")
    run = predict(family.name, model, tokenizer, dev.examples, recipe, tmp_path / "pred")
    assert set(run.predictions) == {ex.id for ex in dev.examples} and run.files["nbest"].exists()
    metrics = score_dataset(dev, run.predictions, run.null_odds)
    assert {"exact", "f1", "HasAns_exact", "NoAns_exact", "best_f1"} <= set(metrics)


def test_families_load_float32_master_weights_from_a_bf16_checkpoint(tiny_bert_dir: Path, tmp_path: Path) -> None:
    """transformers 5 keeps a bf16 checkpoint in bf16; training needs fp32 weights (bf16 runs as autocast)."""
    bf16_dir = tmp_path / "bf16"
    AutoModelForQuestionAnswering.from_pretrained(tiny_bert_dir).to(torch.bfloat16).save_pretrained(bf16_dir)
    assert next(AutoModelForQuestionAnswering.from_pretrained(bf16_dir).parameters()).dtype == torch.bfloat16
    model = get_family("extractive").load_model(str(bf16_dir))
    assert {p.dtype for p in model.parameters()} == {torch.float32}
