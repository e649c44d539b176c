"""How a training job is started: here, in this process, or as torchrun's data-parallel workers.

A backend picks its launcher (`HardwareBackend.launcher`): the CPU and CUDA run the Trainer in this process, or
under torchrun when `Launch` asks for several processes; the IPU has its own (`tasks.train.backends.ipu`). The
pipeline describes the job once (`TrainingJob`) and hands over what training in this process means (`run_here`:
the family's features through the shared Trainer, with the Trainer callbacks and the in-training evaluator),
which only a launcher that `trains_here` calls. torchrun's workers may also run --do_eval / --do_predict after
training (`TrainingJob.steps`); `run_workers` starts them for any job (training, or prediction alone).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tasks.core.artifacts import TrainResult, read_result
from tasks.core.backend import Backend
from tasks.core.config import QAFlowConfig
from tasks.core.family import ModelFamily
from tasks.core.layout import TrainPaths
from tasks.train.ddp import Launch, ResultOnAnotherNode, launch_torchrun, write_job


@dataclass(frozen=True)
class TrainingJob:
    """One model to train, described once for whichever launcher runs it."""

    cfg: QAFlowConfig
    family: ModelFamily
    features_path: Path  # the family's saved training features (the Trainer's input)
    data_path: Path  # the raw training file (the IPU trains from it, not from the features)
    paths: TrainPaths
    eval_data: Path | None = None  # the eval split torchrun's workers load for in-training evaluation
    worker_module: str = ""  # what torchrun starts (`python -m MODULE JOB.json`) for a multi-process launch
    steps: tuple[str, ...] = ()  # what torchrun's workers run after training ("eval", "predict"), each its share


class Launcher(Protocol):
    trains_here: bool  # the Trainer runs in this process: Trainer callbacks and an evaluator reach it

    def train(self, job: TrainingJob, run_here: Callable[[], TrainResult]) -> TrainResult: ...


class InProcessLauncher:
    """The Trainer in this process."""

    trains_here = True

    def train(self, job: TrainingJob, run_here: Callable[[], TrainResult]) -> TrainResult:
        return run_here()


@dataclass(frozen=True)
class TorchrunLauncher:
    """This node's workers under torchrun (`tasks.train.ddp`); the result of global rank 0, written on its node."""

    backend: Backend
    launch: Launch
    trains_here = False

    def train(self, job: TrainingJob, run_here: Callable[[], TrainResult]) -> TrainResult:
        paths = job.paths
        eval_data = str(job.eval_data) if job.eval_data is not None else None
        spec = {"config": job.cfg.to_dict(), "features": str(job.features_path), "output_dir": str(paths.root),
                "eval_data": eval_data, "steps": list(job.steps)}  # fmt: skip
        outputs = [paths.result_file, paths.steps_file] if job.steps else [paths.result_file]  # rank 0's order
        run_workers(self.backend, self.launch, job.worker_module, spec, paths.root / "ddp_job.json", outputs)
        return read_result(paths.result_file)


def run_workers(
    backend: Backend, launch: Launch, worker_module: str, job: dict[str, Any], job_path: Path,
    outputs: Sequence[Path],
) -> None:  # fmt: skip
    """This node's torchrun workers on `job` (written to `job_path` with the backend's name, which each worker
    resolves again: `tasks.train.hardware.join_ddp_worker`). `outputs`: the files global rank 0 writes, the last
    one last; earlier runs' copies are removed first, so none is reported as this run's. `ResultOnAnotherNode`
    when a multi-node job's rank 0 ran elsewhere (its last output is not on this node)."""
    job_path.parent.mkdir(parents=True, exist_ok=True)
    write_job({**job, "backend": backend.name}, job_path)
    for earlier in outputs:
        earlier.unlink(missing_ok=True)
    launch_torchrun(worker_module, job_path, launch, backend)
    if outputs and not outputs[-1].exists() and launch.multi_node:
        raise ResultOnAnotherNode(
            f"{job_path.parent}: this node's workers finished; global rank 0's node holds its outputs"
        )
