"""Data-parallel training on one node: torchrun starts `nproc_per_node` copies of a worker module.

The job (config, backend, features, output directory) travels as a JSON file; each worker reads it, trains with
DDP (gloo on CPU, NCCL on CUDA) and rank 0 writes `train_result.json`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tasks.core.io import write_json_atomic

log = logging.getLogger(__name__)


def write_job(job: dict[str, Any], path: Path) -> Path:
    return write_json_atomic(job, path)


def read_job(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def launch_torchrun(worker_module: str, job_path: Path, nproc_per_node: int, backend: str) -> None:
    """Run `python -m worker_module JOB` under torchrun on this node; RuntimeError when a worker fails."""
    argv = [
        sys.executable, "-m", "torch.distributed.run",
        "--standalone", f"--nproc_per_node={nproc_per_node}",
        "-m", worker_module, str(job_path),
    ]  # fmt: skip
    env = dict(os.environ)
    if backend == "cpu":
        # share the cores between the workers instead of oversubscribing them
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc_per_node)))
    log.info("launching DDP: %s", " ".join(argv))
    proc = subprocess.run(argv, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"DDP training failed (torchrun exit {proc.returncode}); see the worker output above")
