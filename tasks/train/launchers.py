"""How a training job is started: here, in this process, or as torchrun's data-parallel workers.

A backend picks its launcher (`HardwareBackend.launcher`): the CPU and CUDA run the Trainer in this process, or
under torchrun when `Launch` asks for several processes; the IPU has its own (`tasks.train.backends.ipu`). The
pipeline describes the job once (`TrainingJob`) and hands over what training in this process means (`run_here`:
the family's features through the shared Trainer, with the Trainer callbacks and the in-training evaluator),
which only a launcher that `trains_here` calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

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
        paths.root.mkdir(parents=True, exist_ok=True)
        eval_data = str(job.eval_data) if job.eval_data is not None else None
        spec = {"config": job.cfg.to_dict(), "backend": self.backend.name, "features": str(job.features_path),
                "output_dir": str(paths.root), "eval_data": eval_data}  # fmt: skip
        job_path = write_job(spec, paths.root / "ddp_job.json")
        paths.result_file.unlink(missing_ok=True)  # never report an earlier run's result as this one's
        launch_torchrun(job.worker_module, job_path, self.launch, self.backend)
        if not paths.result_file.exists() and self.launch.multi_node:
            raise ResultOnAnotherNode(f"{paths.root}: this node's workers finished; rank 0's node holds the model")
        return read_result(paths.result_file)
