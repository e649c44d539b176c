"""Live tracking while a model trains: Trainer log entries go into the MLflow run as they happen.

`LiveMetrics` is a transformers `TrainerCallback` that logs every Trainer log entry (`loss`, `learning_rate`,
`grad_norm`, `epoch`, `elapsed_seconds`, steps/s between entries, and the final `train_*` figures) to a given run id
with the Trainer's global step and the wall-clock time of the entry, so `mlflow ui` draws the curves while training
runs. The `Tracker` hands it out (`live_metrics`); system metrics are `tasks.tracking.system_metrics`. This module
imports transformers (and with it torch): only training loads it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mlflow.tracking import MlflowClient
from transformers import TrainerCallback

from tasks.tracking.runs import entry_entities, log_batched

log = logging.getLogger(__name__)


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
