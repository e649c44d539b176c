"""Live tracking while a model trains: Trainer log entries and system metrics go into the MLflow run as they happen.

`LiveMetrics` is a transformers `TrainerCallback` that logs every Trainer log entry (`loss`, `learning_rate`,
`grad_norm`, `epoch`, `elapsed_seconds`, steps/s between entries, and the final `train_*` figures) to a given run id
with the Trainer's global step and the wall-clock time of the entry, so `mlflow ui` draws the curves while training
runs. `system_metrics` samples CPU, memory, disk, network (and GPU where `pynvml` is installed) into the same run:
it is the monitor that `mlflow.start_run(..., log_system_metrics=True)` starts, attached to an existing run of a given
store without ending it. Both are handed out by the `Tracker` (`live_metrics`, `system_metrics`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any

from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
from mlflow.tracking import MlflowClient
from transformers import TrainerCallback

from tasks.tracking.runs import entry_entities, log_batched

log = logging.getLogger(__name__)

SYSTEM_METRICS_INTERVAL_S = 10.0  # MLflow's default; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it


class LiveMetrics(TrainerCallback):
    """Log each Trainer log entry into MLflow run `run_id` at its global step (world process zero only).

    A failed write is logged as a warning and training goes on: the whole history is logged again after
    training (`tasks.tracking.runs.log_run`), which adds only the steps the run does not have yet.
    """

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.run_id = run_id
        self.client = client
        self._previous: tuple[int, float] | None = None
        self.logged_steps: list[int] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not state.log_history:
            return
        entry = {**state.log_history[-1], "step": state.global_step}
        metrics, self._previous = entry_entities(entry, self._previous, int(time.time() * 1000))
        try:
            log_batched(self.client, self.run_id, metrics=metrics)
        except Exception as exc:  # tracking must never stop training
            log.warning("live metrics at step %d not logged to run %s: %s", state.global_step, self.run_id, exc)
            return
        self.logged_steps.append(state.global_step)


@contextlib.contextmanager
def system_metrics(
    tracking_uri: str, run_id: str, interval_s: float = SYSTEM_METRICS_INTERVAL_S
) -> Iterator[SystemMetricsMonitor]:
    """Sample system metrics (`system/cpu_utilization_percentage`, `system/system_memory_usage_megabytes`, ...)
    into run `run_id` of the store at `tracking_uri` while the block runs; a resumed run continues its step count."""
    monitor = SystemMetricsMonitor(run_id, sampling_interval=interval_s, resume_logging=True, tracking_uri=tracking_uri)
    monitor.start()
    try:
        yield monitor
    finally:
        monitor.finish()
