"""Loading a checkpoint's tokenizer and config through transformers, and reading that config (family claims).

Names are resolved and checked first (`tasks.core.model_spec.require_checkpoint`). transformers imports torch when
it loads a tokenizer or config class, so only steps that load a checkpoint import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import AutoConfig, AutoTokenizer, PretrainedConfig

from tasks.core.model_spec import require_checkpoint


def load_tokenizer(name_or_path: str) -> Any:
    """A fast tokenizer for the checkpoint (QA features need offset mappings)."""
    return AutoTokenizer.from_pretrained(require_checkpoint(name_or_path))


def load_checkpoint_config(model: Any) -> PretrainedConfig:
    """A transformers config from a config object, a config dict, or a checkpoint path/alias (read once)."""
    if isinstance(model, PretrainedConfig):
        return model
    if isinstance(model, Mapping):
        raw = dict(model)
        model_type = raw.pop("model_type", None)
        return AutoConfig.for_model(model_type, **raw) if model_type else PretrainedConfig(**raw)
    return AutoConfig.from_pretrained(require_checkpoint(str(model)))


def architectures(config: Any) -> list[str]:
    return list(getattr(config, "architectures", None) or [])


def has_span_head(config: Any) -> bool:
    """Was the checkpoint saved with a (simple) span head, e.g. `BertForQuestionAnswering`?"""
    return any(a.endswith(("ForQuestionAnswering", "ForQuestionAnsweringSimple")) for a in architectures(config))


def describe(config: Any, where: str) -> str:
    arch = ", ".join(architectures(config)) or "no architectures listed"
    return f"checkpoint {where} ({getattr(config, 'model_type', '?')}; {arch})"
