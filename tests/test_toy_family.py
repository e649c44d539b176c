"""Adding a model family is one module plus one registry line: a toy "first-token baseline" family, end to end.

The family below is the whole of the new code (in a real project: `tasks/families/first_token.py` plus one entry
in `FAMILIES`); registering it is the one line. It trains nothing new — it reuses the extractive windows and
collator — and answers every question with the first word of the context, a classic QA baseline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoModelForQuestionAnswering, Trainer, TrainingArguments

from tasks.core.config import QAFlowConfig
from tasks.core.data import Example, load_dataset_file
from tasks.core.features import Features, load_features, prepare_train_features, save_features
from tasks.core.featurizer import TrainFeatureSpec
from tasks.core.postprocess import Postprocessed
from tasks.core.specs import InferenceRecipe
from tasks.families import featurizers, registry
from tasks.families.extractive import FeatureCollator
from tasks.pipeline.prediction import predict_from_config
from tests.tiny_models import SAMPLE_DEV_V1

TOY_ARCHITECTURE = "FirstTokenBaseline"


class FirstTokenFamily:
    """Answers with the context's first whitespace-separated word; claims checkpoints tagged as the baseline."""

    name = "first-token"
    windowed = False
    trainer_class = Trainer
    training_arguments_class = TrainingArguments
    packing = None

    def claims(self, config: Any) -> bool:
        return TOY_ARCHITECTURE in (getattr(config, "architectures", None) or [])

    def check(self, config: Any, where: str, inferred: str) -> None:
        return None  # any encoder will do: the baseline ignores the model's outputs

    def load_model(self, path: str) -> Any:
        return AutoModelForQuestionAnswering.from_pretrained(path)

    def train_features(self, examples: Sequence[Example], tokenizer: Any, spec: TrainFeatureSpec) -> Features:
        return prepare_train_features(examples, tokenizer, spec.windows)

    def save_train_features(self, features: Features, path: Path) -> Path:
        return save_features(features, path)

    def load_train_features(self, path: Path) -> Features:
        return load_features(path)

    def collator(self, features: Features, *, dynamic: bool) -> FeatureCollator:
        return FeatureCollator(features, dynamic=dynamic)

    def train_metrics(self, features: Any, collator: Any, runtime: float, world_size: int) -> dict[str, float]:
        return {}

    def eval_features(self, examples: Sequence[Example], tokenizer: Any, recipe: InferenceRecipe) -> list[str]:
        return [ex.context for ex in examples]

    def forward(self, model: Any, features: list[str], recipe: InferenceRecipe, device: Any, tokenizer: Any):
        return [context.split()[0] if context.split() else "" for context in features]

    def postprocess(
        self, examples: Sequence[Example], features: list[str], outputs: list[str], recipe: InferenceRecipe
    ) -> Postprocessed:
        answers = {ex.id: text for ex, text in zip(examples, outputs, strict=True)}
        nbest = {qid: [{"text": text, "probability": 1.0, "score": 0.0}] for qid, text in answers.items()}
        return Postprocessed(predictions=answers, nbest=nbest, null_odds=None)

    def raw_shard(self, examples: Sequence[Example], features: Any, outputs: Any) -> None:
        return None

    def counts(self, features: list[str]) -> dict[str, float]:
        return {"features": float(len(features))}


@pytest.fixture
def toy_family() -> Iterator[FirstTokenFamily]:
    family = FirstTokenFamily()
    registry.register(family)  # the one registry line
    yield family
    registry.unregister(family.name)


def test_registered_family_is_chosen_by_name_and_by_auto(toy_family: FirstTokenFamily, tiny_bert_dir: Path) -> None:
    assert "first-token" in registry.family_names()
    assert registry.resolve_family("first-token", tiny_bert_dir) is toy_family
    config = {"model_type": "bert", "architectures": [TOY_ARCHITECTURE]}
    assert registry.infer_family(config) == "first-token"  # `auto` asks the new family first
    assert registry.infer_family(tiny_bert_dir) == "extractive"  # the built-ins are untouched
    assert featurizers.resolve_featurizer("auto", config) is toy_family  # `featurize` builds its features too


def test_toy_family_predicts_and_scores_through_the_pipeline(
    toy_family: FirstTokenFamily, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    cfg = QAFlowConfig()
    cfg.model.model_family = "first-token"
    cfg.data.max_predict_samples = 30  # `qaflow predict` is run_qa's --do_predict: its own limit
    summary = predict_from_config(cfg, model_dir=tiny_bert_dir, data=SAMPLE_DEV_V1, output_dir=tmp_path)
    dataset = load_dataset_file(SAMPLE_DEV_V1, max_samples=30)
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    assert predictions == {ex.id: ex.context.split()[0] for ex in dataset.examples}
    assert summary.model_family == "first-token" and set(summary.metrics) == {"exact_match", "f1"}
    assert 0.0 <= summary.metrics["f1"] < 20.0  # a baseline, scored by the official metric


def test_unregistered_family_name_is_refused(tiny_bert_dir: Path) -> None:
    with pytest.raises(ValueError, match="not one of"):
        registry.resolve_family("first-token", tiny_bert_dir)
    with pytest.raises(ValueError, match="not one of"):
        featurizers.resolve_featurizer("first-token", tiny_bert_dir)
