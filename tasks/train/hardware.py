"""The hardware seam's front door: the backends, `train.backend` parsed into one of them, the torchrun launch.

Each entry point resolves its backend once (`backend_for(cfg)`; `auto` = the first backend in `BACKENDS` that is
present: cuda > ipu > cpu) and hands the object down: the Trainer plumbing, the launchers, the prediction path and
the families ask it instead of comparing names (`tasks.core.backend.Backend`). Prediction asks
`inference_backend`, which probes nothing. To add a backend, write a `HardwareBackend` subclass in
`tasks/train/backends/` and add it to `BACKENDS` (or `register` it, for a plug-in). Outside `tasks.train`,
hardware is reached only through this module (an import-linter contract in pyproject.toml): torchrun's workers
too (`run_workers` starts them, `join_ddp_worker` joins one, `TorchRanks` shares prediction across them).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.core.config import QAFlowConfig
from tasks.train.backends.base import HardwareBackend
from tasks.train.backends.cpu import CPUBackend
from tasks.train.backends.cuda import CUDABackend
from tasks.train.backends.ipu import IPUBackend
from tasks.train.ddp import Launch, ResultOnAnotherNode, TorchRanks, join_worker_group, read_job
from tasks.train.launchers import TrainingJob, run_workers
from tasks.train.resources import BackendUnavailableError

__all__ = [  # what the pipeline and the flows reach hardware through
    "BACKENDS", "BackendUnavailableError", "HardwareBackend", "Launch", "ResultOnAnotherNode", "TorchRanks",
    "TrainingJob", "backend_for", "check_backend", "inference_backend", "join_ddp_worker", "register",
    "resolve_backend", "run_workers",
]  # fmt: skip

log = logging.getLogger(__name__)

AUTO = "auto"
BACKENDS: list[type[HardwareBackend]] = [CUDABackend, IPUBackend, CPUBackend]  # `auto` takes the first present


def register(backend: type[HardwareBackend], *, before: str = CPUBackend.name) -> None:
    """Add a backend (a plug-in), or replace the one of its name; `auto` considers it just before `before`."""
    BACKENDS[:] = [known for known in BACKENDS if known.name != backend.name]
    names = [known.name for known in BACKENDS]
    BACKENDS.insert(names.index(before) if before in names else len(BACKENDS), backend)


def backend_class(name: str) -> type[HardwareBackend]:
    """The backend `train.backend` names; BackendUnavailableError (one line) for a name no backend has."""
    for backend in BACKENDS:
        if backend.name == name:
            return backend
    known = ", ".join([AUTO, *sorted(backend.name for backend in BACKENDS)])
    raise BackendUnavailableError(f"train.backend: unknown backend {name!r}; choose one of {known}")


def resolve_backend(requested: str, cfg: QAFlowConfig | None = None) -> HardwareBackend:
    """`auto` resolved to the first backend present (`cfg` tells where, e.g. the IPU environment); an explicit
    request checked (BackendUnavailableError, one line, when this machine cannot honour it)."""
    if requested == AUTO:
        chosen = next(backend for backend in BACKENDS if backend.present(cfg))
        log.info("backend auto-detected: %s", chosen.name)
        return chosen()
    backend = backend_class(requested)
    backend.check_present(cfg)
    return backend()


def backend_for(cfg: QAFlowConfig) -> HardwareBackend:
    """The backend of `cfg.train.backend`, checked against the train settings (ConfigError, one line)."""
    backend = resolve_backend(cfg.train.backend, cfg)
    backend.check_settings(cfg.train)
    return backend


def check_backend(cfg: QAFlowConfig) -> None:
    """`backend_for`'s cheap part, probing no hardware: a known name, and an explicit backend's settings."""
    if cfg.train.backend != AUTO:
        backend_class(cfg.train.backend)().check_settings(cfg.train)


def inference_backend(requested: str = AUTO) -> HardwareBackend:
    """Where predictions run when `train.backend` is `requested`: that backend where it predicts in this process
    and is present, else the first present one that does (cuda > cpu). Probes no IPU environment."""
    if requested != AUTO:
        named = backend_class(requested)
        if named.predicts_here and named.present(None):
            return named()
    return next(backend for backend in BACKENDS if backend.predicts_here and backend.present(None))()


def join_ddp_worker(job_path: Path) -> tuple[dict[str, Any], HardwareBackend]:
    """A torchrun worker's start: its job (`run_workers` wrote it), its backend, its worker group joined
    (`TorchRanks.current()` then shares prediction across it)."""
    job = read_job(job_path)
    backend = resolve_backend(job["backend"])
    join_worker_group(backend)
    return job, backend
