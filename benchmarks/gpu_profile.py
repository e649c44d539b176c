"""Where a training step's time goes on the device: a torch.profiler trace of steady steps, summarised.

`ProfileSteps` (a TrainerCallback) skips the first `skip` steps (compilation, warm-up), traces the next `steps`
with CPU and CUDA activity, and `summary()` reduces the trace to what the question needs:

* per step: host wall time, the device's span (first to last activity, over the steps), busy time (the union of
  kernel and copy intervals) and idle time (span minus busy), kernel launches, and host calls that wait for the
  device (synchronizing runtime calls);
* the top ops by self device time (by self CPU time on a CPU-only run), per step;
* the largest idle gaps between device activities, with what ran before and after each.

Only the summary leaves the device machine (the trace itself is tens of MB).
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile, schedule
from transformers import TrainerCallback

SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy ")
DEVICE_TYPES = ("CUDA", "PrivateUse1")


def _self_device_us(event: Any) -> float:
    return float(getattr(event, "self_device_time_total", None) or getattr(event, "self_cuda_time_total", 0.0) or 0.0)


def _is_device(event: Any) -> bool:
    return str(getattr(event, "device_type", "")).split(".")[-1] in DEVICE_TYPES


class ProfileSteps(TrainerCallback):
    """Traces steps `skip`+1 .. `skip`+`steps` of a Trainer run (see the module docstring)."""

    def __init__(self, *, skip: int = 5, steps: int = 5) -> None:
        self.skip, self.steps = skip, steps
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
        self.profiler = profile(activities=activities, schedule=schedule(wait=skip - 1, warmup=1, active=steps))
        self.step_ends: list[float] = []
        self.done = False

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self.profiler.__enter__()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.done:
            return
        self.step_ends.append(time.perf_counter())  # no sync: the profile must not add one
        self.profiler.step()
        if len(self.step_ends) >= self.skip + self.steps:
            self.profiler.__exit__(None, None, None)
            self.done = True

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if not self.done:
            self.profiler.__exit__(None, None, None)
            self.done = True

    def summary(self, top: int = 15) -> dict[str, Any]:
        """The reduced trace (module docstring); empty when fewer than `skip` + 1 steps ran."""
        ends = self.step_ends[self.skip - 1 : self.skip + self.steps]
        n = len(ends) - 1
        if n < 1:
            return {}
        wall_ms = 1000 * (ends[-1] - ends[0]) / n
        events = list(self.profiler.events() or [])
        device = sorted(
            (e.time_range.start, e.time_range.end, e.name) for e in events if _is_device(e) and e.time_range.end
        )
        busy_us, gaps = _busy_and_gaps(device)
        span_us = (max(e for _, e, _ in device) - device[0][0]) if device else 0.0
        runtime = [e for e in events if not _is_device(e)]
        syncs = sum(1 for e in runtime if any(e.name.startswith(s.strip()) for s in SYNC_CALLS))
        averages = self.profiler.key_averages()
        by_device = sorted(averages, key=_self_device_us, reverse=True)
        by_cpu = sorted(averages, key=lambda e: e.self_cpu_time_total, reverse=True)
        return {
            "steps_profiled": n,
            "step_wall_ms": wall_ms,
            "device_span_ms_per_step": span_us / 1000 / n,
            "device_busy_ms_per_step": busy_us / 1000 / n,
            "device_idle_ms_per_step": (span_us - busy_us) / 1000 / n,
            "device_activities_per_step": len(device) / n,
            "host_sync_calls_per_step": syncs / n,
            "top_device_ops": [
                {"op": e.key, "self_device_ms_per_step": _self_device_us(e) / 1000 / n, "calls_per_step": e.count / n}
                for e in by_device[:top]
                if _self_device_us(e) > 0
            ],
            "top_host_ops": [
                {"op": e.key, "self_cpu_ms_per_step": e.self_cpu_time_total / 1000 / n, "calls_per_step": e.count / n}
                for e in by_cpu[:top]
            ],
            "largest_gaps": gaps[:top],
        }


def _busy_and_gaps(intervals: list[tuple[float, float, str]]) -> tuple[float, list[dict[str, Any]]]:
    """Total covered time of `intervals` (µs; overlaps counted once) and the gaps between them, largest first."""
    busy, gaps = 0.0, []
    end, last = None, ""
    for start, stop, name in intervals:
        if end is None or start > end:
            if end is not None:
                gaps.append({"gap_ms": (start - end) / 1000, "after": last[:80], "before": name[:80]})
            busy += stop - start
            end, last = stop, name
        elif stop > end:
            busy += stop - end
            end, last = stop, name
    gaps.sort(key=lambda g: g["gap_ms"], reverse=True)
    return busy, gaps
