"""Small test conveniences over the family seam: train or predict one family with a plain config."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.core.artifacts import TrainResult
from tasks.core.config import QAFlowConfig
from tasks.core.data import Example
from tasks.core.features import FeatureSettings
from tasks.core.layout import TrainPaths
from tasks.core.model_spec import ModelSpec, resolve_model_path
from tasks.core.postprocess import NBestSettings
from tasks.core.specs import GenerationSettings, InferenceRecipe
from tasks.families.registry import get_family
from tasks.predict import PredictionRun, predict_examples
from tasks.train.trainer import run_trainer

# metric names every family's training reports (the extractive set)
TRAIN_METRIC_KEYS = (
    "train_runtime",
    "train_samples_per_second",
    "train_steps_per_second",
    "train_tokens_per_second",
    "peak_memory_mb",
    "train_loss",
)


def load_model(family: str, path: str | Path) -> Any:
    return get_family(family).load_model(resolve_model_path(str(path)))


def train(family: str, cfg: QAFlowConfig, features: Any, output_dir: Path, backend: str = "cpu") -> TrainResult:
    """The shared Trainer core on in-memory features of `family`."""
    return run_trainer(
        get_family(family), ModelSpec.from_config(cfg), cfg.train, features,
        backend=backend, paths=TrainPaths(Path(output_dir)), dynamic_padding=not cfg.features.pad_to_max_length,
    )  # fmt: skip


def predict(
    family: str,
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    recipe: InferenceRecipe,
    out_dir: Path,
    **kwargs: Any,
) -> PredictionRun:
    return predict_examples(get_family(family), model, tokenizer, examples, recipe, Path(out_dir), **kwargs)


def seq2seq_recipe(
    max_seq_length: int, max_new_tokens: int, num_beams: int, batch_size: int, v2: bool = False
) -> InferenceRecipe:
    """A seq2seq recipe with the given lengths, beams and batch size."""
    return InferenceRecipe(
        family="seq2seq", windows=FeatureSettings(max_seq_length=max_seq_length, doc_stride=max_seq_length // 4),
        nbest=NBestSettings(version_2_with_negative=v2), generation=GenerationSettings(max_new_tokens, num_beams),
        batch_size=batch_size,
    )  # fmt: skip
