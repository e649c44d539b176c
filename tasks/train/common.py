"""The one interface every training backend implements, plus device detection and resource figures."""

from __future__ import annotations

import json
import logging
import os
import platform
import resource
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BACKENDS = ("cpu", "cuda", "ipu")


class BackendUnavailableError(RuntimeError):
    """The requested hardware backend cannot run on this machine; the message says what is missing."""


@dataclass
class DeviceInfo:
    backend: str
    device_name: str
    device_count: int
    world_size: int = 1

    def as_params(self) -> dict[str, Any]:
        return {f"device_{k}" if k != "backend" else k: v for k, v in asdict(self).items()}


@dataclass
class TrainResult:
    """What a training run leaves behind: the final model directory, metrics and where it resumed from."""

    model_dir: Path
    metrics: dict[str, float]
    device: DeviceInfo
    resumed_from: str | None = None
    log_history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[str, Path] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "model_dir": str(self.model_dir),
            "metrics": self.metrics,
            "device": asdict(self.device),
            "resumed_from": self.resumed_from,
            "log_history": self.log_history,
            "artifacts": {k: str(v) for k, v in self.artifacts.items()},
        }


def available_cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def detect_backend(requested: str, ipu_python: str | None = None) -> str:
    """Resolve `auto` to the best hardware present (cuda > ipu > cpu) and check an explicit request."""
    import torch

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
    from tasks.train.ipu import IPUUnavailableError, check_ipu_environment

    try:
        check_ipu_environment(ipu_python)
    except IPUUnavailableError:
        return False
    return True


def device_info(backend: str, world_size: int = 1) -> DeviceInfo:
    import torch

    if backend == "cuda":
        return DeviceInfo("cuda", torch.cuda.get_device_name(0), torch.cuda.device_count(), world_size)
    cpu = platform.processor() or platform.machine()
    return DeviceInfo(backend, f"{cpu} ({available_cpu_cores()} cores)", 1, world_size)


def peak_memory_mb(backend: str) -> float:
    """Peak GPU memory allocated on CUDA, else the process's peak resident set size."""
    if backend == "cuda":
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20


def write_result(result: TrainResult, path: Path) -> None:
    from tasks.io import write_json_atomic

    write_json_atomic(result.to_json(), path, indent=2)


def read_result(path: Path) -> TrainResult:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return TrainResult(
        model_dir=Path(raw["model_dir"]),
        metrics=raw["metrics"],
        device=DeviceInfo(**raw["device"]),
        resumed_from=raw.get("resumed_from"),
        log_history=raw.get("log_history", []),
        artifacts={k: Path(v) for k, v in raw.get("artifacts", {}).items()},
    )
