"""Trainer plumbing every model family shares (CPU and CUDA, one code path; also each DDP worker under torchrun).

The family supplies the model, the collator and the Trainer/TrainingArguments classes; this module resumes
from the last complete checkpoint, trains (capturing Inductor's autotune output; evaluating as `train.evaluation`
says), measures throughput and saves the final model atomically at the output root (run_qa.py's layout). It knows
nothing of extractive, beam or seq2seq.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_pt_utils import LengthGroupedSampler

from tasks.core.artifacts import CompileCacheStore, TrainResult
from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import ConfigError, TrainConfig
from tasks.core.family import ModelFamily, PackedTraining
from tasks.core.io import OutputSet, remove_orphans
from tasks.core.layout import TrainPaths, model_files
from tasks.core.model_spec import ModelSpec
from tasks.core.packing import static_row_counts
from tasks.train.autotune import AutotuneCapture, capture_autotune
from tasks.train.compile_cache import active_store, compile_cache_key, inductor_cache
from tasks.train.evaluation import (
    Evaluator,
    EvaluatorSplit,
    evaluating,
    evaluation_arguments,
    evaluation_callbacks,
)
from tasks.train.lean_step import dataloader_settings, lean_trainer_class
from tasks.train.resources import available_cpu_cores, device_info, peak_memory_mb

log = logging.getLogger(__name__)

CHECKPOINT_FILES = ("trainer_state.json", "optimizer.pt", "scheduler.pt")


class IndexDataset(torch.utils.data.Dataset):
    """Feature indices; the collator turns a list of indices into one (optionally trimmed) batch."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


class ThroughputCallback(TrainerCallback):
    """Separates the first optimizer step (compile/warm-up) from steady-state steps per second."""

    def __init__(self) -> None:
        self.step_ends: list[float] = []
        self.train_start = 0.0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.train_start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.step_ends.append(time.perf_counter())

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if state.log_history:  # wall-clock position of each log entry: steps/s over time in the tracking UI
            state.log_history[-1]["elapsed_seconds"] = time.perf_counter() - self.train_start

    def figures(self) -> dict[str, float]:
        if not self.step_ends:
            return {}
        first = self.step_ends[0] - self.train_start
        out = {"first_step_seconds": first}
        if len(self.step_ends) > 2:
            steady = (len(self.step_ends) - 2) / (self.step_ends[-1] - self.step_ends[1])
            out["steady_train_steps_per_second"] = steady
            # the typical step, blind to one-off stalls (a recompile, a new shape's kernel choice, a checkpoint)
            out["median_step_seconds"] = float(np.median(np.diff(self.step_ends)))
        return out


def is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint a kill could not have cut short: weights plus every state file Trainer writes."""
    has_weights = any(path.glob("model*.safetensors")) or (path / "pytorch_model.bin").exists()
    return has_weights and all((path / name).exists() for name in CHECKPOINT_FILES)


def last_complete_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete `checkpoint-N`. Incomplete ones (killed mid-save) can never be resumed: they are deleted
    (with a warning), as are the `incomplete-*` directories earlier versions set aside."""
    if not checkpoints_dir.is_dir():
        return None
    for stale in checkpoints_dir.glob("incomplete-checkpoint-*"):
        shutil.rmtree(stale, ignore_errors=True)
    found = sorted(
        (p for p in checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    for path in reversed(found):
        if is_complete_checkpoint(path):
            return path
        log.warning("deleting incomplete checkpoint %s (interrupted while saving; resuming from an earlier one)", path)
        shutil.rmtree(path, ignore_errors=True)
    return None


def _checkpoint_to_resume(t: TrainConfig, checkpoints_dir: Path) -> Path | None:
    """run_qa.py's choice: --resume_from_checkpoint, else the last complete checkpoint, unless overwriting."""
    if t.overwrite_output_dir:
        if checkpoints_dir.exists():
            log.info("overwrite_output_dir: deleting %s and training from the start", checkpoints_dir)
            shutil.rmtree(checkpoints_dir)
        return None
    if t.resume_from_checkpoint:
        return Path(t.resume_from_checkpoint)
    return last_complete_checkpoint(checkpoints_dir)


def training_arguments(
    t: TrainConfig, backend: str, checkpoints_dir: Path, args_class: type = TrainingArguments
) -> TrainingArguments:
    """`args_class` (TrainingArguments or a subclass such as Seq2SeqTrainingArguments) from the train section."""
    use_bf16 = t.bf16 and (backend == "cpu" or torch.cuda.is_bf16_supported())
    if t.bf16 and not use_bf16:
        log.warning("bf16 requested but this GPU does not support it; training in fp32")
    fixed_shapes = t.torch_compile and not t.torch_compile_dynamic
    return args_class(
        output_dir=str(checkpoints_dir),
        learning_rate=t.learning_rate,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        warmup_steps=t.warmup_ratio,  # v5: a float in [0, 1) is a ratio of the total steps
        weight_decay=t.weight_decay,
        seed=t.seed,
        bf16=use_bf16,
        fp16=t.fp16 and backend == "cuda",
        **evaluation_arguments(t),
        save_strategy=t.save_strategy,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        torch_compile=t.torch_compile or t.torch_compile_mode is not None,
        torch_compile_mode=t.torch_compile_mode,
        dataloader_drop_last=fixed_shapes,  # a smaller last batch would recompile
        use_cpu=backend == "cpu",
        ddp_backend="gloo" if backend == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        report_to=t.report_to,
        disable_tqdm=False,
        save_only_model=False,
        remove_unused_columns=not t.packing,  # packed batches carry where each window lies (not model inputs)
        **dataloader_settings(t, backend),
    )


def configure_compile(t: TrainConfig) -> None:
    """Static shapes unless dynamic shapes are requested: fixed-size batches then never recompile.

    Also states the matmul precision through the API Inductor reads: TrainingArguments(torch_compile=True) turns
    TF32 on with torch's new `torch.backends.fp32_precision`, and max-autotune's cache then calls the legacy
    `torch.get_float32_matmul_precision()`, which refuses the mix (RuntimeError, seen on the H200 with torch 2.11
    and transformers 5.17). The legacy setter with the same meaning makes both agree.
    """
    import torch._dynamo  # only when compiling

    legacy_name = {"tf32": "high", "ieee": "highest"}.get(getattr(torch.backends, "fp32_precision", "none"))
    if legacy_name:
        torch.set_float32_matmul_precision(legacy_name)

    dynamic = t.torch_compile_dynamic
    torch._dynamo.config.automatic_dynamic_shapes = dynamic
    torch._dynamo.config.assume_static_by_default = not dynamic


def save_final_model(trainer: Any, paths: TrainPaths) -> None:
    """run_qa.py's `trainer.save_model(output_dir)` + `trainer.save_state()`: the model, its tokenizer (the
    Trainer's processing_class) and `trainer_state.json` at the output root, written beside and swapped in as one
    set (`core.io.OutputSet`); files of the previous model that this one does not have (other weight shards) go."""
    remove_orphans(paths.root, ".model.pid*.tmp")
    staging = paths.root / f".model.pid{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    trainer.save_model(str(staging))
    trainer.state.save_to_json(str(staging / paths.state_file.name))
    written = sorted(path.name for path in staging.iterdir())
    previous = [path.name for path in model_files(paths.root)]
    swap = OutputSet(paths.root, tuple(dict.fromkeys([*written, *previous])))
    for name in written:
        os.replace(staging / name, swap.stage(name))
    swap.commit()
    shutil.rmtree(staging, ignore_errors=True)


def run_trainer(
    family: ModelFamily,
    model_spec: ModelSpec,
    train_cfg: TrainConfig,
    features: Any,
    *,
    backend: str,
    paths: TrainPaths,
    dynamic_padding: bool,
    callbacks: Sequence[TrainerCallback] = (),
    evaluator: Evaluator | None = None,
    compile_cache: CompileCacheStore | None = None,
    keep_model: bool = False,
) -> TrainResult:
    """Fine-tune `model_spec` as `family` on its training `features`; resume, measure, save atomically.

    `callbacks` are extra TrainerCallbacks (live metrics into a tracking run, tune's per-epoch pruning report);
    they run after the throughput callback, so each log entry already carries `elapsed_seconds`. With an
    `eval_strategy`, `evaluator` scores the model at each evaluation (`tasks.train.evaluation`; every rank). A
    compiled run starts from the Inductor caches `compile_cache` holds under its key, and stores its own there
    (`train.compile_cache`; tasks/train/compile_cache). `keep_model` hands back the final model in memory
    (`TrainResult.model`, on every rank: a DDP worker predicts with it without reading the saved one).
    """
    paths.root.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(model_spec.tokenizer_path)
    set_seed(train_cfg.seed)  # a freshly initialised head depends on the seed, as in run_qa.py
    model = family.load_model(model_spec.path)
    args = training_arguments(train_cfg, backend, paths.checkpoints_dir, family.training_arguments_class)
    packed_rows: tuple[int, ...] = ()
    if train_cfg.packing:
        packing = packing_support(family)
        packed_rows = packed_row_counts(train_cfg, backend, features)
        collator = packing.collator(
            features, row_counts=packed_rows, position_offset=packing.check(model, int(features.input_ids.shape[1]))
        )
        trainer_class = packing.trainer_class
    else:
        collator = family.collator(features, dynamic=dynamic_padding, multiple_of=pad_multiple(train_cfg, backend))
        trainer_class = family.trainer_class
    n_rows = len(features)
    if backend == "cpu":
        torch.set_num_threads(available_cpu_cores())
    if train_cfg.torch_compile or train_cfg.torch_compile_mode:
        configure_compile(train_cfg)
    speed = ThroughputCallback()
    if train_cfg.group_by_length:
        trainer_class = length_grouped(trainer_class, row_lengths(features))
    cuda_graphs = backend == "cuda" and train_cfg.torch_compile_mode == "reduce-overhead"
    trainer_class = lean_trainer_class(trainer_class, collator, cuda_graphs=cuda_graphs)
    evaluates = train_cfg.eval_strategy != "no"
    if evaluates:
        trainer_class = evaluating(trainer_class, evaluator)
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=IndexDataset(n_rows),
        eval_dataset=EvaluatorSplit() if evaluates else None,
        processing_class=tokenizer,  # as run_qa.py: each checkpoint-N is a whole model (weights + tokenizer)
        data_collator=collator,
        callbacks=[speed, *callbacks, *evaluation_callbacks(train_cfg)],
    )
    if evaluates and evaluator is None:  # under DDP every rank runs its share of each evaluation
        raise ConfigError("train.eval_strategy: in-training evaluation needs the eval split (no evaluator was given)")
    resume = _checkpoint_to_resume(train_cfg, paths.checkpoints_dir) if trainer.is_world_process_zero() else None
    resume = _broadcast_resume(resume)
    if resume:
        log.info("resuming from %s", resume)
    autotune = train_cfg.torch_compile_mode == "max-autotune"
    compiled = bool(train_cfg.torch_compile or train_cfg.torch_compile_mode)
    key = compile_cache_key(
        train_cfg, backend, model.config, width=int(features.input_ids.shape[1]), packed_rows=packed_rows,
        packing=train_cfg.packing,
    )  # fmt: skip
    store = active_store(train_cfg, compile_cache)
    # a compiled run works in a private, initially empty (cold) or restored (warm) Inductor cache: autotuning
    # then prints its table exactly when it tunes
    cache = inductor_cache(store, key, save=trainer.is_world_process_zero()) if compiled else contextlib.nullcontext()
    capture = capture_autotune(paths.autotune_dir) if autotune else contextlib.nullcontext()
    with cache as cache_use, capture as captured:
        out = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    artifacts = autotune_artifacts(captured) if autotune else {}
    metrics = dict(out.metrics)
    elapsed = metrics.get("train_runtime") or 1.0
    metrics["train_real_tokens"] = float(collator.real_tokens * args.world_size)  # counted in workers too
    metrics["train_computed_positions"] = float(collator.padded_tokens * args.world_size)
    metrics["train_tokens_per_second"] = metrics["train_real_tokens"] / elapsed
    metrics["train_padded_tokens_per_second"] = metrics["train_computed_positions"] / elapsed
    metrics["train_features"] = float(n_rows)
    metrics["peak_memory_mb"] = peak_memory_mb(backend)
    metrics["model_parameters"] = float(sum(p.numel() for p in model.parameters()))
    metrics.update(speed.figures())
    if cache_use is not None:
        metrics["compile_cache_warm"] = float(cache_use.warm)
    metrics.update(family.train_metrics(features, collator, elapsed, args.world_size))
    if trainer.is_world_process_zero():
        save_final_model(trainer, paths)
    return TrainResult(
        model_dir=paths.model_dir,
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
        device=device_info(backend, world_size=args.world_size),
        resumed_from=str(resume) if resume else None,
        log_history=list(trainer.state.log_history),
        artifacts=artifacts,
        model=trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False) if keep_model else None,
    )


STATIC_COMPILE_PAD_MULTIPLE = 64  # dynamic padding under static-shape compilation: at most width/64 graphs


def pad_multiple(t: TrainConfig, backend: str) -> int:
    """Batch widths under dynamic padding round up to this: the setting; else, compiled with static shapes, 64
    (each new width is a recompile: at 384 at most 6 graphs instead of one per batch); else run_qa's 8 for CUDA
    fp16/bf16."""
    if t.pad_to_multiple_of is not None:
        return t.pad_to_multiple_of
    if (t.torch_compile or t.torch_compile_mode is not None) and not t.torch_compile_dynamic:
        return STATIC_COMPILE_PAD_MULTIPLE
    return 8 if backend == "cuda" and (t.bf16 or t.fp16) else 1


def packing_support(family: ModelFamily) -> PackedTraining:
    """The family's packed training (`train.packing`), or a ConfigError naming the family."""
    support = getattr(family, "packing", None)  # plug-in families written before packing have no attribute
    if support is None:
        raise ConfigError(f"train.packing: the {family.name} family cannot pack windows (extractive models only)")
    return support


def packed_row_counts(t: TrainConfig, backend: str, features: Any) -> tuple[int, ...]:
    """The row counts packed batches may have: exact on the CPU or under dynamic-shape compilation; else (CUDA,
    static compilation) two (`tasks.core.packing.static_row_counts`), so a compiled step or CUDA graph is built
    twice at most and eager CUDA chooses kernels for two shapes, not one per batch."""
    static = (t.torch_compile or t.torch_compile_mode is not None) and not t.torch_compile_dynamic
    if (backend == "cpu" and not static) or t.torch_compile_dynamic:
        return ()
    width = int(features.input_ids.shape[1])
    return static_row_counts(row_lengths(features), t.per_device_train_batch_size, width, seed=t.seed)


def row_lengths(features: Any) -> np.ndarray:
    """Real (non-padding) tokens per training row; every family's features carry an `attention_mask`."""
    return np.asarray(features.attention_mask).sum(axis=1)


def length_grouped(trainer_class: type, lengths: np.ndarray) -> type:
    """`trainer_class` drawing its training batches with transformers' `LengthGroupedSampler` over `lengths`.

    Shuffled mega-batches (50 batches), each sorted by length, so a dynamically padded batch holds windows of
    similar length (run_qa's `--group_by_length`). The Trainer cannot find the lengths itself: its dataset is
    feature indices. Under DDP every rank builds the same order (seeded) and accelerate shards its batches.
    """
    as_list = [int(n) for n in lengths]

    def _get_train_sampler(self: Any, train_dataset: Any = None) -> LengthGroupedSampler:
        args = self.args
        return LengthGroupedSampler(args.train_batch_size * args.gradient_accumulation_steps, lengths=as_list)

    return type(f"LengthGrouped{trainer_class.__name__}", (trainer_class,), {"_get_train_sampler": _get_train_sampler})


def _broadcast_resume(resume: Path | None) -> Path | None:
    """Under DDP every rank must resume from the checkpoint rank 0 chose."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return resume
    box = [str(resume) if resume else ""]
    torch.distributed.broadcast_object_list(box, src=0)
    return Path(box[0]) if box[0] else None


def autotune_artifacts(captured: AutotuneCapture) -> dict[str, Path]:
    """The raw AUTOTUNE log and its parsed tables, for the run's artifacts."""
    paths = {
        "autotune_log": captured.raw_log_path,
        "autotune_table_csv": captured.table_csv_path,
        "autotune_table_md": captured.table_md_path,
    }
    return {k: v for k, v in paths.items() if v is not None}
