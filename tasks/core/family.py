"""The model-family seam: what every QA model family implements (one module per family under `tasks/families/`).

A family owns everything that differs between span extraction, XLNet beam search and generation: its training
features and their file format, the collator, the model class, the forward pass to raw outputs, and the
post-processing of those outputs into answers, n-best lists and (SQuAD v2) null odds. Training
(`tasks.train`), prediction (`tasks.predict`) and serving receive a family object and know nothing else about it.

The protocol lives in core so that the layers above (train, predict, families) depend on it, not on each other.
Its featurize side (identity and training features) is `tasks.core.featurizer.FamilyFeaturizer`, so the DVC
`featurize` stage depends on no model code. `tasks.families.registry` resolves a family once from the checkpoint
config.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from tasks.core.data import Example
from tasks.core.featurizer import FamilyFeaturizer
from tasks.core.postprocess import Postprocessed
from tasks.core.raw_logits import RawShard
from tasks.core.specs import InferenceRecipe


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


class ModelFamily(FamilyFeaturizer, Protocol):
    """One kind of QA model head. Implementations are stateless; the registry holds one instance each.

    Inherited from `FamilyFeaturizer`: `name`, `windowed`, `claims`, `check`, `train_features`,
    `save_train_features`, `load_train_features`.
    """

    trainer_class: type  # a transformers `Trainer` (sub)class
    training_arguments_class: type  # a transformers `TrainingArguments` (sub)class
    packing: PackedTraining | None  # `train.packing`, or None when the family cannot pack its features

    def load_model(self, path: str) -> Any:
        """The model in float32 (master weights; bf16/fp16 run as autocast), whatever dtype the checkpoint holds."""
        ...

    # ---- training
    def collator(self, features: Any, *, dynamic: bool, multiple_of: int = 1) -> Collator: ...

    def train_metrics(self, features: Any, collator: Any, runtime: float, world_size: int) -> dict[str, float]:
        """Family-specific figures added to the training metrics."""
        ...

    # ---- prediction, one chunk of examples at a time
    def eval_features(self, examples: Sequence[Example], tokenizer: Any, recipe: InferenceRecipe) -> Any: ...

    def batches(self, features: Any, recipe: InferenceRecipe) -> list[np.ndarray]:
        """The row indices of each batch `forward` runs over a chunk's features, in order (rows index its outputs).

        Under torchrun each rank runs its share of these batches (`tasks.predict`), so a window is computed in the
        same batch as in one process. Optional for a plug-in family: without it, rank 0 predicts alone.
        """
        ...

    def forward(
        self, model: Any, features: Any, recipe: InferenceRecipe, device: Any, tokenizer: Any,
        batches: Sequence[np.ndarray] | None = None,
    ) -> Any:  # fmt: skip
        """The model over all features of a chunk, batched: the family's raw outputs, a dataclass whose arrays and
        lists hold one entry per row. With `batches` (some of `self.batches(...)`: a rank's share), only those rows
        are computed; the others keep placeholders, filled from the other ranks."""
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
