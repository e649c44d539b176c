"""CPU and CUDA training (one code path) on transformers `Trainer`; also the DDP worker under torchrun."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from tasks.config import QAFlowConfig
from tasks.features import Features
from tasks.models import load_extractive_model, load_tokenizer
from tasks.train.autotune import AutotuneCapture, capture_autotune
from tasks.train.common import (
    TrainResult,
    available_cpu_cores,
    device_info,
    peak_memory_mb,
)

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


class FeatureCollator:
    """Stack feature rows into tensors; with `dynamic`, drop columns that are padding in every row.

    Counts real (non-padding) and padded tokens so throughput can be reported in tokens per second.
    """

    LABELS = ("start_positions", "end_positions")

    def __init__(self, features: Features, *, dynamic: bool) -> None:
        self.features = features
        self.dynamic = dynamic
        self.real_tokens = 0
        self.padded_tokens = 0

    def __call__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        idx = np.asarray(indices, dtype=np.int64)
        f = self.features
        mask = f.attention_mask[idx]
        cols = np.flatnonzero(mask.any(axis=0)) if self.dynamic else slice(None)
        batch: dict[str, np.ndarray] = {
            "input_ids": f.input_ids[idx][:, cols],
            "attention_mask": mask[:, cols],
        }
        if f.token_type_ids is not None:
            batch["token_type_ids"] = f.token_type_ids[idx][:, cols]
        if f.start_positions is not None and f.end_positions is not None:
            shift = int(cols[0]) if self.dynamic else 0  # left padding trimmed: positions move left
            batch["start_positions"] = f.start_positions[idx] - shift
            batch["end_positions"] = f.end_positions[idx] - shift
        self.real_tokens += int(batch["attention_mask"].sum())
        self.padded_tokens += int(batch["attention_mask"].size)
        return {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)) for k, v in batch.items()}


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
        return out


def is_complete_checkpoint(path: Path) -> bool:
    """A checkpoint a kill could not have cut short: weights plus every state file Trainer writes."""
    has_weights = any(path.glob("model*.safetensors")) or (path / "pytorch_model.bin").exists()
    return has_weights and all((path / name).exists() for name in CHECKPOINT_FILES)


def last_complete_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The newest complete `checkpoint-N`; incomplete ones (killed mid-save) are moved aside, never resumed."""
    if not checkpoints_dir.is_dir():
        return None
    found = sorted(
        (p for p in checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
    )
    for path in reversed(found):
        if is_complete_checkpoint(path):
            return path
        log.warning("ignoring incomplete checkpoint %s (interrupted while saving)", path)
        shutil.move(str(path), str(path.with_name(f"incomplete-{path.name}-{int(time.time())}")))
    return None


def training_arguments(cfg: QAFlowConfig, backend: str, checkpoints_dir: Path) -> TrainingArguments:
    t = cfg.train
    use_bf16 = t.bf16 and (backend == "cpu" or torch.cuda.is_bf16_supported())
    if t.bf16 and not use_bf16:
        log.warning("bf16 requested but this GPU does not support it; training in fp32")
    fixed_shapes = t.torch_compile and not t.torch_compile_dynamic
    return TrainingArguments(
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
        eval_strategy="no",
        save_strategy=t.save_strategy,
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        torch_compile=t.torch_compile or t.torch_compile_mode is not None,
        torch_compile_mode=t.torch_compile_mode,
        dataloader_num_workers=t.dataloader_num_workers,
        dataloader_drop_last=fixed_shapes,  # a smaller last batch would recompile
        use_cpu=backend == "cpu",
        ddp_backend="gloo" if backend == "cpu" and int(os.environ.get("WORLD_SIZE", "1")) > 1 else None,
        report_to="none",
        disable_tqdm=False,
        save_only_model=False,
    )


def configure_compile(cfg: QAFlowConfig) -> None:
    """Static shapes unless dynamic shapes are requested: fixed-size batches then never recompile."""
    import torch._dynamo

    dynamic = cfg.train.torch_compile_dynamic
    torch._dynamo.config.automatic_dynamic_shapes = dynamic
    torch._dynamo.config.assume_static_by_default = not dynamic


def save_model_atomically(trainer: Trainer, tokenizer: Any, model_dir: Path) -> None:
    """Write the final model to a sibling temp directory, then swap it into place."""
    tmp = model_dir.with_name(f".{model_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    trainer.save_model(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    old = model_dir.with_name(f".{model_dir.name}.old-{os.getpid()}")
    if model_dir.exists():
        model_dir.rename(old)
    tmp.rename(model_dir)
    shutil.rmtree(old, ignore_errors=True)


def train_torch(cfg: QAFlowConfig, features: Features, backend: str, output_dir: Path) -> TrainResult:
    """Fine-tune an extractive model on CPU or CUDA (DDP under torchrun), resuming from the last complete checkpoint."""
    tokenizer = load_tokenizer(cfg.model.tokenizer_name or cfg.model.model_name_or_path)
    set_seed(cfg.train.seed)  # a freshly initialised head depends on the seed, as in run_qa.py
    model = load_extractive_model(cfg.model.model_name_or_path)
    args = training_arguments(cfg, backend, output_dir / "checkpoints")
    collator = FeatureCollator(features, dynamic=not cfg.features.pad_to_max_length)
    return run_trainer(
        cfg, backend=backend, output_dir=output_dir, model=model, tokenizer=tokenizer, args=args,
        trainer_cls=Trainer, n_rows=len(features), collator=collator,
    )  # fmt: skip


def run_trainer(
    cfg: QAFlowConfig,
    *,
    backend: str,
    output_dir: Path,
    model: Any,
    tokenizer: Any,
    args: TrainingArguments,
    trainer_cls: type[Trainer],
    n_rows: int,
    collator: Any,
    extra_metrics: dict[str, float] | None = None,
) -> TrainResult:
    """The training core every model family shares: resume, train (capturing autotune), measure, save atomically.

    `collator` maps a list of row indices to a batch and counts `real_tokens` / `padded_tokens`.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    if backend == "cpu":
        torch.set_num_threads(available_cpu_cores())
    if cfg.train.torch_compile or cfg.train.torch_compile_mode:
        configure_compile(cfg)
    checkpoints_dir = Path(args.output_dir)
    speed = ThroughputCallback()
    trainer = trainer_cls(
        model=model, args=args, train_dataset=IndexDataset(n_rows), data_collator=collator, callbacks=[speed]
    )
    resume = last_complete_checkpoint(checkpoints_dir) if trainer.is_world_process_zero() else None
    resume = _broadcast_resume(resume, checkpoints_dir)
    if resume:
        log.info("resuming from %s", resume)
    autotune = cfg.train.torch_compile_mode == "max-autotune"
    capture = capture_autotune(output_dir / "autotune", fresh_cache=True) if autotune else contextlib.nullcontext()
    with capture as captured:
        out = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    artifacts = autotune_artifacts(captured) if autotune else {}
    metrics = dict(out.metrics)
    elapsed = metrics.get("train_runtime") or 1.0
    metrics["train_tokens_per_second"] = collator.real_tokens * args.world_size / elapsed
    metrics["train_padded_tokens_per_second"] = collator.padded_tokens * args.world_size / elapsed
    metrics["train_features"] = float(n_rows)
    metrics["peak_memory_mb"] = peak_memory_mb(backend)
    metrics["model_parameters"] = float(sum(p.numel() for p in model.parameters()))
    metrics.update(speed.figures())
    metrics.update(extra_metrics or {})
    model_dir = output_dir / "model"
    if trainer.is_world_process_zero():
        save_model_atomically(trainer, tokenizer, model_dir)
    return TrainResult(
        model_dir=model_dir,
        metrics={k: float(v) for k, v in metrics.items() if isinstance(v, int | float)},
        device=device_info(backend, world_size=args.world_size),
        resumed_from=str(resume) if resume else None,
        log_history=list(trainer.state.log_history),
        artifacts=artifacts,
    )


def _broadcast_resume(resume: Path | None, checkpoints_dir: Path) -> Path | None:
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
