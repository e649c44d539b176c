"""One device, one job: a Prefect global concurrency limit per GPU machine (or pool) that training and prediction
hold a slot of, so two scheduled retrains queue instead of sharing a device.

The limit lives in the Prefect server's database (PostgreSQL in production), so it holds across workers and
machines; a slot is a lease the holder renews, so a killed holder frees its slot when the lease runs out.
Create one per device group, its limit = its GPUs: `prefect gcl create qaflow-gpu --limit 1`
(`qaflow deploy --pool gpu` does so), then set `train.device_concurrency_limit: qaflow-gpu`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from tasks.core.config import ConfigError

SLOT_LEASE_S = 300.0  # renewed while held; a killed holder's slot frees after this


def check_device_limit(limit: str | None) -> None:
    """Fail fast (one line) when the named limit does not exist on the Prefect server this process talks to."""
    if not limit:
        return
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(limit)
        except ObjectNotFound:
            where = PREFECT_API_URL.value() or "the ephemeral Prefect API (PREFECT_API_URL is not set)"
            raise ConfigError(
                f"train.device_concurrency_limit: no Prefect global concurrency limit {limit!r} at {where} "
                f"(create it: prefect gcl create {limit} --limit <GPUs>)"
            ) from None


@contextlib.contextmanager
def device_slot(limit: str | None) -> Iterator[dict[str, float | str]]:
    """Hold one slot of `limit` (waiting for it) around the block; yields when it was waited for and held."""
    if not limit:
        yield {}
        return
    asked = time.time()
    with concurrency(limit, occupy=1, strict=True, lease_duration=SLOT_LEASE_S):
        held: dict[str, float | str] = {"limit": limit, "waited_s": time.time() - asked, "held_from": time.time()}
        try:
            yield held
        finally:
            held["held_to"] = time.time()
