"""The family registry: every model family qaflow knows, and resolving one from a checkpoint config, once.

`model_family: auto` takes the first family (in registry order) that claims the checkpoint config:

* `seq2seq` — `is_encoder_decoder` and no span head in its architectures (T5, BART for generation);
* `beam` — XLNet with `start_n_top`/`end_n_top` whose architectures contain `XLNetForQuestionAnswering`;
* `extractive` — anything else (the fallback; a pretrained XLNet LM is extractive unless asked for as `beam`).

A family named explicitly is checked against the checkpoint; a mismatch is a ValueError that names the family to
use. Adding a family is one module implementing `tasks.core.family.ModelFamily` plus one line in `FAMILIES` and
its featurizer in `tasks.families.featurizers.FEATURIZERS` (or one `register(...)` call for a plug-in, which adds
it to both).
"""

from __future__ import annotations

from typing import Any

from tasks.core.checkpoints import load_checkpoint_config
from tasks.core.family import ModelFamily
from tasks.families.beam import BeamFamily
from tasks.families.extractive import ExtractiveFamily
from tasks.families.featurizers import FEATURIZERS, check_name_in, get_in, resolve_in
from tasks.families.seq2seq import Seq2SeqFamily

FAMILIES: list[ModelFamily] = [Seq2SeqFamily(), BeamFamily(), ExtractiveFamily()]  # inference order


def register(family: ModelFamily, *, first: bool = True) -> None:
    """Add a family (by default ahead of the built-ins, so its `claims` is asked first); replaces a same-named one.

    The family is its own featurizer, so `featurize` (tasks.pipeline.featurize) finds it as well."""
    for families in (FAMILIES, FEATURIZERS):
        families[:] = [f for f in families if f.name != family.name]
        families.insert(0 if first else len(families), family)


def unregister(name: str) -> None:
    for families in (FAMILIES, FEATURIZERS):
        families[:] = [f for f in families if f.name != name]


def family_names() -> tuple[str, ...]:
    return tuple(f.name for f in FAMILIES)


def check_family_name(name: str) -> None:
    """ValueError unless `name` is `auto` or a registered family (cheap; run before anything expensive)."""
    check_name_in(FAMILIES, name)


def get_family(name: str) -> ModelFamily:
    return get_in(FAMILIES, name)


def infer_family(model: Any) -> str:
    """The family name `auto` picks for a checkpoint directory/alias, a config object or a config dict."""
    config = load_checkpoint_config(model)
    return next(f.name for f in FAMILIES if f.claims(config))


def resolve_family(requested: str, model: Any) -> ModelFamily:
    """`requested`, or the inferred family for `auto`; ValueError when it does not fit the checkpoint."""
    return resolve_in(FAMILIES, requested, model)
