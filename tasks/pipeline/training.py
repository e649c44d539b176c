"""The training step: resolve the model and family once, pick the hardware, train, store the inference recipe.

Used by `qaflow train` (features built here from the configured data) and the retrain flow (features from the
DVC `featurize` stage). A distributed `Launch` runs DDP workers through torchrun (`tasks.pipeline.ddp_worker`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch.distributed as dist
from transformers import TrainerCallback

from tasks.core.artifacts import CompileCacheStore, TrainResult, read_result, write_result
from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import EVAL_ON_IPU, PACKING_ON_IPU, ConfigError, QAFlowConfig, load_config
from tasks.core.family import ModelFamily
from tasks.core.layout import TrainPaths, compile_cache_dir
from tasks.core.specs import ModelSpec, inference_recipe
from tasks.families.registry import check_family_name, resolve_family
from tasks.pipeline.results import save_train_outputs
from tasks.pipeline.stages import build_train_features, load_split
from tasks.pipeline.train_eval import eval_split, training_evaluator
from tasks.train.compile_cache import LocalCompileCacheStore
from tasks.train.ddp import Launch, ResultOnAnotherNode, join_worker_group, launch_torchrun, read_job, write_job
from tasks.train.evaluation import Evaluator
from tasks.train.hardware import detect_backend
from tasks.train.ipu import build_ipu_job, check_ipu_environment, ipu_result, run_ipu_job
from tasks.train.resources import BackendUnavailableError
from tasks.train.trainer import packing_support, run_trainer

log = logging.getLogger(__name__)

DDP_WORKER = "tasks.pipeline.ddp_worker"


def train_model(
    cfg: QAFlowConfig,
    *,
    features_path: Path,
    data_path: Path,
    paths: TrainPaths,
    data_version: str = "1.1",
    launch: Launch | None = None,
    family: ModelFamily | None = None,
    callbacks: Sequence[TrainerCallback] = (),
    compile_cache: CompileCacheStore | None = None,
    eval_data: Path | None = None,
    train_examples: int | None = None,
) -> TrainResult:
    """Fine-tune `cfg.model` on saved training features (the IPU backend reads the raw data file instead).

    The output root gets the model with `inference_recipe.json` (windows, n-best, generation, batch size) beside
    the weights, `trainer_state.json`, run_qa's `train_results.json` / `all_results.json` and qaflow's record
    (`TrainPaths`); `data_version` (SQuAD "1.1" / "2.0") decides the recipe's default null-answer mode.
    `callbacks` (extra Trainer callbacks: live tracking, tune's pruning report) reach the in-process Trainer only:
    DDP workers and the IPU backend run elsewhere and train without them (a warning says so; tune refuses those
    backends itself). With an `eval_strategy`, the model is scored during training on `eval_data` (else the
    configured eval split; `train.evaluation`), on global rank 0 under DDP.
    """
    spec = ModelSpec.from_config(cfg)
    family = family or resolve_family(spec.family, spec.path)
    backend = detect_backend(cfg.train.backend, cfg.ipu.ipu_python)
    recipe = inference_recipe(cfg, family.name, data_version)
    launch = launch or Launch()
    check_packing(cfg, family, backend)
    evaluates = cfg.train.eval_strategy != "no"
    if evaluates and backend == "ipu":
        raise ConfigError(EVAL_ON_IPU)
    eval_set = eval_split(cfg, eval_data) if evaluates else None  # checked before any model work
    if callbacks and (backend == "ipu" or launch.distributed):
        log.warning("%d Trainer callback(s) (live tracking) do not reach DDP workers or the IPU", len(callbacks))
        callbacks = ()
    if backend == "ipu":
        if family.name != "extractive":
            raise BackendUnavailableError("the IPU backend trains extractive (span) models only")
        check_ipu_environment(cfg.ipu.ipu_python)
        job = build_ipu_job(cfg, Path(data_path), None, paths.root)
        result = ipu_result(cfg, run_ipu_job(job), paths.root)
    elif launch.distributed:
        result = launch_ddp(cfg, backend, features_path, paths, launch, eval_data)
    else:
        evaluator = training_evaluator(cfg, family, spec, eval_set, paths.root) if eval_set is not None else None
        result = train_family(
            cfg,
            family,
            spec,
            features_path,
            backend,
            paths,
            callbacks,
            evaluator=evaluator,
            compile_cache=compile_cache,
        )
    recipe.save(result.model_dir)
    if train_examples is not None:
        result.metrics.setdefault("train_examples", float(train_examples))
    save_train_outputs(paths, result)
    return result


def train_family(
    cfg: QAFlowConfig, family: ModelFamily, spec: ModelSpec, features_path: Path, backend: str, paths: TrainPaths,
    callbacks: Sequence[TrainerCallback] = (), evaluator: Evaluator | None = None,
    compile_cache: CompileCacheStore | None = None,
) -> TrainResult:  # fmt: skip
    """One process (or one DDP rank): the family's saved features through the shared Trainer core."""
    return run_trainer(
        family, spec, cfg.train, family.load_train_features(features_path),
        backend=backend, paths=paths, dynamic_padding=not cfg.features.pad_to_max_length, callbacks=callbacks,
        evaluator=evaluator, compile_cache=compile_cache,
    )  # fmt: skip


def launch_ddp(
    cfg: QAFlowConfig, backend: str, features_path: Path, paths: TrainPaths, launch: Launch,
    eval_data: Path | None = None,
) -> TrainResult:  # fmt: skip
    """Start this node's workers with torchrun; the result of global rank 0 (written on its node)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    job = {"config": cfg.to_dict(), "backend": backend, "features": str(features_path), "output_dir": str(paths.root),
           "eval_data": str(eval_data) if eval_data is not None else None}  # fmt: skip
    job_path = write_job(job, paths.root / "ddp_job.json")
    paths.result_file.unlink(missing_ok=True)  # never report an earlier run's result as this one's
    launch_torchrun(DDP_WORKER, job_path, launch, backend)
    if not paths.result_file.exists() and launch.multi_node:
        raise ResultOnAnotherNode(f"{paths.root}: this node's workers finished; global rank 0's node holds the model")
    return read_result(paths.result_file)


def run_ddp_worker(job_path: Path) -> None:
    """The body of one torchrun worker: rebuild the config, train this rank; rank 0 writes the result."""
    job = read_job(job_path)
    join_worker_group(job["backend"])
    overrides = {f"{section}.{k}": v for section, values in job["config"].items() for k, v in values.items()}
    cfg = load_config(None, overrides)
    paths = TrainPaths(Path(job["output_dir"]))
    spec = ModelSpec.from_config(cfg)
    family = resolve_family(spec.family, spec.path)
    rank_zero = not dist.is_initialized() or dist.get_rank() == 0
    evaluator = None  # in-training evaluation runs on global rank 0; the other ranks receive its scores
    if rank_zero and cfg.train.eval_strategy != "no":
        dataset = eval_split(cfg, job.get("eval_data"))
        evaluator = training_evaluator(cfg, family, spec, dataset, paths.root)
    local_cache = LocalCompileCacheStore(compile_cache_dir(Path.cwd()))
    result = train_family(
        cfg, family, spec, Path(job["features"]), job["backend"], paths, evaluator=evaluator, compile_cache=local_cache
    )
    if rank_zero:
        write_result(result, paths.result_file)


def check_packing(cfg: QAFlowConfig, family: ModelFamily, backend: str) -> None:
    """`train.packing` needs a family that packs and a backend that runs the Trainer (ConfigError otherwise);
    whether the model itself computes packed windows as alone is checked once it is loaded (run_trainer)."""
    if not cfg.train.packing:
        return
    if backend == "ipu":
        raise ConfigError(PACKING_ON_IPU)
    packing_support(family)


def check_resume_checkpoint(checkpoint: str | None) -> None:
    """`--resume_from_checkpoint` must name a checkpoint directory the Trainer wrote (trainer_state.json)."""
    if checkpoint and not (Path(checkpoint) / "trainer_state.json").is_file():
        raise ConfigError(
            f"train.resume_from_checkpoint: {checkpoint}: not a Trainer checkpoint (no trainer_state.json)"
        )


def train_from_config(cfg: QAFlowConfig, *, launch: Launch | None = None) -> TrainResult:
    """`qaflow train`: load the training split, build features, fine-tune into `train.output_dir`."""
    check_family_name(cfg.model.model_family)  # cheap checks first
    check_resume_checkpoint(cfg.train.resume_from_checkpoint)
    dataset = load_split(cfg, "train")
    spec = ModelSpec.from_config(cfg)
    family = resolve_family(spec.family, spec.path)
    check_packing(cfg, family, cfg.train.backend)
    paths = TrainPaths(Path(cfg.train.output_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    features = build_train_features(cfg, family, dataset.examples, load_tokenizer(spec.tokenizer_path))
    family.save_train_features(features, paths.features_file)
    log.info("training on %d examples -> %d features", len(dataset.examples), len(features))
    return train_model(
        cfg, features_path=paths.features_file, data_path=Path(cfg.data.train_file), paths=paths,
        data_version=dataset.version, launch=launch, family=family, train_examples=len(dataset.examples),
        compile_cache=LocalCompileCacheStore(compile_cache_dir(Path.cwd())),
    )  # fmt: skip
