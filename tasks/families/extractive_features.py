"""Extractive span QA, featurize side: which checkpoints it fits, and run_qa.py's training windows.

The model side (collator, forward pass, n-best) is `tasks.families.extractive`, which extends this class; the DVC
`featurize` stage imports this module only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tasks.core.checkpoints import describe, has_span_head
from tasks.core.data import Example
from tasks.core.features import Features, load_features, prepare_train_features, save_features
from tasks.core.featurizer import TrainFeatureSpec


class ExtractiveFeaturizer:
    """run_qa.py's span extraction; the fallback for any checkpoint no other family claims."""

    name = "extractive"
    windowed = True
    train_offsets = False  # training reads no context offsets: train.npz leaves them out (8 bytes a token)

    def claims(self, config: Any) -> bool:
        return True

    def check(self, config: Any, where: str, inferred: str) -> None:
        if inferred == "seq2seq":
            raise ValueError(
                f"checkpoint {where} is an encoder-decoder ({getattr(config, 'model_type', '?')}); model_family "
                "'extractive' needs an encoder with a span head — use model_family: seq2seq"
            )
        if inferred == "beam":
            raise ValueError(
                f"{describe(config, where)} was fine-tuned with the XLNet beam-search head; 'extractive' would "
                "discard it — use model_family: beam"
            )
        if inferred != self.name and not has_span_head(config):
            raise ValueError(f"{describe(config, where)} is a {inferred!r} checkpoint — use model_family: {inferred}")

    def train_features(self, examples: Sequence[Example], tokenizer: Any, spec: TrainFeatureSpec) -> Features:
        return prepare_train_features(
            examples, tokenizer, spec.windows, num_proc=spec.num_proc, offsets=self.train_offsets
        )

    def save_train_features(self, features: Features, path: Path) -> Path:
        return save_features(features, path)

    def load_train_features(self, path: Path) -> Features:
        return load_features(path)
