"""The training step without avoidable fixed costs: what `benchmarks/host_overhead.py` measures per step.

A compiled bert-base step on an H200 cost 31-34 ms whether it computed 384 or ~208 positions a window: a fixed
cost per step, paid by the host. The levers here remove the parts of it that do not change the arithmetic:

* batches are pinned and copied to the GPU without blocking (`dataloader_settings`): a copy from pageable memory
  waits for the GPU to finish the work queued before it, a sync at every batch. They are collated (and packed) in
  the training process: receiving a batch from a DataLoader worker process cost the training process more CPU
  time than collating it (benchmarks/host_overhead.py: 2.5 ms vs 0.4-0.8 ms a batch of 32 x 384), so workers are
  opt-in (`train.dataloader_num_workers`), for collators dearer than qaflow's;
* no host-device sync inside a step: the Trainer's `logging_nan_inf_filter` reads every step's loss back to test
  it for NaN/inf, which makes the host wait for the GPU's backward before it may queue the next step; it is off
  (a non-finite loss then shows as such in the logged loss, which is the honest report anyway);
* fused AdamW (one kernel per parameter group), named explicitly rather than left to the Trainer's default;
* the FLOP estimate takes its parameter count once (the Trainer walks every parameter again each step);
* under `reduce-overhead` compilation (CUDA graphs), each step starts a new graph generation, so the Trainer may
  keep the previous step's loss while the graph is replayed.

Throughput counters (real and padded tokens) live in the family's collator; a worker process has its own copy, so
each batch carries what its collation added (`COUNTS_KEY`) and the training step adds it to its own copy.
"""

from __future__ import annotations

from typing import Any

import torch

from tasks.core.config import TrainConfig

COUNTS_KEY = "qaflow_collator_counts"  # per batch: what collating it added to the collator's counters
COUNTERS = ("real_tokens", "padded_tokens", "target_tokens")  # the counters a family's collator may keep
FUSED_ADAMW = "adamw_torch_fused"
PREFETCH_FACTOR = 4  # batches each worker keeps ready, when there are workers


def dataloader_settings(t: TrainConfig, backend: str) -> dict[str, Any]:
    """TrainingArguments for a step that never waits on its data or syncs with the device (see the module doc)."""
    workers = t.dataloader_num_workers or 0
    on_gpu = backend == "cuda"
    return {
        "dataloader_num_workers": workers,
        "dataloader_persistent_workers": workers > 0,  # no new worker processes at every epoch
        "dataloader_prefetch_factor": PREFETCH_FACTOR if workers > 0 else None,
        "dataloader_pin_memory": on_gpu,
        "accelerator_config": {"non_blocking": on_gpu},
        "logging_nan_inf_filter": False,
        "optim": FUSED_ADAMW,
    }


class CountedCollation:
    """Calls `collate` (the Trainer's training collator, wrapping the family's `counting` collator) and moves what
    the call added to `counting`'s counters into the batch (`COUNTS_KEY`): the training step adds it back
    (`absorb`) when it takes the batch. So only batches that are trained on count, whether collated in a worker
    process (whose counters are its own copy) or ahead of time (accelerate's DataLoader reads one batch ahead)."""

    def __init__(self, collate: Any, counting: Any) -> None:
        self.collate = collate
        self.counting = counting
        self.names = [name for name in COUNTERS if hasattr(counting, name)]

    def __call__(self, items: list[Any]) -> Any:
        before = [getattr(self.counting, name) for name in self.names]
        batch = self.collate(items)
        if isinstance(batch, dict):
            batch[COUNTS_KEY] = tuple(getattr(self.counting, n) - b for n, b in zip(self.names, before, strict=True))
            for name, value in zip(self.names, before, strict=True):
                setattr(self.counting, name, value)
        return batch

    def absorb(self, counts: tuple[int, ...]) -> None:
        """Add one trained batch's counts to the training process's collator."""
        for name, count in zip(self.names, counts, strict=True):
            setattr(self.counting, name, getattr(self.counting, name) + count)


class LeanStepMixin:
    """Put before a family's Trainer class (`lean_trainer_class`); the Trainer's loop is otherwise unchanged."""

    counting_collator: Any = None  # the family collator whose counters the throughput figures read
    cuda_graphs: bool = False
    _flops_per_token: int | None = None

    def _get_collator_with_removed_columns(self, data_collator: Any, description: str | None = None) -> Any:
        collate = super()._get_collator_with_removed_columns(data_collator, description)  # type: ignore[misc]
        if (description or "").lower() == "training" and self.counting_collator is not None:
            self._counted = CountedCollation(collate, self.counting_collator)
            return self._counted
        return collate

    def training_step(self, model: Any, inputs: dict[str, Any], num_items_in_batch: Any = None) -> torch.Tensor:
        counts = inputs.pop(COUNTS_KEY, None)
        if counts is not None:
            self._counted.absorb(counts)
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        return super().training_step(model, inputs, num_items_in_batch)  # type: ignore[misc]

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The Trainer's estimate (6 x tokens x non-embedding parameters), with the parameter count taken once."""
        model = self.model  # type: ignore[attr-defined]
        main_input = getattr(model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(model, "num_parameters"):
            return 0
        if self._flops_per_token is None:
            self._flops_per_token = 6 * model.num_parameters(exclude_embeddings=True)
        return inputs[main_input].numel() * self._flops_per_token


def lean_trainer_class(trainer_class: type, counting_collator: Any, *, cuda_graphs: bool) -> type:
    """`trainer_class` with the lean step (see the module doc), reading throughput counters from `counting_collator`."""
    attributes = {"counting_collator": counting_collator, "cuda_graphs": cuda_graphs}
    return type(f"Lean{trainer_class.__name__}", (LeanStepMixin, trainer_class), attributes)
