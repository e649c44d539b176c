"""The hardware seam: what training, prediction and the model families ask of the hardware they run on.

Each entry point chooses one backend object from `train.backend` (`tasks.train.hardware`: `auto` = the best
present) and hands it down; nothing else compares backend names or device types. The classes live in
`tasks/train/backends/` (cpu, cuda, ipu). This protocol lives in core, as `tasks.core.family.ModelFamily` does, so
that the families and `tasks.predict` can take a backend without depending on `tasks.train`. Selection, launching
(in process, torchrun workers, the IPU subprocess) and the checks a backend makes of the train settings are the
classes' own (`tasks.train.backends.base.HardwareBackend`), asked only by the pipeline.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any, Protocol

from tasks.core.artifacts import DeviceInfo


class Backend(Protocol):
    """One kind of hardware. Implementations are stateless: any two objects of one class answer alike."""

    name: str  # the `train.backend` value that chooses it

    # ---- prediction: where a model's forward pass runs and how (the families, tasks.predict)
    inference_pad_multiple: int  # batch widths in prediction round up to this (few distinct shapes)

    @property
    def device(self) -> Any:
        """The `torch.device` models run on in this process."""
        ...

    def autocast(self) -> AbstractContextManager[Any]:
        """The mixed precision a forward pass in prediction runs under (bf16 on CUDA; none on the CPU)."""
        ...

    # ---- training in this process (tasks.train.trainer, lean_step, compile_cache)
    use_cpu: bool  # TrainingArguments(use_cpu=...)
    fp16_supported: bool  # `train.fp16` is honoured (else training runs in fp32)
    pin_memory: bool  # batches are pinned and copied to the device without blocking
    precision_pad_multiple: int  # batch widths under bf16/fp16 with dynamic padding (tensor-core sizes)
    shape_sensitive: bool  # each new batch shape costs (kernel choice, CUDA graphs) even without compiling

    def bf16_supported(self) -> bool:
        """`train.bf16` can be honoured here (else training runs in fp32, with a warning)."""
        ...

    def ddp_backend(self, world_size: int) -> str | None:
        """TrainingArguments(ddp_backend=...) for `world_size` processes (None: accelerate's choice)."""
        ...

    def cuda_graphs(self, compile_mode: str | None) -> bool:
        """Compiled steps replay CUDA graphs under `compile_mode` (each step then starts a new graph generation)."""
        ...

    def prepare_training_process(self) -> None:
        """Set up this process before the Trainer starts (e.g. the CPU's thread count)."""
        ...

    # ---- data-parallel workers (tasks.train.ddp)
    process_group: str  # torch.distributed backend of a worker group (gloo, nccl)

    def bind_local_rank(self, local_rank: int) -> None:
        """Put this worker on its own device, before the process group starts."""
        ...

    def worker_environment(self, nproc_per_node: int) -> dict[str, str]:
        """Environment variables torchrun's workers get unless already set (e.g. threads per CPU worker)."""
        ...

    # ---- what a run records
    def device_name(self) -> str:
        """The device's name (a compile-cache key's `device`)."""
        ...

    def device_info(self, world_size: int = 1) -> DeviceInfo:
        """The device a run trained on, for its record and tags."""
        ...

    def peak_memory_mb(self) -> float:
        """Peak memory of this process's training (device memory where the device has its own)."""
        ...
