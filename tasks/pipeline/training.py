"""The training step: resolve the model and family once, pick the hardware, train, store the inference recipe.

Used by `qaflow train` (features built here from the configured data) and the retrain flow (features from the
DVC `featurize` stage). The backend (`tasks.train.hardware`) picks the launcher: the Trainer in this process,
torchrun's DDP workers for a distributed `Launch` (`tasks.pipeline.ddp_worker`), or the IPU's subprocess. DDP
workers also run `qaflow train`'s --do_eval / --do_predict steps, each rank its share (`pipeline.train_eval`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from tasks.core.artifacts import CompileCacheStore, TrainResult, write_result
from tasks.core.backend import Backend
from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import ConfigError, QAFlowConfig, load_config
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
from tasks.train.batching import packing_support
from tasks.train.compile_cache import LocalCompileCacheStore
from tasks.train.evaluation import Evaluator
from tasks.train.hardware import (
    HardwareBackend,
    Launch,
    TorchRanks,
    TrainingJob,
    backend_for,
    inference_backend,
    run_workers,
)
from tasks.train.trainer import run_trainer

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
    backend: HardwareBackend | None = None,
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
    training elsewhere (DDP workers, the IPU's subprocess) trains without them (a warning says so; tune refuses
    such backends itself). With an `eval_strategy`, the model is scored during training on `eval_data` (else the
    configured eval split; `train.evaluation`), shared by every rank under DDP. `spec`, `family`, `backend` and
    the eval split (`eval_set`) are resolved / loaded here unless the caller did (`train_from_config`, once per
    command); a caller that passes `backend` has checked the train settings against it (`check_training`).
    `steps` ("eval", "predict"): run by the DDP workers after training (`qaflow train --do_eval / --do_predict`;
    their results: `read_step_results`).
    """
    spec = spec or ModelSpec.from_config(cfg)
    family = family or resolve_family(spec.family, spec.path)
    if backend is None:
        backend = backend_for(cfg)
        check_training(cfg, family, backend)
    recipe = inference_recipe(cfg, family.name, data_version)
    launcher = backend.launcher(launch or Launch())
    evaluates = cfg.train.eval_strategy != "no"
    eval_set = (eval_set or eval_split(cfg, eval_data)) if evaluates else None  # checked before any model work
    if callbacks and not launcher.trains_here:
        log.warning("%d Trainer callback(s) (live tracking) do not reach DDP workers or the IPU", len(callbacks))
        callbacks = ()
    job = TrainingJob(
        cfg, family, features_path, Path(data_path), paths, eval_data, worker_module=DDP_WORKER, steps=tuple(steps)
    )

    def train_here() -> TrainResult:
        evaluator = (
            training_evaluator(cfg, family, spec, eval_set, paths.root, backend) if eval_set is not None else None
        )
        return train_family(
            cfg, family, spec, features_path, backend, paths, callbacks, evaluator=evaluator,
            compile_cache=compile_cache,
        )  # fmt: skip

    result = launcher.train(job, train_here)
    recipe.save(result.model_dir)
    if train_examples is not None:
        result.metrics.setdefault("train_examples", float(train_examples))
    save_train_outputs(paths, result)
    return result


def train_family(
    cfg: QAFlowConfig, family: ModelFamily, spec: ModelSpec, features_path: Path, backend: Backend, paths: TrainPaths,
    callbacks: Sequence[TrainerCallback] = (), evaluator: Evaluator | None = None,
    compile_cache: CompileCacheStore | None = None, keep_model: bool = False,
) -> TrainResult:  # fmt: skip
    """One process (or one DDP rank): the family's saved features through the shared Trainer core."""
    return run_trainer(
        family, spec, cfg.train, family.load_train_features(features_path),
        backend=backend, paths=paths, dynamic_padding=not cfg.features.pad_to_max_length, callbacks=callbacks,
        evaluator=evaluator, compile_cache=compile_cache, keep_model=keep_model,
    )  # fmt: skip


def run_ddp_worker(job: dict[str, Any], backend: HardwareBackend) -> None:
    """The body of one torchrun worker, its group joined (`join_ddp_worker`): rebuild the config, train this rank
    (rank 0 writes the result), then run the job's --do_eval / --do_predict steps with the trained model (each
    rank its share; rank 0 writes)."""
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
            evaluator = training_evaluator(cfg, family, spec, dataset, paths.root, backend, ranks)
        local_cache = LocalCompileCacheStore(compile_cache_dir(Path.cwd()))
        result = train_family(
            cfg, family, spec, Path(job["features"]), backend, paths, evaluator=evaluator,
            compile_cache=local_cache, keep_model=bool(steps),
        )  # fmt: skip
        if rank_zero:
            write_result(result, paths.result_file)
        model, model_dir, epoch = result.model, result.model_dir, result.metrics.get("epoch")
    if steps:
        results = shared_steps(
            cfg, steps, model_dir, paths.root, family=family, backend=backend, ranks=ranks, trained=model,
            epoch=epoch, eval_set=dataset,
        )  # fmt: skip
        if rank_zero:
            write_step_results(results, paths.steps_file)


def predict_on_workers(cfg: QAFlowConfig, launch: Launch, steps: Sequence[str]) -> None:
    """`qaflow train --do_eval / --do_predict --nproc_per_node N` without training: torchrun workers predict
    `model_name_or_path` (on every node) on the backend predictions run on (`inference_backend`), each its
    share; global rank 0 writes the results (`read_step_results`; `ResultOnAnotherNode` on the other nodes)."""
    paths = TrainPaths(Path(cfg.train.output_dir))
    job = {"config": cfg.to_dict(), "output_dir": str(paths.root), "steps": list(steps), "features": None,
           "eval_data": None}  # fmt: skip
    run_workers(inference_backend(cfg.train.backend), launch, DDP_WORKER, job, paths.root / "ddp_job.json",
                [paths.steps_file])  # fmt: skip


def check_training(cfg: QAFlowConfig, family: ModelFamily, backend: HardwareBackend) -> None:
    """The backend honours the train settings (e.g. packing, in-training evaluation), and `train.packing` has a
    family that packs (ConfigError otherwise); whether the model itself computes packed windows as alone is
    checked once it is loaded (run_trainer)."""
    backend.check_settings(cfg.train)
    if cfg.train.packing:
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
    backend: HardwareBackend | None = None,
    steps: Sequence[str] = (),
) -> TrainResult:
    """`qaflow train`: load the training split, build features, fine-tune into `train.output_dir`.

    The split is loaded once; the model spec and family (unless given), the backend (unless given) and the checks
    of the train settings are resolved once, before any featurization, and passed down to `train_model` with the
    eval split the caller loaded (`eval_set`, for in-training evaluation) and the `steps` DDP workers run after
    training.
    """
    check_family_name(cfg.model.model_family)  # cheap checks first
    check_resume_checkpoint(cfg.train.resume_from_checkpoint)
    dataset = load_split(cfg, "train")
    spec = spec or ModelSpec.from_config(cfg)
    family = family or resolve_family(spec.family, spec.path)
    backend = backend or backend_for(cfg)
    check_training(cfg, family, backend)
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
