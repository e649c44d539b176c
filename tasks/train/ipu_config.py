"""IPU configuration translation: qaflow's `cfg.ipu` / `cfg.train` into optimum-graphcore's `IPUConfig` overrides
and `IPUTrainingArguments`, and the device allocation.

Device allocation rule (as in Graphcore's notebooks, where one 4-IPU pipeline is replicated over the
pod): a replica is one pipelined copy of the model over `ipus_per_replica` IPUs (`len(layers_per_ipu)`,
or 4 when `layers_per_ipu` is not set, the layout of Graphcore's BERT IPU configs), and the pod is filled
with data-parallel replicas: `replication_factor = pod_ipus // ipus_per_replica` (pod4→1, pod8→2,
pod16→4, pod32→8, pod64→16 for a 4-IPU pipeline). The optimizer sees
`global_batch_size = micro_batch_size × gradient_accumulation × replicas`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.config import QAFlowConfig

POD_IPUS: dict[str, int] = {"pod4": 4, "pod8": 8, "pod16": 16, "pod32": 32, "pod64": 64}
DEFAULT_IPUS_PER_REPLICA = 4


@dataclass(frozen=True)
class IPUAllocation:
    pod_type: str
    pod_ipus: int
    ipus_per_replica: int
    replication_factor: int

    @property
    def total_ipus(self) -> int:
        return self.replication_factor * self.ipus_per_replica


def pod_ipus(pod_type: str) -> int:
    """Number of IPUs in a pod type (`pod4` ... `pod64`, case-insensitive)."""
    key = str(pod_type).strip().lower()
    if key not in POD_IPUS:
        raise ValueError(f"unknown ipu.pod_type {pod_type!r}; choose one of {', '.join(POD_IPUS)}")
    return POD_IPUS[key]


def device_allocation(cfg: QAFlowConfig) -> IPUAllocation:
    """Replicas × IPUs per replica for `cfg.ipu` (rule in the module docstring)."""
    ipu = cfg.ipu
    n_pod = pod_ipus(ipu.pod_type)
    layers = ipu.layers_per_ipu
    if layers is not None:
        if not layers or any(n < -1 for n in layers):
            raise ValueError(f"ipu.layers_per_ipu {layers!r}: needs one entry per IPU, each >= -1 (-1 = auto)")
        per_replica = len(layers)
    else:
        per_replica = DEFAULT_IPUS_PER_REPLICA
    if per_replica > n_pod:
        raise ValueError(f"ipu.layers_per_ipu pipelines the model over {per_replica} IPUs; {ipu.pod_type} has {n_pod}")
    return IPUAllocation(ipu.pod_type.lower(), n_pod, per_replica, n_pod // per_replica)


def global_batch_size(cfg: QAFlowConfig) -> int:
    """Samples per optimizer step: micro batch × gradient accumulation × replication factor."""
    ipu = cfg.ipu
    if ipu.micro_batch_size < 1 or ipu.ipu_gradient_accumulation_steps < 1:
        raise ValueError("ipu.micro_batch_size and ipu.ipu_gradient_accumulation_steps must be >= 1")
    return ipu.micro_batch_size * ipu.ipu_gradient_accumulation_steps * device_allocation(cfg).replication_factor


def default_executable_cache_dir() -> Path:
    """`$POPLAR_EXECUTABLE_CACHE_DIR` (the variable Graphcore's notebooks read), else `./exe_cache`."""
    return Path(os.environ.get("POPLAR_EXECUTABLE_CACHE_DIR") or "exe_cache").resolve()


def ipu_config_overrides(cfg: QAFlowConfig, cache_dir: Path | None = None) -> dict[str, Any]:
    """Keyword arguments for `IPUConfig.from_pretrained(cfg.ipu.ipu_config_name, **overrides)`.

    Only real `IPUConfig` attributes go here (it rejects unknown ones); the micro batch size and the loss
    scaling factor are `IPUTrainingArguments` fields in optimum-graphcore, see `ipu_training_arguments`.
    """
    alloc = device_allocation(cfg)
    overrides: dict[str, Any] = {
        "replication_factor": alloc.replication_factor,
        "gradient_accumulation_steps": cfg.ipu.ipu_gradient_accumulation_steps,
        "executable_cache_dir": str(cache_dir if cache_dir is not None else default_executable_cache_dir()),
    }
    if cfg.ipu.layers_per_ipu is not None:
        overrides["layers_per_ipu"] = list(cfg.ipu.layers_per_ipu)
        overrides["ipus_per_replica"] = alloc.ipus_per_replica
    return overrides


def ipu_training_arguments(cfg: QAFlowConfig, output_dir: Path) -> dict[str, Any]:
    """Keyword arguments for `IPUTrainingArguments` (micro batch, loss scaling, precision, schedule)."""
    t, ipu = cfg.train, cfg.ipu
    if t.bf16:
        raise ValueError("train.bf16: IPUs have no bfloat16; use train.fp16 (Graphcore's default) or fp32")
    if ipu.loss_scaling is not None and ipu.loss_scaling <= 0:
        raise ValueError(f"ipu.loss_scaling must be > 0, got {ipu.loss_scaling}")
    args: dict[str, Any] = {
        "output_dir": str(Path(output_dir).resolve()),
        "per_device_train_batch_size": ipu.micro_batch_size,
        "per_device_eval_batch_size": ipu.micro_batch_size,
        "gradient_accumulation_steps": ipu.ipu_gradient_accumulation_steps,
        "learning_rate": t.learning_rate,
        "num_train_epochs": t.num_train_epochs,
        "max_steps": t.max_steps,
        "warmup_ratio": t.warmup_ratio,
        "weight_decay": t.weight_decay,
        "seed": t.seed,
        "logging_steps": t.logging_steps,
        "save_strategy": t.save_strategy,
        "save_steps": t.save_steps,
        "save_total_limit": t.save_total_limit,
        "dataloader_num_workers": t.dataloader_num_workers,
        "dataloader_drop_last": True,  # compiled graphs need full batches
        "fp32": not t.fp16,
        "report_to": "none",
    }
    if ipu.loss_scaling is not None:
        args["loss_scaling"] = ipu.loss_scaling
    return args
