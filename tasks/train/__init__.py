"""Training behind one interface: `train(cfg, ...)` picks the backend; nothing else knows which one runs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from tasks.config import QAFlowConfig
from tasks.train.common import BackendUnavailableError, TrainResult, detect_backend, read_result

log = logging.getLogger(__name__)

__all__ = ["BackendUnavailableError", "TrainResult", "train"]


def train(
    cfg: QAFlowConfig,
    *,
    features_path: Path,
    data_path: Path,
    output_dir: Path,
    nproc_per_node: int = 1,
) -> TrainResult:
    """Fine-tune `cfg.model` on the prepared training features (or, for the IPU, the raw data file).

    `nproc_per_node > 1` runs data-parallel (DDP) workers through torchrun: gloo on CPU, NCCL on CUDA.
    """
    backend = detect_backend(cfg.train.backend, cfg.ipu.ipu_python)
    output_dir = Path(output_dir)
    if backend == "ipu":
        from tasks.family import resolve_family
        from tasks.train.ipu import build_ipu_job, check_ipu_environment, ipu_result, run_ipu_job

        if resolve_family(cfg.model.model_family, cfg.model.model_name_or_path) != "extractive":
            raise BackendUnavailableError("the IPU backend trains extractive (span) models only")
        check_ipu_environment(cfg.ipu.ipu_python)
        job = build_ipu_job(cfg, Path(data_path), None, output_dir)
        return ipu_result(cfg, run_ipu_job(job), output_dir)
    if nproc_per_node > 1:
        return launch_ddp(cfg, backend, features_path, output_dir, nproc_per_node)
    from tasks.family import train_family

    return train_family(cfg, features_path, backend, output_dir)


def launch_ddp(
    cfg: QAFlowConfig, backend: str, features_path: Path, output_dir: Path, nproc_per_node: int
) -> TrainResult:
    """Start `nproc_per_node` workers with torchrun on this node and collect rank 0's result."""
    from tasks.io import write_json_atomic

    output_dir.mkdir(parents=True, exist_ok=True)
    job_path = output_dir / "ddp_job.json"
    result_path = output_dir / "train_result.json"
    write_json_atomic(
        {
            "config": cfg.to_dict(),
            "backend": backend,
            "features": str(features_path),
            "output_dir": str(output_dir),
        },
        job_path,
    )
    argv = [
        sys.executable, "-m", "torch.distributed.run",
        "--standalone", f"--nproc_per_node={nproc_per_node}",
        "-m", "tasks.train.worker", str(job_path),
    ]  # fmt: skip
    env = dict(os.environ)
    if backend == "cpu":
        # share the cores between the workers instead of oversubscribing them
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc_per_node)))
    log.info("launching DDP: %s", " ".join(argv))
    proc = subprocess.run(argv, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"DDP training failed (torchrun exit {proc.returncode}); see the worker output above")
    return read_result(result_path)


def load_job(path: Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))
