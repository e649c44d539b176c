"""Graphcore IPUs: training runs in their own environment as a subprocess (`tasks.train.ipu`, `ipu_worker`);
predictions run on the best other backend present (the IPU environment cannot load qaflow's transformers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tasks.core.artifacts import TrainResult
from tasks.core.config import ConfigError, QAFlowConfig, TrainConfig
from tasks.train.backends.base import HardwareBackend
from tasks.train.ddp import Launch
from tasks.train.ipu import build_ipu_job, ipu_result, run_ipu_job
from tasks.train.ipu_env import IPUUnavailableError, check_ipu_environment
from tasks.train.launchers import Launcher, TrainingJob
from tasks.train.resources import BackendUnavailableError

PACKING_ON_IPU = "train.packing: the IPU backend trains padded windows (Graphcore's pipeline); drop --packing"
EVAL_ON_IPU = "train.eval_strategy: the IPU backend cannot evaluate during training; use --eval_strategy no"


class IPUBackend(HardwareBackend):
    name = "ipu"
    predicts_here = False

    @classmethod
    def present(cls, cfg: QAFlowConfig | None) -> bool:
        """An IPU environment (`ipu.ipu_python`) that probes ready, IPUs included."""
        python = cfg.ipu.ipu_python if cfg is not None else None
        if not (python and Path(python).exists()):
            return False
        try:
            check_ipu_environment(python)
        except IPUUnavailableError:
            return False
        return True

    def check_settings(self, t: TrainConfig) -> None:
        if t.packing:
            raise ConfigError(PACKING_ON_IPU)
        if t.eval_strategy != "no":
            raise ConfigError(EVAL_ON_IPU)

    def launcher(self, launch: Launch) -> Launcher:
        return IPULauncher()


class IPULauncher:
    """optimum-graphcore in the IPU environment: the job's raw training file in, the model at the output root."""

    trains_here = False

    def train(self, job: TrainingJob, run_here: Callable[[], TrainResult]) -> TrainResult:
        if job.family.name != "extractive":
            raise BackendUnavailableError("the IPU backend trains extractive (span) models only")
        check_ipu_environment(job.cfg.ipu.ipu_python)
        ipu_job = build_ipu_job(job.cfg, Path(job.data_path), None, job.paths.root)
        return ipu_result(job.cfg, run_ipu_job(ipu_job), job.paths.root)
