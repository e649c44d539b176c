"""System metrics while a model trains: CPU, memory, disk, network (and GPU where `pynvml` is installed) sampled into
the MLflow run. It is the monitor that `mlflow.start_run(..., log_system_metrics=True)` starts, attached to an
existing run of a given store without ending it; the `Tracker` hands it out (`system_metrics`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

SYSTEM_METRICS_INTERVAL_S = 10.0  # MLflow's default; MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL overrides it


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
