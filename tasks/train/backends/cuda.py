"""NVIDIA GPUs through torch's CUDA build: bf16 autocast in prediction, tensor-core batch widths, pinned
non-blocking copies, NCCL between DDP workers, CUDA graphs under `reduce-overhead` compilation."""

from __future__ import annotations

import torch

from tasks.core.artifacts import DeviceInfo
from tasks.core.config import QAFlowConfig
from tasks.train.backends.base import HardwareBackend
from tasks.train.resources import BackendUnavailableError

# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, by substring of the device name.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "A10G": 70e12, "V100": 125e12}


class CUDABackend(HardwareBackend):
    name = "cuda"
    device_type = "cuda"
    inference_autocast_dtype = torch.bfloat16
    inference_pad_multiple = 8  # few distinct shapes, tensor-core sizes
    fp16_supported = True
    pin_memory = True
    precision_pad_multiple = 8  # run_qa's pad_to_multiple_of for fp16/bf16
    shape_sensitive = True
    process_group = "nccl"

    @classmethod
    def present(cls, cfg: QAFlowConfig | None) -> bool:
        return torch.cuda.is_available()

    @classmethod
    def check_present(cls, cfg: QAFlowConfig | None) -> None:
        if not torch.cuda.is_available():
            raise BackendUnavailableError(
                "backend 'cuda' requested but torch sees no CUDA device "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); "
                "install a CUDA build of torch on a GPU machine, or use --backend cpu"
            )

    def bf16_supported(self) -> bool:
        return torch.cuda.is_bf16_supported()

    def cuda_graphs(self, compile_mode: str | None) -> bool:
        return compile_mode == "reduce-overhead"

    def bind_local_rank(self, local_rank: int) -> None:
        torch.cuda.set_device(local_rank)

    def device_name(self) -> str:
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else super().device_name()

    def device_info(self, world_size: int = 1) -> DeviceInfo:
        return DeviceInfo(self.name, torch.cuda.get_device_name(0), torch.cuda.device_count(), world_size)

    def peak_memory_mb(self) -> float:
        """Peak GPU memory allocated."""
        return torch.cuda.max_memory_allocated() / 2**20

    def peak_flops(self, device_name: str) -> float | None:
        return peak_flops(device_name)


def peak_flops(device_name: str) -> float | None:
    for key, value in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return value
    return None
