"""The featurize side of the registry: every family's featurizer, and resolving one from a checkpoint config.

`model_family: auto` takes the first family (in registry order) that claims the checkpoint config; a family named
explicitly is checked against it (a mismatch is a ValueError that names the family to use). The order and the
rules are those of `tasks.families.registry` (which resolves full families with `resolve_in` below, and
registers a plug-in family here too); this module imports no model code, so the DVC `featurize` stage does not
depend on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from tasks.core.checkpoints import load_checkpoint_config
from tasks.core.featurizer import FamilyFeaturizer
from tasks.families.beam_features import BeamFeaturizer
from tasks.families.extractive_features import ExtractiveFeaturizer
from tasks.families.seq2seq_features import Seq2SeqFeaturizer

AUTO = "auto"
FEATURIZERS: list[FamilyFeaturizer] = [Seq2SeqFeaturizer(), BeamFeaturizer(), ExtractiveFeaturizer()]  # same order

Family = TypeVar("Family", bound=FamilyFeaturizer)


def check_name_in(candidates: Sequence[FamilyFeaturizer], name: str) -> None:
    """ValueError unless `name` is `auto` or one of `candidates` (cheap; run before anything expensive)."""
    names = [f.name for f in candidates]
    if name != AUTO and name not in names:
        raise ValueError(f"model_family {name!r} is not one of {AUTO}, {', '.join(names)}")


def get_in(candidates: Sequence[Family], name: str) -> Family:
    check_name_in(candidates, name)
    if name == AUTO:
        raise ValueError("model_family 'auto' must be resolved against a checkpoint (resolve_family)")
    return next(f for f in candidates if f.name == name)


def resolve_in(candidates: Sequence[Family], requested: str, model: Any) -> Family:
    """`requested`, or the first of `candidates` that claims the checkpoint for `auto`; ValueError when it does
    not fit. `model`: a checkpoint directory/alias, a config object or a config dict."""
    check_name_in(candidates, requested)
    config = load_checkpoint_config(model)
    inferred = next(f.name for f in candidates if f.claims(config))
    if requested in (AUTO, inferred):
        return get_in(candidates, inferred)
    family = get_in(candidates, requested)
    where = f"<{type(model).__name__}>" if hasattr(model, "to_dict") else str(model)
    family.check(config, where, inferred)
    return family


def resolve_featurizer(requested: str, model: Any) -> FamilyFeaturizer:
    """The featurizer of the family `requested` (or inferred, for `auto`) for the checkpoint `model`."""
    return resolve_in(FEATURIZERS, requested, model)
