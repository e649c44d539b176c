"""The training step: resolve the model and family once, pick the hardware, train, store the inference recipe.

Used by `qaflow train` (features built here from the configured data) and the retrain flow (features from the
DVC `featurize` stage). A distributed `Launch` runs DDP workers through torchrun (`tasks.pipeline.ddp_worker`);
they also run `qaflow train`'s --do_eval / --do_predict steps, each rank its share (`pipeline.train_eval`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from transformers import TrainerCallback

from tasks.core.artifacts import CompileCacheStore, TrainResult, read_result, write_result
from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import EVAL_ON_IPU, PACKING_ON_IPU, ConfigError, QAFlowConfig, load_config
from tasks.core.data import QADataset
from tasks.core.family import ModelFamily
from tasks.core.layout import TrainPaths, compile_cache_dir
from tasks.core.model_spec import ModelSpec
from tasks.core.specs import inference_recipe
from tasks.families.registry import check_family_name, resolve_family
from tasks.pipeline.featurize import build_train_features
from tasks.pipeline.prediction import DDP_WORKER
from tasks.pipeline.results import save_train_outputs
from tasks.pipeline.stages import load_split
from tasks.pipeline.train_eval import eval_split, shared_steps, training_evaluator, write_step_results
from tasks.train.compile_cache import LocalCompileCacheStore
from tasks.train.ddp import (
    Launch,
    ResultOnAnotherNode,
    TorchRanks,
    join_worker_group,
    launch_torchrun,
    read_job,
    write_job,
)
from tasks.train.evaluation import Evaluator
from tasks.train.hardware import detect_backend
from tasks.train.ipu import build_ipu_job, check_ipu_environment, ipu_result, run_ipu_job
from tasks.train.resources import BackendUnavailableError
from tasks.train.trainer import packing_support, run_trainer

log = logging.getLogger(__name__)


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
    spec: ModelSpec | None = None,
    backend: str | None = None,
    compile_cache: CompileCacheStore | None = None,
    eval_data: Path | None = None,
    train_examples: int | None = None,
    eval_set: QADataset | None = None,
    steps: Sequence[str] = (),
) -> TrainResult:
    """Fine-tune `cfg.model` on saved training features (the IPU backend reads the raw data file instead).

    The output root gets the model with `inference_recipe.json` (windows, n-best, generation, batch size) beside
    the weights, `trainer_state.json`, run_qa's `train_results.json` / `all_results.json` and qaflow's record
    (`TrainPaths`); `data_version` (SQuAD "1.1" / "2.0") decides the recipe's default null-answer mode.
    `callbacks` (extra Trainer callbacks: live tracking, tune's pruning report) reach the in-process Trainer only:
    DDP workers and the IPU backend run elsewhere and train without them (a warning says so; tune refuses those
    backends itself). With an `eval_strategy`, the model is scored during training on `eval_data` (else the
    configured eval split; `train.evaluation`), shared by every rank under DDP. `spec`, `family`, `backend` and the
    eval split (`eval_set`) are resolved / loaded here unless the caller did (`train_from_config`, once per
    command); a caller that passes `backend` has checked packing for it. `steps` ("eval", "predict"): run by the
    DDP workers after training (`qaflow train --do_eval / --do_predict`; their results: `read_step_results`).
    """
    spec = spec or ModelSpec.from_config(cfg)
    family = family or resolve_family(spec.family, spec.path)
    if backend is None:
        backend = detect_backend(cfg.train.backend, cfg.ipu.ipu_python)
        check_packing(cfg, family, backend)
    recipe = inference_recipe(cfg, family.name, data_version)
    launch = launch or Launch()
    evaluates = cfg.train.eval_strategy != "no"
    if evaluates and backend == "ipu":
        raise ConfigError(EVAL_ON_IPU)
    eval_set = (eval_set or eval_split(cfg, eval_data)) if evaluates else None  # checked before any model work
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
        result = launch_ddp(cfg, backend, paths, launch, features_path=features_path, eval_data=eval_data, steps=steps)
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
    compile_cache: CompileCacheStore | None = None, keep_model: bool = False,
) -> TrainResult:  # fmt: skip
    """One process (or one DDP rank): the family's saved features through the shared Trainer core."""
    return run_trainer(
        family, spec, cfg.train, family.load_train_features(features_path),
        backend=backend, paths=paths, dynamic_padding=not cfg.features.pad_to_max_length, callbacks=callbacks,
        evaluator=evaluator, compile_cache=compile_cache, keep_model=keep_model,
    )  # fmt: skip


def launch_ddp(
    cfg: QAFlowConfig, backend: str, paths: TrainPaths, launch: Launch, *, features_path: Path | None,
    eval_data: Path | None = None, steps: Sequence[str] = (),
) -> TrainResult | None:  # fmt: skip
    """Start this node's workers with torchrun: they train on `features_path` (None: no training) and then run
    `steps`; the training result of global rank 0 (written on its node), None when they did not train."""
    paths.root.mkdir(parents=True, exist_ok=True)
    job = {"config": cfg.to_dict(), "backend": backend, "output_dir": str(paths.root), "steps": list(steps),
           "features": str(features_path) if features_path is not None else None,
           "eval_data": str(eval_data) if eval_data is not None else None}  # fmt: skip
    job_path = write_job(job, paths.root / "ddp_job.json")
    for earlier in (paths.result_file, paths.steps_file):  # never report an earlier run's result as this one's
        earlier.unlink(missing_ok=True)
    launch_torchrun(DDP_WORKER, job_path, launch, backend)
    last = paths.steps_file if steps else paths.result_file  # rank 0 writes it last
    if not last.exists() and launch.multi_node:
        raise ResultOnAnotherNode(f"{paths.root}: this node's workers finished; global rank 0's node holds the model")
    return read_result(paths.result_file) if features_path is not None else None


def run_ddp_worker(job_path: Path) -> None:
    """The body of one torchrun worker: rebuild the config, train this rank (rank 0 writes the result), then run
    the job's --do_eval / --do_predict steps with the trained model (each rank its share; rank 0 writes)."""
    job = read_job(job_path)
    join_worker_group(job["backend"])
    overrides = {f"{section}.{k}": v for section, values in job["config"].items() for k, v in values.items()}
    cfg = load_config(None, overrides)
    paths = TrainPaths(Path(job["output_dir"]))
    spec = ModelSpec.from_config(cfg)
    family = resolve_family(spec.family, spec.path)
    ranks = TorchRanks.current()
    rank_zero = ranks is None or ranks.rank == 0
    steps = job.get("steps") or []
    model, model_dir, epoch = None, cfg.model.model_name_or_path, None  # without training: the given checkpoint
    dataset = eval_split(cfg, job.get("eval_data")) if cfg.train.eval_strategy != "no" or "eval" in steps else None
    if job.get("features") is not None:
        evaluator = None  # in-training evaluation: every rank runs its share, rank 0 scores and shares the scores
        if cfg.train.eval_strategy != "no" and dataset is not None:
            evaluator = training_evaluator(cfg, family, spec, dataset, paths.root, ranks)
        local_cache = LocalCompileCacheStore(compile_cache_dir(Path.cwd()))
        result = train_family(
            cfg, family, spec, Path(job["features"]), job["backend"], paths, evaluator=evaluator,
            compile_cache=local_cache, keep_model=bool(steps),
        )  # fmt: skip
        if rank_zero:
            write_result(result, paths.result_file)
        model, model_dir, epoch = result.model, result.model_dir, result.metrics.get("epoch")
    if steps:
        results = shared_steps(
            cfg, steps, model_dir, paths.root, family=family, ranks=ranks, trained=model, epoch=epoch, eval_set=dataset
        )  # fmt: skip
        if rank_zero:
            write_step_results(results, paths.steps_file)


def predict_on_workers(cfg: QAFlowConfig, launch: Launch, steps: Sequence[str]) -> None:
    """`qaflow train --do_eval / --do_predict --nproc_per_node N` without training: torchrun workers predict
    `model_name_or_path` (on every node), each its share; global rank 0 writes the results (`read_step_results`;
    `ResultOnAnotherNode` on the other nodes)."""
    backend = detect_backend(cfg.train.backend, cfg.ipu.ipu_python)
    launch_ddp(cfg, backend, TrainPaths(Path(cfg.train.output_dir)), launch, features_path=None, steps=steps)


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


def train_from_config(
    cfg: QAFlowConfig,
    *,
    launch: Launch | None = None,
    spec: ModelSpec | None = None,
    family: ModelFamily | None = None,
    eval_set: QADataset | None = None,
    steps: Sequence[str] = (),
) -> TrainResult:
    """`qaflow train`: load the training split, build features, fine-tune into `train.output_dir`.

    The split is loaded once; the model spec and family (unless given), the backend and the packing check are
    resolved once, before any featurization, and passed down to `train_model` with the eval split the caller
    loaded (`eval_set`, for in-training evaluation) and the `steps` DDP workers run after training.
    """
    check_family_name(cfg.model.model_family)  # cheap checks first
    check_resume_checkpoint(cfg.train.resume_from_checkpoint)
    dataset = load_split(cfg, "train")
    spec = spec or ModelSpec.from_config(cfg)
    family = family or resolve_family(spec.family, spec.path)
    backend = detect_backend(cfg.train.backend, cfg.ipu.ipu_python)
    check_packing(cfg, family, backend)
    paths = TrainPaths(Path(cfg.train.output_dir))
    paths.root.mkdir(parents=True, exist_ok=True)
    features = build_train_features(cfg, family, dataset.examples, load_tokenizer(spec.tokenizer_path))
    family.save_train_features(features, paths.features_file)
    log.info("training on %d examples -> %d features", len(dataset.examples), len(features))
    return train_model(
        cfg, features_path=paths.features_file, data_path=Path(cfg.data.train_file), paths=paths,
        data_version=dataset.version, launch=launch, family=family, spec=spec, backend=backend,
        train_examples=len(dataset.examples), compile_cache=LocalCompileCacheStore(compile_cache_dir(Path.cwd())),
        eval_set=eval_set, steps=steps,
    )  # fmt: skip
