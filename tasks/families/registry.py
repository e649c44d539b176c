"""The family registry: every model family qaflow knows, and resolving one from a checkpoint config, once.

`model_family: auto` takes the first family (in registry order) that claims the checkpoint config:

* `seq2seq` — `is_encoder_decoder` and no span head in its architectures (T5, BART for generation);
* `beam` — XLNet with `start_n_top`/`end_n_top` whose architectures contain `XLNetForQuestionAnswering`;
* `extractive` — anything else (the fallback; a pretrained XLNet LM is extractive unless asked for as `beam`).

A family named explicitly is checked against the checkpoint; a mismatch is a ValueError that names the family to
use. Adding a family is one module implementing `tasks.core.family.ModelFamily` plus one line in `FAMILIES` (or
one `register(...)` call for a plug-in).
"""

from __future__ import annotations

from typing import Any

from tasks.core.checkpoints import load_checkpoint_config
from tasks.core.family import ModelFamily
from tasks.families.beam import BeamFamily
from tasks.families.extractive import ExtractiveFamily
from tasks.families.seq2seq import Seq2SeqFamily

AUTO = "auto"
FAMILIES: list[ModelFamily] = [Seq2SeqFamily(), BeamFamily(), ExtractiveFamily()]  # inference order


def register(family: ModelFamily, *, first: bool = True) -> None:
    """Add a family (by default ahead of the built-ins, so its `claims` is asked first); replaces a same-named one."""
    FAMILIES[:] = [f for f in FAMILIES if f.name != family.name]
    FAMILIES.insert(0 if first else len(FAMILIES), family)


def unregister(name: str) -> None:
    FAMILIES[:] = [f for f in FAMILIES if f.name != name]


def family_names() -> tuple[str, ...]:
    return tuple(f.name for f in FAMILIES)


def check_family_name(name: str) -> None:
    """ValueError unless `name` is `auto` or a registered family (cheap; run before anything expensive)."""
    if name != AUTO and name not in family_names():
        raise ValueError(f"model_family {name!r} is not one of {AUTO}, {', '.join(family_names())}")


def get_family(name: str) -> ModelFamily:
    check_family_name(name)
    if name == AUTO:
        raise ValueError("model_family 'auto' must be resolved against a checkpoint (resolve_family)")
    return next(f for f in FAMILIES if f.name == name)


def infer_family(model: Any) -> str:
    """The family name `auto` picks for a checkpoint directory/alias, a config object or a config dict."""
    config = load_checkpoint_config(model)
    return next(f.name for f in FAMILIES if f.claims(config))


def resolve_family(requested: str, model: Any) -> ModelFamily:
    """`requested`, or the inferred family for `auto`; ValueError when it does not fit the checkpoint."""
    check_family_name(requested)
    config = load_checkpoint_config(model)
    inferred = next(f.name for f in FAMILIES if f.claims(config))
    if requested in (AUTO, inferred):
        return get_family(inferred)
    family = get_family(requested)
    where = f"<{type(model).__name__}>" if hasattr(model, "to_dict") else str(model)
    family.check(config, where, inferred)
    return family
