"""Extractive span QA (run_qa.py): an encoder with a start/end head (`AutoModelForQuestionAnswering`).

Features are run_qa.py's sliding windows (`tasks.core.features`); the forward pass gives start/end logits per
window with padding positions set to `PAD_LOGIT`, so an answer never depends on which other examples share its
batch; post-processing is the vectorised utils_qa n-best (`tasks.core.postprocess`). Raw logits are saved per
chunk (`tasks.core.raw_logits`) so n-best can be re-run later without the model. Which checkpoints it fits and
its training features are `tasks.families.extractive_features` (what the DVC `featurize` stage imports).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForQuestionAnswering, Trainer, TrainingArguments

from tasks.core.data import Example
from tasks.core.features import Features, collate, padding_band, prepare_eval_features, row_batches
from tasks.core.postprocess import Postprocessed, postprocess_predictions
from tasks.core.raw_logits import RawShard
from tasks.core.specs import InferenceRecipe
from tasks.families.extractive_features import ExtractiveFeaturizer
from tasks.families.span_packing import SpanPacking

PAD_LOGIT = -1e4  # logit written at padding positions


class FeatureCollator:
    """Stack window rows into tensors; with `dynamic`, drop the columns that are padding in every row.

    Counts real (non-padding) and padded tokens so throughput can be reported in tokens per second.
    """

    def __init__(self, features: Features, *, dynamic: bool, multiple_of: int = 1) -> None:
        self.features = features
        self.dynamic = dynamic
        self.multiple_of = multiple_of
        self.real_tokens = 0
        self.padded_tokens = 0

    def arrays(self, indices: list[int]) -> dict[str, np.ndarray]:
        idx = np.asarray(indices, dtype=np.int64)
        batch = collate(self.features, idx, dynamic=self.dynamic, multiple_of=self.multiple_of)
        self.real_tokens += int(batch["attention_mask"].sum())
        self.padded_tokens += int(batch["attention_mask"].size)
        return batch

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.arrays(indices).items()}  # `collate` gives int64


@dataclass
class SpanLogits:
    """Start/end logits [N, L] (float32) of N windows; padding positions hold `PAD_LOGIT`."""

    start: np.ndarray
    end: np.ndarray


def model_inputs(
    features: Features, rows: slice | np.ndarray, c0: int, c1: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """input_ids / attention_mask / token_type_ids of `rows`, columns [c0, c1), on `device`."""
    inputs = {"input_ids": features.input_ids[rows, c0:c1], "attention_mask": features.attention_mask[rows, c0:c1]}
    if features.token_type_ids is not None:
        inputs["token_type_ids"] = features.token_type_ids[rows, c0:c1]
    return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)).to(device) for k, v in inputs.items()}


def inference_pad_multiple(device: torch.device) -> int:
    """Batch widths in prediction: multiples of 8 on CUDA (few distinct shapes, tensor-core sizes), exact on CPU."""
    return 8 if device.type == "cuda" else 1


@torch.inference_mode()
def forward_logits(
    model: Any, features: Features, batch_size: int, device: torch.device, *, by_length: bool = True,
    batches: Sequence[np.ndarray] | None = None,
) -> SpanLogits:  # fmt: skip
    """Start/end logits for every window, in batches; padding columns trimmed per batch.

    `by_length` batches windows of similar length (`row_batches`) instead of in feature order: a
    window's logits do not depend on its batch (padding is masked; only float rounding differs with the batch
    width), and far fewer padded positions are computed (SQuAD windows at 384 are about half padding).
    `batches`: only these batches of `row_batches` (a rank's share); the other rows keep `PAD_LOGIT`.
    """
    n, length = features.input_ids.shape
    start = np.full((n, length), PAD_LOGIT, dtype=np.float32)
    end = np.full((n, length), PAD_LOGIT, dtype=np.float32)
    if batches is None:
        batches = row_batches(features.attention_mask, batch_size, by_length=by_length)
    for sl in batches:
        c0, c1 = padding_band(features.attention_mask[sl], inference_pad_multiple(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out = model(**model_inputs(features, sl, c0, c1, device))
        pad = features.attention_mask[sl, c0:c1] == 0  # padding never competes for the n-best
        start[sl, c0:c1] = np.where(pad, PAD_LOGIT, out.start_logits.float().cpu().numpy())
        end[sl, c0:c1] = np.where(pad, PAD_LOGIT, out.end_logits.float().cpu().numpy())
    return SpanLogits(start, end)


class ExtractiveFamily(ExtractiveFeaturizer):
    """run_qa.py's span extraction; the fallback for any checkpoint no other family claims.

    Identity (`claims`, `check`) and training features are inherited from `ExtractiveFeaturizer`.
    """

    trainer_class = Trainer
    training_arguments_class = TrainingArguments
    packing: SpanPacking | None = SpanPacking()

    def load_model(self, path: str) -> Any:
        """`AutoModelForQuestionAnswering` in float32 (transformers 5 would keep a bf16 checkpoint in bf16, and
        training would lose its fp32 master weights); a missing QA head is initialised (and reported)."""
        return AutoModelForQuestionAnswering.from_pretrained(path, dtype=torch.float32)

    def collator(self, features: Features, *, dynamic: bool, multiple_of: int = 1) -> FeatureCollator:
        return FeatureCollator(features, dynamic=dynamic, multiple_of=multiple_of)

    def train_metrics(self, features: Any, collator: Any, runtime: float, world_size: int) -> dict[str, float]:
        return {}

    def eval_features(self, examples: Sequence[Example], tokenizer: Any, recipe: InferenceRecipe) -> Features:
        return prepare_eval_features(examples, tokenizer, recipe.windows)

    def batches(self, features: Features, recipe: InferenceRecipe) -> list[np.ndarray]:
        return row_batches(features.attention_mask, recipe.batch_size)

    def forward(
        self, model: Any, features: Features, recipe: InferenceRecipe, device: Any, tokenizer: Any,
        batches: Sequence[np.ndarray] | None = None,
    ) -> SpanLogits:  # fmt: skip
        return forward_logits(model, features, recipe.batch_size, device, batches=batches)

    def postprocess(
        self, examples: Sequence[Example], features: Features, outputs: SpanLogits, recipe: InferenceRecipe
    ) -> Postprocessed:
        return postprocess_predictions(
            examples, features.example_index, features.offsets, features.cls_index, outputs.start, outputs.end,
            recipe.nbest,
        )  # fmt: skip

    def raw_shard(self, examples: Sequence[Example], features: Features, outputs: SpanLogits) -> RawShard:
        return RawShard(
            example_ids=[ex.id for ex in examples], example_index=features.example_index, offsets=features.offsets,
            cls_index=features.cls_index, start_logits=outputs.start, end_logits=outputs.end,
        )  # fmt: skip

    def counts(self, features: Features) -> dict[str, float]:
        return {"features": float(len(features))}
