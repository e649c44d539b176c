"""Scheduled retraining: the `retrain` flow as a Prefect deployment, served locally or run by a work pool.

* `serve_retrain` — `retrain.to_deployment(...)` with a cron (or interval) schedule, served by this process
  (`prefect.serve`): the schedule's runs execute here, one at a time. No worker or work pool needed.
* `deploy_retrain` — `retrain.from_source(<checkout>, "flows/retrain.py:retrain").deploy(...)` to the process work
  pool `qaflow-<pool>` (created if missing); `prefect worker start --pool qaflow-<pool>` runs it. `prefect.yaml`
  declares the same three deployments (cpu, gpu, ipu) for `prefect deploy --all`.

Pools map to backends: cpu → `overrides={"backend": "cpu"}`, gpu → cuda, ipu → ipu. Runs persist their results
(`PREFECT_RESULTS_PERSIST_BY_DEFAULT=true`), so the flow's summary (`action` new / resume / skip) is readable from
the API after the run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from flows.pools import (
    DEFAULT_CRON,
    DEVICE_LIMITS,
    ENTRYPOINT,
    JOB_ENV,
    REPO_ROOT,
    deployment_name,
    retrain_parameters,
    work_pool_name,
)
from flows.retrain import retrain


def schedules(cron: str | None = DEFAULT_CRON, interval: float | None = None, timezone: str = "UTC") -> list[Any]:
    """Prefect schedules: a cron (in `timezone`) and/or an interval in seconds."""
    from prefect.schedules import Cron, Interval

    out: list[Any] = []
    if cron:
        out.append(Cron(cron, timezone=timezone))
    if interval:
        out.append(Interval(timedelta(seconds=float(interval))))
    if not out:
        raise ValueError("a schedule needs a cron expression or an interval")
    return out


def serve_retrain(
    *,
    pool: str = "cpu",
    cron: str | None = DEFAULT_CRON,
    interval: float | None = None,
    root: str | Path = ".",
    params_path: str = "params.yaml",
    name: str | None = None,
    limit: int = 1,
) -> None:
    """Register the scheduled deployment and serve it from this process until interrupted (blocks)."""
    from prefect import serve

    for key, value in JOB_ENV.items():
        os.environ.setdefault(key, value)  # inherited by the run subprocesses
    deployment = retrain.to_deployment(
        name=name or deployment_name(pool),
        schedules=schedules(cron, interval),
        parameters=retrain_parameters(pool, root, params_path),
        tags=["qaflow", "retrain", pool],
        description=f"Scheduled retrain on {pool} (served locally); skipped when nothing changed.",
    )
    serve(deployment, limit=limit)


def ensure_work_pool(name: str, pool_type: str = "process") -> bool:
    """Create work pool `name` unless it exists; True if it was created."""
    from prefect.client.schemas.actions import WorkPoolCreate

    return _create_unless_exists(
        lambda client: client.read_work_pool(name),
        lambda client: client.create_work_pool(WorkPoolCreate(name=name, type=pool_type)),
    )


def ensure_device_limit(name: str, slots: int) -> bool:
    """Create the global concurrency limit `name` with `slots` slots unless it exists; True if it was created."""
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    return _create_unless_exists(
        lambda client: client.read_global_concurrency_limit_by_name(name),
        lambda client: client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots)),
    )


def _create_unless_exists(read: Callable[[Any], Any], create: Callable[[Any], Any]) -> bool:
    """Run `create` with a Prefect client unless `read` finds the object (or another process made it first)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            read(client)
            return False
        except ObjectNotFound:
            pass
        try:
            create(client)
        except ObjectAlreadyExists:
            return False
        return True


def deploy_retrain(
    *,
    pool: str = "cpu",
    cron: str | None = DEFAULT_CRON,
    interval: float | None = None,
    root: str | Path = ".",
    params_path: str = "params.yaml",
    name: str | None = None,
    work_pool: str | None = None,
    source: str | Path = REPO_ROOT,
    device_slots: int = 1,
) -> str:
    """Create/update the scheduled deployment in a process work pool; returns the deployment id.

    A device pool (gpu) also gets its global concurrency limit (`device_slots` slots, one per GPU) unless it exists.
    """
    pool_name = work_pool or work_pool_name(pool)
    ensure_work_pool(pool_name)
    if pool in DEVICE_LIMITS:
        ensure_device_limit(DEVICE_LIMITS[pool], device_slots)
    flow = retrain.from_source(source=str(Path(source).resolve()), entrypoint=ENTRYPOINT)
    deployment_id = flow.deploy(
        name=name or deployment_name(pool),
        work_pool_name=pool_name,
        schedules=schedules(cron, interval),
        parameters=retrain_parameters(pool, root, params_path),
        job_variables={"env": JOB_ENV},
        tags=["qaflow", "retrain", pool],
        description=f"Scheduled retrain on {pool}; skipped when nothing changed.",
        build=False,
        push=False,
        ignore_warnings=True,
        print_next_steps=False,
    )
    return str(deployment_id)
