"""The CPU cores this process may use, and the backend-unavailable error (device figures: the backends')."""

from __future__ import annotations

import os


class BackendUnavailableError(RuntimeError):
    """The requested hardware backend cannot run on this machine; the message says what is missing."""


def available_cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1
