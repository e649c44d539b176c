"""Data-parallel workers: torchrun starts `nproc_per_node` copies of a worker module on one node or several.

The job (config, backend, features, output directory) travels as a JSON file; each worker reads it, trains with
DDP (gloo on CPU, NCCL on CUDA) and global rank 0 writes `train_record.json`; a prediction job shares the model's
work instead (`TorchRanks`: rank 0 gathers every rank's outputs over the process group). Across nodes, torchrun's
own rendezvous (`--nnodes`, `--rdzv_backend c10d`, `--rdzv_endpoint HOST:PORT`, `--rdzv_id`) joins the launchers,
and `--max_restarts` lets the launcher restart failed workers, which resume from the last complete checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from tasks.core.io import write_json_atomic

log = logging.getLogger(__name__)


def write_job(job: dict[str, Any], path: Path) -> Path:
    return write_json_atomic(job, path)


def read_job(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def join_worker_group(backend: str, timeout: timedelta = timedelta(minutes=30)) -> None:
    """Join this worker group's process group, its store keys under the group's attempt number.

    torchrun restarts a failed group (`--max_restarts`) against the agent's same store, where the killed attempt's
    keys (every rank's gloo address) are still set: a rank of the new attempt can read its peer's dead address and
    fail with "connection refused" or wait forever. `TORCHELASTIC_RESTART_COUNT` names the attempt, so each one gets
    keys of its own. The Trainer (accelerate) then uses this group instead of making one.
    """
    if dist.is_initialized():
        return
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if backend == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    store, rank, world_size = next(dist.rendezvous("env://", rank, world_size, timeout=timeout))
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    dist.init_process_group(
        "nccl" if backend == "cuda" else "gloo", store=dist.PrefixStore(f"qaflow/attempt_{attempt}", store),
        rank=rank, world_size=world_size, timeout=timeout,
    )  # fmt: skip


class TorchRanks:
    """This worker group as prediction shares it (`tasks.core.shares.Ranks`): numpy arrays travel as tensors over
    the process group (point to point to rank 0), so it works across nodes without a shared filesystem. gloo
    sends CPU tensors; NCCL sends them through this rank's GPU."""

    def __init__(self) -> None:
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        nccl = dist.get_backend() == dist.Backend.NCCL
        self._device = torch.device("cuda", torch.cuda.current_device()) if nccl else torch.device("cpu")

    @classmethod
    def current(cls) -> TorchRanks | None:
        """The initialised process group of more than one worker, else None (one process)."""
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            return cls()
        return None

    def gather(self, arrays: list[np.ndarray]) -> list[list[np.ndarray]] | None:
        if self.rank != 0:
            for array in arrays:
                self._send(np.ascontiguousarray(array))
            return None
        return [arrays] + [[self._recv(like, src) for like in arrays] for src in range(1, self.size)]

    def failed_rank(self, ok: bool) -> int | None:
        flag = torch.tensor([0 if ok else self.rank + 1], dtype=torch.int64, device=self._device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item()) - 1 if int(flag.item()) else None

    def _send(self, array: np.ndarray) -> None:
        dist.send(torch.tensor(array.shape, dtype=torch.int64, device=self._device), dst=0)
        if array.size:
            dist.send(torch.from_numpy(array).to(self._device), dst=0)

    def _recv(self, like: np.ndarray, src: int) -> np.ndarray:
        """An array from `src` with the dtype and number of dimensions of rank 0's own `like`."""
        shape = torch.zeros(like.ndim, dtype=torch.int64, device=self._device)
        dist.recv(shape, src=src)
        dtype = torch.from_numpy(np.empty(0, like.dtype)).dtype
        buffer = torch.empty(tuple(int(n) for n in shape.tolist()), dtype=dtype, device=self._device)
        if buffer.numel():
            dist.recv(buffer, src=src)
        return buffer.cpu().numpy()


class ResultOnAnotherNode(Exception):  # noqa: N818 - not an error: this node's part is done
    """This node's workers finished; global rank 0 ran on another node, which holds the model and the result."""


@dataclass(frozen=True)
class Launch:
    """How torchrun starts this node's workers (its flag names): one node standalone, or several by rendezvous."""

    nproc_per_node: int = 1
    nnodes: str = "1"  # "N", or "MIN:MAX" for an elastic job
    node_rank: int | None = None  # static rendezvous only; c10d assigns ranks itself
    rdzv_backend: str = "c10d"
    rdzv_endpoint: str | None = None  # HOST:PORT every node can reach (the c10d store)
    rdzv_id: str = "qaflow"  # the same on every node of one job
    max_restarts: int = 0  # worker-group restarts after a failure (they resume from the last checkpoint)

    def __post_init__(self) -> None:
        if self.nproc_per_node < 1:
            raise ValueError(f"--nproc_per_node: {self.nproc_per_node} must be >= 1")
        if self.max_restarts < 0:
            raise ValueError(f"--max_restarts: {self.max_restarts} must be >= 0")
        if self.multi_node and not self.rdzv_endpoint:
            raise ValueError(f"--nnodes {self.nnodes}: several nodes need --rdzv_endpoint HOST:PORT")

    @property
    def multi_node(self) -> bool:
        return self.nnodes not in ("1", "1:1")

    @property
    def distributed(self) -> bool:
        return self.nproc_per_node > 1 or self.multi_node

    def torchrun_args(self) -> list[str]:
        common = [f"--nproc_per_node={self.nproc_per_node}", f"--max_restarts={self.max_restarts}"]
        if not self.multi_node:
            return ["--standalone", *common]
        args = [f"--nnodes={self.nnodes}", *common, f"--rdzv_backend={self.rdzv_backend}",
                f"--rdzv_endpoint={self.rdzv_endpoint}", f"--rdzv_id={self.rdzv_id}"]  # fmt: skip
        return args + ([f"--node_rank={self.node_rank}"] if self.node_rank is not None else [])


def launch_torchrun(worker_module: str, job_path: Path, launch: Launch, backend: str) -> None:
    """Run `python -m worker_module JOB` under torchrun; RuntimeError when the workers fail for good."""
    argv = [sys.executable, "-m", "torch.distributed.run", *launch.torchrun_args(), "-m", worker_module, str(job_path)]
    env = dict(os.environ)
    if backend == "cpu":
        # share the cores between the workers instead of oversubscribing them
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // launch.nproc_per_node)))
    log.info("launching DDP: %s", " ".join(argv))
    proc = subprocess.run(argv, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the DDP workers failed (torchrun exit {proc.returncode}); see the worker output above")
