"""Choosing the hardware backend: `auto` resolves to the best present (cuda > ipu > cpu); explicit ones are checked."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from tasks.train.ipu_env import IPUUnavailableError, check_ipu_environment
from tasks.train.resources import BackendUnavailableError

log = logging.getLogger(__name__)

BACKENDS = ("cpu", "cuda", "ipu")


def detect_backend(requested: str, ipu_python: str | None = None) -> str:
    """Resolve `auto` to the best hardware present (cuda > ipu > cpu) and check an explicit request."""
    if requested == "auto":
        if torch.cuda.is_available():
            chosen = "cuda"
        elif ipu_python and Path(ipu_python).exists() and _ipu_ready(ipu_python):
            chosen = "ipu"
        else:
            chosen = "cpu"
        log.info("backend auto-detected: %s", chosen)
        return chosen
    if requested == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            "backend 'cuda' requested but torch sees no CUDA device "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
            "install a CUDA build of torch on a GPU machine, or use --backend cpu"
        )
    if requested not in BACKENDS:
        raise BackendUnavailableError(f"unknown backend {requested!r}; choose one of auto, {', '.join(BACKENDS)}")
    return requested


def _ipu_ready(ipu_python: str) -> bool:
    try:
        check_ipu_environment(ipu_python)
    except IPUUnavailableError:
        return False
    return True
