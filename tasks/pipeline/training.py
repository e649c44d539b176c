"""The training step: resolve the model and family once, pick the hardware, train, store the inference recipe.

Used by `qaflow train` (features built here from the configured data) and the retrain flow (features from the
DVC `featurize` stage). `nproc_per_node > 1` runs DDP workers through torchrun (`tasks.pipeline.ddp_worker`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch.distributed as dist
from transformers import TrainerCallback

from tasks.core.artifacts import TrainResult, read_result, write_result
from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import QAFlowConfig, load_config
from tasks.core.family import ModelFamily
from tasks.core.layout import TrainPaths
from tasks.core.specs import ModelSpec, inference_recipe
from tasks.families.registry import check_family_name, resolve_family
from tasks.pipeline.stages import build_train_features, load_split
from tasks.train.ddp import launch_torchrun, read_job, write_job
from tasks.train.hardware import detect_backend
from tasks.train.ipu import build_ipu_job, check_ipu_environment, ipu_result, run_ipu_job
from tasks.train.resources import BackendUnavailableError
from tasks.train.trainer import run_trainer

log = logging.getLogger(__name__)

DDP_WORKER = "tasks.pipeline.ddp_worker"


def train_model(
    cfg: QAFlowConfig,
    *,
    features_path: Path,
    data_path: Path,
    paths: TrainPaths,
    data_version: str = "1.1",
    nproc_per_node: int = 1,
    family: ModelFamily | None = None,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:
    """Fine-tune `cfg.model` on saved training features (the IPU backend reads the raw data file instead).

    The model directory gets `inference_recipe.json` (windows, n-best, generation, batch size) beside the weights;
    `data_version` (SQuAD "1.1" / "2.0") decides its default null-answer mode. `callbacks` (extra
    TrainerCallbacks, e.g. live tracking) reach the in-process Trainer; DDP workers and the IPU backend run
    elsewhere and do not get them.
    """
    spec = ModelSpec.from_config(cfg)
    family = family or resolve_family(spec.family, spec.path)
    backend = detect_backend(cfg.train.backend, cfg.ipu.ipu_python)
    recipe = inference_recipe(cfg, family.name, data_version)
    if backend == "ipu":
        if family.name != "extractive":
            raise BackendUnavailableError("the IPU backend trains extractive (span) models only")
        check_ipu_environment(cfg.ipu.ipu_python)
        job = build_ipu_job(cfg, Path(data_path), None, paths.root)
        result = ipu_result(cfg, run_ipu_job(job), paths.root)
        recipe.save(result.model_dir)
        return result
    if nproc_per_node > 1:
        result = launch_ddp(cfg, backend, features_path, paths, nproc_per_node)
    else:
        result = train_family(cfg, family, spec, features_path, backend, paths, callbacks)
    recipe.save(result.model_dir)
    return result


def train_family(
    cfg: QAFlowConfig, family: ModelFamily, spec: ModelSpec, features_path: Path, backend: str, paths: TrainPaths,
    callbacks: Sequence[TrainerCallback] = (),
) -> TrainResult:  # fmt: skip
    """One process (or one DDP rank): the family's saved features through the shared Trainer core."""
    return run_trainer(
        family, spec, cfg.train, family.load_train_features(features_path),
        backend=backend, paths=paths, dynamic_padding=not cfg.features.pad_to_max_length, callbacks=callbacks,
    )  # fmt: skip


def launch_ddp(
    cfg: QAFlowConfig, backend: str, features_path: Path, paths: TrainPaths, nproc_per_node: int
) -> TrainResult:
    """Start `nproc_per_node` workers with torchrun on this node and collect rank 0's result."""
    paths.root.mkdir(parents=True, exist_ok=True)
    job = {"config": cfg.to_dict(), "backend": backend, "features": str(features_path), "output_dir": str(paths.root)}
    job_path = write_job(job, paths.root / "ddp_job.json")
    launch_torchrun(DDP_WORKER, job_path, nproc_per_node, backend)
    return read_result(paths.result_file)


def run_ddp_worker(job_path: Path) -> None:
    """The body of one torchrun worker: rebuild the config, train this rank; rank 0 writes the result."""
    job = read_job(job_path)
    overrides = {f"{section}.{k}": v for section, values in job["config"].items() for k, v in values.items()}
    cfg = load_config(None, overrides)
    paths = TrainPaths(Path(job["output_dir"]))
    spec = ModelSpec.from_config(cfg)
    family = resolve_family(spec.family, spec.path)
    result = train_family(cfg, family, spec, Path(job["features"]), job["backend"], paths)
    if not dist.is_initialized() or dist.get_rank() == 0:
        write_result(result, paths.result_file)


def train_from_config(cfg: QAFlowConfig, *, nproc_per_node: int = 1) -> TrainResult:
    """`qaflow train`: load the training split, build features, fine-tune into `train.output_dir`."""
    check_family_name(cfg.model.model_family)  # cheap checks first
    paths = TrainPaths(Path(cfg.train.output_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    dataset = load_split(cfg, "train")
    spec = ModelSpec.from_config(cfg)
    family = resolve_family(spec.family, spec.path)
    features = build_train_features(cfg, family, dataset.examples, load_tokenizer(spec.tokenizer_path))
    family.save_train_features(features, paths.features_file)
    log.info("training on %d examples -> %d features", len(dataset.examples), len(features))
    result = train_model(
        cfg, features_path=paths.features_file, data_path=Path(cfg.data.train_file), paths=paths,
        data_version=dataset.version, nproc_per_node=nproc_per_node, family=family,
    )  # fmt: skip
    result.metrics.setdefault("train_examples", float(len(dataset.examples)))
    write_result(result, paths.result_file)
    return result
