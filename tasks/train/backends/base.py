"""What every hardware backend answers, with neutral defaults; a backend overrides where its hardware differs.

The answers are `tasks.core.backend.Backend`'s (what training, prediction and the families ask) plus what the
pipeline asks: whether a backend is present (`auto` takes the first present in `tasks.train.hardware.BACKENDS`),
the one-line error of an explicit request it cannot honour, the train settings it cannot honour, where
predictions run, and how a training job is launched. Nothing outside the backend classes compares names.
"""

from __future__ import annotations

import platform
import resource
import sys
from contextlib import AbstractContextManager

import torch

from tasks.core.artifacts import DeviceInfo
from tasks.core.config import QAFlowConfig, TrainConfig
from tasks.train.ddp import Launch
from tasks.train.launchers import InProcessLauncher, Launcher, TorchrunLauncher
from tasks.train.resources import available_cpu_cores


class HardwareBackend:
    """A backend whose models run on a torch device in this process (`device_type`), trained by the Trainer here
    or under torchrun. The defaults are the plainest hardware: no mixed precision, no pinned memory, exact shapes."""

    name = ""
    device_type = "cpu"  # the torch device type models run on
    predicts_here = True  # prediction runs on this backend (else on the best present one that does)

    inference_autocast_dtype: torch.dtype | None = None  # prediction's mixed precision (None: full precision)
    inference_pad_multiple = 1
    use_cpu = False
    fp16_supported = False
    pin_memory = False
    precision_pad_multiple = 1
    shape_sensitive = False
    process_group = "gloo"

    # ---- selection (tasks.train.hardware)
    @classmethod
    def present(cls, cfg: QAFlowConfig | None) -> bool:
        """`auto` may choose this backend (its hardware is there and usable)."""
        return False

    @classmethod
    def check_present(cls, cfg: QAFlowConfig | None) -> None:
        """An explicit request this machine cannot honour raises `BackendUnavailableError` (one line)."""

    def check_settings(self, t: TrainConfig) -> None:
        """A train setting this backend cannot honour raises `ConfigError` (one line), before any work."""

    def launcher(self, launch: Launch) -> Launcher:
        """How a training job runs: torchrun's workers when `launch` asks for several processes, else here."""
        return TorchrunLauncher(self, launch) if launch.distributed else InProcessLauncher()

    # ---- prediction
    @property
    def device(self) -> torch.device:
        return torch.device(self.device_type)

    def autocast(self) -> AbstractContextManager[None]:
        dtype = self.inference_autocast_dtype
        return torch.autocast(self.device_type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    # ---- training in this process
    def bf16_supported(self) -> bool:
        return False

    def ddp_backend(self, world_size: int) -> str | None:
        return None

    def cuda_graphs(self, compile_mode: str | None) -> bool:
        return False

    def prepare_training_process(self) -> None:
        pass

    # ---- data-parallel workers
    def bind_local_rank(self, local_rank: int) -> None:
        pass

    def worker_environment(self, nproc_per_node: int) -> dict[str, str]:
        return {}

    # ---- what a run records
    def device_name(self) -> str:
        return platform.processor() or platform.machine()

    def device_info(self, world_size: int = 1) -> DeviceInfo:
        return DeviceInfo(self.name, f"{self.device_name()} ({available_cpu_cores()} cores)", 1, world_size)

    def peak_memory_mb(self) -> float:
        """The process's peak resident set size."""
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 1024 if sys.platform != "darwin" else rss / 2**20

    def peak_flops(self, device_name: str) -> float | None:
        """The device's dense bf16 peak (FLOP/s) from its data sheet, where known: the benchmark's MFU."""
        return None

    def __eq__(self, other: object) -> bool:  # stateless: one class, one answer
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"
