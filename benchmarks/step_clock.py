"""Where a Trainer step's time goes: waiting for data, forward+backward, optimizer, the Trainer's bookkeeping.

`StepClock.attach(trainer)` wraps the Trainer's own methods (`get_batch_samples`, `training_step`, `_clip_grad_norm`)
and listens to its optimizer and step-end callbacks, so any Trainer subclass is timed the same way. Each optimizer
step's interval (from the previous step's end to this one's) is split into:

* data: the main process waiting for the next batch (collation itself when the DataLoader has no workers);
* forward_backward: `training_step` (forward, loss, backward);
* optimizer: gradient clipping plus `optimizer.step()`;
* bookkeeping: the rest (callbacks, loss accounting, scheduler, zero_grad, logging checks, host syncs).

Two clocks: `wall` (perf_counter) and `cpu` (the main thread's CPU time, `time.thread_time`): on a shared, noisy
machine with one compute thread the CPU clock is what the step costs the host, whatever else runs beside it.
With `sync=True` (CUDA) each part ends with `torch.cuda.synchronize()`, so device time is charged to the part
that queued it; without it the figures are host time, and a hidden host-device sync shows up where it waits.

`bare_step_ms` times the floor under all of it: the same model, loss, optimizer and batches in a tight loop
(forward, backward, clip, optimizer step, zero_grad), with nothing else around them.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback

PARTS = ("data", "forward_backward", "optimizer", "bookkeeping")
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


class StepClock(TrainerCallback):
    """Per-step timings of one Trainer (see the module docstring); `summary()` gives medians in milliseconds."""

    def __init__(self, *, clock: str = "wall", sync: bool = False, skip: int = 3) -> None:
        self.read = CLOCKS[clock]
        self.sync = sync and torch.cuda.is_available()
        self.skip = skip  # first steps left out (compile, warm-up, first allocation)
        self.current = dict.fromkeys(PARTS[:-1], 0.0)
        self.steps: list[dict[str, float]] = []
        self.last_end: float | None = None
        self.optimizer_started = 0.0
        self.trainer: Any = None

    def now(self) -> float:
        if self.sync:
            torch.cuda.synchronize()
        return self.read()

    def _timed(self, part: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0 = self.now()
            try:
                return fn(*args, **kwargs)
            finally:
                self.current[part] += self.now() - t0

        return wrapper

    def attach(self, trainer: Any) -> StepClock:
        """Time `trainer` (an instance of `transformers.Trainer` or any subclass)."""
        trainer.get_batch_samples = self._timed("data", trainer.get_batch_samples)
        trainer.training_step = self._timed("forward_backward", trainer.training_step)
        trainer._clip_grad_norm = self._timed("optimizer", trainer._clip_grad_norm)
        trainer.add_callback(self)
        self.trainer = trainer
        return self

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.last_end = self.now()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):  # noqa: ANN001
        self.optimizer_started = self.now()

    def on_optimizer_step(self, args, state, control, **kwargs):  # noqa: ANN001
        self.current["optimizer"] += self.now() - self.optimizer_started

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        now = self.now()
        total = now - (self.last_end or now)
        self.steps.append({**self.current, "total": total, "bookkeeping": total - sum(self.current.values())})
        self.current = dict.fromkeys(PARTS[:-1], 0.0)
        self.last_end = now

    def summary(self) -> dict[str, float]:
        """Median milliseconds per step of the total and of each part, over the steps after `skip`."""
        steady = self.steps[self.skip :] or self.steps
        if not steady:
            return {}
        out = {"ms_per_step": 1000 * float(np.median([s["total"] for s in steady])), "steps_timed": len(steady)}
        for part in PARTS:
            out[f"{part}_ms"] = 1000 * float(np.median([s[part] for s in steady]))
        return out

    def bare_step_ms(self, n_batches: int = 8, repeats: int = 3) -> float:
        """Median milliseconds of the attached (trained) Trainer's bare step over its first `n_batches` batches."""
        trainer = self.trainer
        model = trainer.model_wrapped
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)  # accelerate wraps it
        batches = [trainer._prepare_inputs(b) for b in itertools.islice(trainer.get_train_dataloader(), n_batches)]
        max_norm = trainer.args.max_grad_norm
        model.train()
        times = []
        for batch in batches * repeats:
            t0 = self.now()
            with trainer.compute_loss_context_manager():
                loss = trainer.compute_loss(model, dict(batch))
            loss.backward()
            if max_norm and max_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(self.now() - t0)
        return 1000 * float(np.median(times[len(batches) :] or times))  # the first pass warms up


@contextlib.contextmanager
def on_every_trainer(setup: Callable[[Any], Any]) -> Iterator[None]:
    """Call `setup(trainer)` on every Trainer created inside the block (Trainers built deep inside qaflow's code)."""
    original = Trainer.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        setup(self)

    Trainer.__init__ = init
    try:
        yield
    finally:
        Trainer.__init__ = original
