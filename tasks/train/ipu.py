"""Graphcore IPU backend: optimum-graphcore 0.7.1 in its own environment, driven as a subprocess.

optimum-graphcore 0.7.1 pins transformers 4.29.2 and needs Graphcore's `poptorch` (shipped with the Poplar
SDK, not on PyPI), so it can never be imported next to qaflow's transformers 5. The IPU environment is a
separate virtual environment (`requirements-ipu.txt`) whose interpreter is `cfg.ipu.ipu_python`; this module
writes a JSON job spec (configuration translated by `tasks.train.ipu_config`), runs `tasks/train/ipu_worker.py`
inside that environment (checked by `tasks.train.ipu_env`) and wraps its metrics as a `TrainResult`.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.artifacts import DeviceInfo, TrainResult
from tasks.core.config import QAFlowConfig
from tasks.core.data import load_dataset_file, to_squad_json
from tasks.core.io import write_json_atomic
from tasks.core.layout import TrainPaths
from tasks.core.model_spec import resolve_model_path
from tasks.train.ipu_config import device_allocation, ipu_config_overrides, ipu_training_arguments
from tasks.train.ipu_env import (
    SETUP_HINT,
    IPUUnavailableError,
    check_ipu_environment,
    last_json_object,
    resolve_ipu_python,
)

log = logging.getLogger(__name__)

WORKER_PATH = Path(__file__).resolve().with_name("ipu_worker.py")
JOB_SPEC_NAME = "ipu_job.json"
LOG_NAME = "ipu_train.log"
SPEC_VERSION = 1
# worker exit codes (see ipu_worker.py)
EXIT_BAD_SPEC = 2
EXIT_NO_POPTORCH = 3
EXIT_NO_OPTIMUM = 4


class IPUJobError(RuntimeError):
    """The IPU worker failed; carries its exit code and the tail of its log."""

    def __init__(self, message: str, returncode: int | None, log_tail: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.log_tail = log_tail


class IPUWorkerEnvironmentError(IPUJobError, IPUUnavailableError):
    """The worker started but its environment lacks poptorch (exit 3) or optimum-graphcore (exit 4)."""


@dataclass
class IPUJob:
    argv: list[str]
    spec_path: Path
    log_path: Path
    output_dir: Path
    spec: dict[str, Any]


def _export_squad(source: Path, target: Path, policy: str, max_samples: int | None) -> int:
    """Validate `source` with qaflow's loader and write it as nested SQuAD JSON (the worker's one format)."""
    dataset = load_dataset_file(source, policy=policy, max_samples=max_samples)  # type: ignore[arg-type]
    write_json_atomic(to_squad_json(dataset), target)
    return len(dataset)


def build_ipu_job(cfg: QAFlowConfig, train_file: Path, eval_file: Path | None, output_dir: Path) -> IPUJob:
    """Write `output_dir/ipu_job.json` (atomically) and return the worker's command line.

    The data files are validated and normalised to nested SQuAD JSON under `output_dir/ipu_data/`, so the
    worker, which cannot import qaflow, reads one simple format.
    """
    output_dir = Path(output_dir).resolve()
    output_dir.mkdir(parents=True, exist_ok=True)
    python = resolve_ipu_python(cfg.ipu.ipu_python)
    alloc = device_allocation(cfg)
    data_dir = output_dir / "ipu_data"
    policy = cfg.data.bad_record_policy
    n_train = _export_squad(Path(train_file), data_dir / "train.json", policy, cfg.data.max_train_samples)
    eval_path = None
    if eval_file is not None:
        eval_path = data_dir / "eval.json"
        _export_squad(Path(eval_file), eval_path, policy, cfg.data.max_eval_samples)
    model = resolve_model_path(cfg.model.model_name_or_path)
    spec: dict[str, Any] = {
        "spec_version": SPEC_VERSION,
        "model_name_or_path": model,
        "tokenizer_name": resolve_model_path(cfg.model.tokenizer_name) if cfg.model.tokenizer_name else model,
        "ipu_config_name": cfg.ipu.ipu_config_name,
        "ipu_config_overrides": ipu_config_overrides(cfg),
        "layers_per_ipu_set": cfg.ipu.layers_per_ipu is not None,
        "training_args": ipu_training_arguments(cfg, output_dir),
        "pod_type": alloc.pod_type,
        "pod_ipus": alloc.pod_ipus,
        "train_file": str(data_dir / "train.json"),
        "train_examples": n_train,
        "eval_file": str(eval_path) if eval_path else None,
        "max_seq_length": cfg.features.max_seq_length,
        "doc_stride": cfg.features.doc_stride,
        "output_dir": str(output_dir),
        "model_dir": str(TrainPaths(output_dir).model_dir),
        "metrics_file": str(output_dir / "ipu_metrics.json"),
    }
    spec_path = write_json_atomic(spec, output_dir / JOB_SPEC_NAME, indent=2)
    argv = [str(python), str(WORKER_PATH), str(spec_path)]
    return IPUJob(argv=argv, spec_path=spec_path, log_path=output_dir / LOG_NAME, output_dir=output_dir, spec=spec)


def run_ipu_job(
    job: IPUJob, *, timeout: float | None = None, echo: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run the worker, stream its output (stdout and stderr) into `job.log_path`, return its final metrics.

    Non-zero exit raises `IPUJobError` (`IPUWorkerEnvironmentError` for exit 3/4, a missing poptorch or
    optimum-graphcore) with the exit code and the log tail.
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    tail: collections.deque[str] = collections.deque(maxlen=40)
    log.info("IPU job: %s (log %s)", " ".join(job.argv), job.log_path)
    with open(job.log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            job.argv, cwd=job.output_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, encoding="utf-8", errors="replace", bufsize=1,
        )  # fmt: skip
        killed = threading.Event()

        def _kill() -> None:
            killed.set()
            proc.kill()

        timer = threading.Timer(timeout, _kill) if timeout else None
        if timer:
            timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log_file.write(line)
                log_file.flush()
                tail.append(line)
                if echo:
                    echo(line.rstrip("\n"))
            returncode = proc.wait()
        finally:
            if timer:
                timer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    text = "".join(tail).rstrip()
    if returncode != 0:
        raise _job_error(job, returncode, text, timed_out=killed.is_set())
    metrics = last_json_object(text, require_key="train_runtime")
    if metrics is None:
        raise IPUJobError(
            f"IPU worker exited 0 but printed no final metrics line; log {job.log_path}:\n{text}", 0, text
        )
    return metrics


def _job_error(job: IPUJob, returncode: int, tail: str, timed_out: bool) -> IPUJobError:
    where = f"log {job.log_path}, last lines:\n{tail}"
    if returncode == EXIT_NO_POPTORCH:
        return IPUWorkerEnvironmentError(
            f"IPU worker exit code 3: poptorch missing in {job.argv[0]}; {SETUP_HINT}. {where}",
            returncode,
            tail,
        )
    if returncode == EXIT_NO_OPTIMUM:
        return IPUWorkerEnvironmentError(
            f"IPU worker exit code 4: optimum-graphcore/transformers missing in {job.argv[0]}; {SETUP_HINT}. {where}",
            returncode,
            tail,
        )
    reason = "timed out and was killed" if timed_out else f"failed with exit code {returncode}"
    if returncode == EXIT_BAD_SPEC:
        reason += " (bad job spec)"
    return IPUJobError(f"IPU worker {reason}; {where}", returncode, tail)


def ipu_result(cfg: QAFlowConfig, metrics: dict[str, Any], output_dir: Path) -> TrainResult:
    """Wrap the worker's metrics as a `TrainResult` (numeric metrics only; device = the IPUs used)."""
    output_dir = Path(output_dir).resolve()
    ipus = int(metrics.get("ipus") or device_allocation(cfg).total_ipus)
    replicas = int(metrics.get("replication_factor") or device_allocation(cfg).replication_factor)
    per_replica = ipus // max(replicas, 1)
    device = DeviceInfo(
        backend="ipu",
        device_name=f"Graphcore IPU {cfg.ipu.pod_type} ({replicas} x {per_replica}-IPU pipelines)",
        device_count=ipus,
        world_size=replicas,
    )
    numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    return TrainResult(
        model_dir=Path(metrics.get("model_dir") or TrainPaths(output_dir).model_dir),
        metrics=numeric,
        device=device,
        artifacts={"ipu_job": output_dir / JOB_SPEC_NAME, "ipu_log": output_dir / LOG_NAME},
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m tasks.train.ipu [IPU_PYTHON]`: print the IPU environment report or what is missing."""
    args = sys.argv[1:] if argv is None else argv
    python = args[0] if args else ".venv-ipu/bin/python"
    try:
        report = check_ipu_environment(python, require_hardware=False)
    except IPUUnavailableError as exc:
        print(f"IPU unavailable: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report.to_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
