"""In-training evaluation, as run_qa.py's `QuestionAnsweringTrainer.evaluate` does it: at every evaluation the
model predicts the eval split, its answers are post-processed and scored with the official metric, and the scores
(`eval_exact_match`, `eval_f1`, ... with `eval_runtime`, `eval_samples_per_second`, `eval_steps_per_second`) are
logged into the Trainer's log history and handed to its callbacks. The Trainer's own `metric_for_best_model` /
`load_best_model_at_end` then picks the best checkpoint, and transformers' `EarlyStoppingCallback` stops early.

This module knows nothing of prediction: the caller passes an `Evaluator` (a model in, official scores out; the
pipeline builds it from the family's prediction path, `tasks.pipeline.train_eval`).

Under DDP every rank calls its evaluator (each runs the model on its share of the eval windows; rank 0 gathers,
post-processes and scores: `tasks.predict`), and rank 0's scores are broadcast to all, so every rank takes the same
best-checkpoint and early-stopping decisions; a step between two collectives must finish within the process
group's timeout (30 minutes, `tasks.train.ddp.join_worker_group`). An evaluator that fails fails every rank.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import EarlyStoppingCallback, TrainerCallback
from transformers.trainer_utils import speed_metrics

from tasks.core.config import TrainConfig, best_metric

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    """One evaluation's official scores (unprefixed: `exact_match`, `f1`; v2 `exact`, `HasAns_f1`, ...) and the
    number of windows predicted (run_qa's `eval_samples` counts features)."""

    metrics: dict[str, float]
    samples: int


Evaluator = Callable[[Any], Evaluation]  # the model in training (unwrapped, on its device) -> its Evaluation


class EvaluatorSplit(torch.utils.data.Dataset):
    """Stands for the eval split the Evaluator predicts itself (the Trainer refuses an eval_strategy without an
    eval_dataset, and never reads this one: `evaluate` is replaced)."""

    def __len__(self) -> int:
        return 0

    def __getitem__(self, i: int) -> Any:
        raise IndexError(i)


class EvaluationFailed(RuntimeError):
    """The evaluator failed (rank 0's outcome under DDP); every rank raises it."""


def evaluation_arguments(t: TrainConfig) -> dict[str, Any]:
    """The TrainingArguments of in-training evaluation (`config.validate_evaluation` checked them)."""
    metric = best_metric(t)
    return {
        "eval_strategy": t.eval_strategy,
        "eval_steps": t.eval_steps,
        "load_best_model_at_end": t.load_best_model_at_end,
        "metric_for_best_model": metric,
        "greater_is_better": t.greater_is_better if metric is not None else None,
    }


def evaluation_callbacks(t: TrainConfig) -> list[TrainerCallback]:
    """transformers' EarlyStoppingCallback when `early_stopping_patience` is set."""
    if t.early_stopping_patience is None:
        return []
    return [EarlyStoppingCallback(t.early_stopping_patience, t.early_stopping_threshold)]


def evaluating(trainer_class: type, evaluator: Evaluator | None) -> type:
    """`trainer_class` whose `evaluate` scores the model with `evaluator` (on every rank under DDP)."""

    def evaluate(
        self: Any, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        start = time.time()
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        was_training = model.training
        try:
            with predicting_precision(model):
                outcome = _rank_zero_outcome(evaluator, model, self.is_world_process_zero())
        finally:
            model.train(was_training)
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in outcome.metrics.items()}
        steps = math.ceil(outcome.samples / max(1, self.args.eval_batch_size))
        metrics.update(speed_metrics(metric_key_prefix, start, num_samples=outcome.samples, num_steps=steps))
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    return type(f"Evaluating{trainer_class.__name__}", (trainer_class,), {"evaluate": evaluate})


@contextlib.contextmanager
def predicting_precision(model: Any) -> Iterator[None]:
    """The model's own forward while the evaluator predicts: under bf16/fp16 training accelerate wraps the forward
    in autocast; prediction chooses its precision itself (the family's forward: bf16 on CUDA, float32 on the CPU),
    so an evaluation scores the model exactly as `qaflow predict` scores the saved checkpoint."""
    wrapped, original = model.__dict__.get("forward"), model.__dict__.get("_original_forward")
    if wrapped is None or original is None:
        yield
        return
    model.forward = original
    try:
        yield
    finally:
        model.forward = wrapped


def _rank_zero_outcome(evaluator: Evaluator | None, model: Any, is_zero: bool) -> Evaluation:
    """Every rank evaluates (under DDP each predicts its share); rank 0's outcome (or failure) reaches every rank."""
    box: list[Any] = [None]
    try:
        if evaluator is None:
            raise EvaluationFailed("in-training evaluation has no evaluator")
        with torch.no_grad():
            outcome: tuple[str, Any] = ("ok", evaluator(model))
    except Exception as exc:  # noqa: BLE001 - rank 0's is handed to every rank, then raised
        outcome = ("error", exc)
        if not is_zero:
            log.error("in-training evaluation failed on this rank: %s: %s", type(exc).__name__, exc)
    if is_zero:
        box[0] = outcome
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        if box[0] is not None and box[0][0] == "error":
            box[0] = ("error", f"{type(box[0][1]).__name__}: {box[0][1]}")  # a message travels, an exception may not
        torch.distributed.broadcast_object_list(box, src=0)
    status, value = box[0]
    if status == "ok":
        return value
    if isinstance(value, BaseException):
        raise value
    raise EvaluationFailed(f"in-training evaluation failed: {value}")  # rank 0 names a failed peer
