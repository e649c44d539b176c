"""The CPU: always present (the fallback of `auto`), bf16 through autocast, DDP workers over gloo."""

from __future__ import annotations

import os

import torch

from tasks.core.config import QAFlowConfig
from tasks.train.backends.base import HardwareBackend
from tasks.train.resources import available_cpu_cores


class CPUBackend(HardwareBackend):
    name = "cpu"
    device_type = "cpu"
    use_cpu = True

    @classmethod
    def present(cls, cfg: QAFlowConfig | None) -> bool:
        return True

    def bf16_supported(self) -> bool:
        return True

    def ddp_backend(self, world_size: int) -> str | None:
        return "gloo" if world_size > 1 else None

    def prepare_training_process(self) -> None:
        """Every core this process may use, unless OMP_NUM_THREADS says otherwise (torchrun's workers get their
        share from `worker_environment`; a user who sets it is obeyed)."""
        if not os.environ.get("OMP_NUM_THREADS", "").strip():
            torch.set_num_threads(available_cpu_cores())

    def worker_environment(self, nproc_per_node: int) -> dict[str, str]:
        """Share the cores between the workers instead of oversubscribing them."""
        return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc_per_node))}
