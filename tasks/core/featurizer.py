"""The featurize side of the family seam: which checkpoints a family fits, and its training features.

This is all the DVC `featurize` stage needs of a family, so the stage (and the data version) depends on each
family's feature code only (`tasks/families/*_features.py`), never on its model, forward pass or post-processing.
`tasks.core.family.ModelFamily` extends it with everything training and prediction need.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tasks.core.data import Example
from tasks.core.features import FeatureSettings


@dataclass(frozen=True)
class TrainFeatureSpec:
    """What training features depend on: windows (span families) or lengths (seq2seq), and worker processes."""

    windows: FeatureSettings
    max_answer_length: int = 30
    num_proc: int = 1


class FamilyFeaturizer(Protocol):
    """A family's identity and training features. Implementations are stateless."""

    name: str
    windowed: bool  # reads question+context windows (then `features.question_policy` applies to its examples)

    def claims(self, config: Any) -> bool:
        """True when a checkpoint with this config is of this family by default (used by `auto`)."""
        ...

    def check(self, config: Any, where: str, inferred: str) -> None:
        """Raise ValueError (naming the fitting family) when this family was asked for but cannot use `config`."""
        ...

    def train_features(self, examples: Sequence[Example], tokenizer: Any, spec: TrainFeatureSpec) -> Any: ...

    def save_train_features(self, features: Any, path: Path) -> Path: ...

    def load_train_features(self, path: Path) -> Any: ...
