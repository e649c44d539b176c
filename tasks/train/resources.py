"""Measuring where training runs: device info, CPU cores, peak memory; and the backend-unavailable error."""

from __future__ import annotations

import logging
import os
import platform
import resource
import sys

import torch

from tasks.core.artifacts import DeviceInfo

log = logging.getLogger(__name__)


class BackendUnavailableError(RuntimeError):
    """The requested hardware backend cannot run on this machine; the message says what is missing."""


def available_cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


def device_info(backend: str, world_size: int = 1) -> DeviceInfo:
    if backend == "cuda":
        return DeviceInfo("cuda", torch.cuda.get_device_name(0), torch.cuda.device_count(), world_size)
    cpu = platform.processor() or platform.machine()
    return DeviceInfo(backend, f"{cpu} ({available_cpu_cores()} cores)", 1, world_size)


def peak_memory_mb(backend: str) -> float:
    """Peak GPU memory allocated on CUDA, else the process's peak resident set size."""
    if backend == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 1024 if sys.platform != "darwin" else rss / 2**20
