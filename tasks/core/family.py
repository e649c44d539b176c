"""The model-family seam: what every QA model family implements (one module per family under `tasks/families/`).

A family owns everything that differs between span extraction, XLNet beam search and generation: its training
features and their file format, the collator, the model class, the forward pass to raw outputs, and the
post-processing of those outputs into answers, n-best lists and (SQuAD v2) null odds. Training
(`tasks.train`), prediction (`tasks.predict`) and serving receive a family object and know nothing else about it.

The protocol lives in core so that the layers above (train, predict, families) depend on it, not on each other.
`tasks.families.registry` resolves a family once from the checkpoint config.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tasks.core.data import Example
from tasks.core.features import FeatureSettings
from tasks.core.postprocess import Postprocessed
from tasks.core.raw_logits import RawShard
from tasks.core.specs import InferenceRecipe


@dataclass(frozen=True)
class TrainFeatureSpec:
    """What training features depend on: windows (span families) or lengths (seq2seq), and worker processes."""

    windows: FeatureSettings
    max_answer_length: int = 30
    num_proc: int = 1


class Collator(Protocol):
    """Maps a list of feature rows to one batch of tensors; counts the tokens it saw (throughput figures)."""

    real_tokens: int
    padded_tokens: int

    def __call__(self, indices: list[int]) -> dict[str, Any]: ...


class PackedTraining(Protocol):
    """A family's packed training (`train.packing`): several windows per row, each computing as if alone."""

    trainer_class: type  # computes the loss per window from a packed batch

    def check(self, model: Any, width: int) -> int:
        """The position offset packed windows use on `model`; ValueError (one line) when it cannot pack."""
        ...

    def collator(self, features: Any, *, row_counts: Sequence[int], position_offset: int) -> Collator: ...


class ModelFamily(Protocol):
    """One kind of QA model head. Implementations are stateless; the registry holds one instance each."""

    name: str
    windowed: bool  # reads question+context windows (then `features.question_policy` applies to its examples)
    trainer_class: type  # a transformers `Trainer` (sub)class
    training_arguments_class: type  # a transformers `TrainingArguments` (sub)class
    packing: PackedTraining | None  # `train.packing`, or None when the family cannot pack its features

    # ---- which checkpoints it fits
    def claims(self, config: Any) -> bool:
        """True when a checkpoint with this config is of this family by default (used by `auto`)."""
        ...

    def check(self, config: Any, where: str, inferred: str) -> None:
        """Raise ValueError (naming the fitting family) when this family was asked for but cannot use `config`."""
        ...

    def load_model(self, path: str) -> Any:
        """The model in float32 (master weights; bf16/fp16 run as autocast), whatever dtype the checkpoint holds."""
        ...

    # ---- training
    def train_features(self, examples: Sequence[Example], tokenizer: Any, spec: TrainFeatureSpec) -> Any: ...

    def save_train_features(self, features: Any, path: Path) -> Path: ...

    def load_train_features(self, path: Path) -> Any: ...

    def collator(self, features: Any, *, dynamic: bool, multiple_of: int = 1) -> Collator: ...

    def train_metrics(self, features: Any, collator: Any, runtime: float, world_size: int) -> dict[str, float]:
        """Family-specific figures added to the training metrics."""
        ...

    # ---- prediction, one chunk of examples at a time
    def eval_features(self, examples: Sequence[Example], tokenizer: Any, recipe: InferenceRecipe) -> Any: ...

    def forward(self, model: Any, features: Any, recipe: InferenceRecipe, device: Any, tokenizer: Any) -> Any:
        """The model over all features of a chunk, batched: the family's raw outputs."""
        ...

    def postprocess(
        self, examples: Sequence[Example], features: Any, outputs: Any, recipe: InferenceRecipe
    ) -> Postprocessed: ...

    def raw_shard(self, examples: Sequence[Example], features: Any, outputs: Any) -> RawShard | None:
        """Raw logits to save for later re-post-processing, or None when the family has no such format."""
        ...

    def counts(self, features: Any) -> dict[str, float]:
        """Per-chunk counts summed into the prediction metrics (`features`, and e.g. `truncated`)."""
        ...
