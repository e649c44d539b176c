"""Trainer plumbing every model family shares (CPU and CUDA, one code path; also each DDP worker under torchrun).

The family supplies the model, the collator and the Trainer/TrainingArguments classes; this module resumes
from the last complete checkpoint, trains (capturing Inductor's autotune output; evaluating as `train.evaluation`
says), measures throughput and saves the final model atomically at the output root (run_qa.py's layout). It knows
nothing of extractive, beam or seq2seq, nor of CPU and CUDA: what differs by hardware (precision, padding
multiples, pinned memory, threads, device figures) it asks the backend object (`tasks.core.backend.Backend`).
Checkpoints on disk are `train.checkpointing`'s; how batches are shaped (padding, packing, grouping) `train.batching`'s.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from transformers import TrainerCallback, TrainingArguments, set_seed

from tasks.core.artifacts import CompileCacheStore, TrainResult
from tasks.core.backend import Backend
from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import ConfigError, TrainConfig
from tasks.core.family import ModelFamily
from tasks.core.layout import TrainPaths
from tasks.core.model_spec import ModelSpec
from tasks.core.progress import progress_mode
from tasks.train.autotune import AutotuneCapture, capture_autotune
from tasks.train.batching import (
    IndexDataset,
    length_grouped,
    packed_row_counts,
    packing_support,
    pad_multiple,
    row_lengths,
)
from tasks.train.checkpointing import after_failed_training, broadcast_resume, checkpoint_to_resume, save_final_model
from tasks.train.compile_cache import active_store, compile_cache_key, inductor_cache
from tasks.train.evaluation import (
    Evaluator,
    EvaluatorSplit,
    evaluating,
    evaluation_arguments,
    evaluation_callbacks,
)
from tasks.train.lean_step import dataloader_settings, lean_trainer_class

log = logging.getLogger(__name__)


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


def training_arguments(
    t: TrainConfig, backend: Backend, checkpoints_dir: Path, args_class: type = TrainingArguments
) -> TrainingArguments:
    """`args_class` (TrainingArguments or a subclass such as Seq2SeqTrainingArguments) from the train section."""
    use_bf16 = t.bf16 and backend.bf16_supported()
    if t.bf16 and not use_bf16:
        log.warning("bf16 requested but this %s device does not support it; training in fp32", backend.name)
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
        fp16=t.fp16 and backend.fp16_supported,
        **evaluation_arguments(t),
        save_strategy=t.save_strategy,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        torch_compile=t.torch_compile or t.torch_compile_mode is not None,
        torch_compile_mode=t.torch_compile_mode,
        dataloader_drop_last=fixed_shapes,  # a smaller last batch would recompile
        use_cpu=backend.use_cpu,
        ddp_backend=backend.ddp_backend(int(os.environ.get("WORLD_SIZE", "1"))),
        report_to=t.report_to,
        disable_tqdm=progress_mode() != "bar",  # not a terminal: the Trainer prints one line per log event
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


def run_trainer(
    family: ModelFamily,
    model_spec: ModelSpec,
    train_cfg: TrainConfig,
    features: Any,
    *,
    backend: Backend,
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
    backend.prepare_training_process()
    if train_cfg.torch_compile or train_cfg.torch_compile_mode:
        configure_compile(train_cfg)
    speed = ThroughputCallback()
    if train_cfg.group_by_length:
        trainer_class = length_grouped(trainer_class, row_lengths(features))
    cuda_graphs = backend.cuda_graphs(train_cfg.torch_compile_mode)
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
    resume = checkpoint_to_resume(train_cfg, paths.checkpoints_dir) if trainer.is_world_process_zero() else None
    resume = broadcast_resume(resume)
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
        try:
            out = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        except BaseException as exc:  # Ctrl-C, a full disk: a checkpoint the failure cut short is deleted
            if trainer.is_world_process_zero():
                after_failed_training(paths.checkpoints_dir, exc)
            raise
    artifacts = autotune_artifacts(captured) if autotune else {}
    metrics = dict(out.metrics)
    # transformers' PrinterCallback (disable_tqdm) pops total_flos from the very dict train() returns
    metrics.setdefault("total_flos", float(trainer.state.total_flos))
    elapsed = metrics.get("train_runtime") or 1.0
    metrics["train_real_tokens"] = float(collator.real_tokens * args.world_size)  # counted in workers too
    metrics["train_computed_positions"] = float(collator.padded_tokens * args.world_size)
    metrics["train_tokens_per_second"] = metrics["train_real_tokens"] / elapsed
    metrics["train_padded_tokens_per_second"] = metrics["train_computed_positions"] / elapsed
    metrics["train_features"] = float(n_rows)
    metrics["peak_memory_mb"] = backend.peak_memory_mb()
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
        device=backend.device_info(world_size=args.world_size),
        resumed_from=str(resume) if resume else None,
        log_history=list(trainer.state.log_history),
        artifacts=artifacts,
        model=trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False) if keep_model else None,
    )


def autotune_artifacts(captured: AutotuneCapture) -> dict[str, Path]:
    """The raw AUTOTUNE log and its parsed tables, for the run's artifacts."""
    paths = {
        "autotune_log": captured.raw_log_path,
        "autotune_table_csv": captured.table_csv_path,
        "autotune_table_md": captured.table_md_path,
    }
    return {k: v for k, v in paths.items() if v is not None}
