"""Where scheduled retrains run: work pools, their backends, the default schedule (light: no Prefect import).

`flows.deploy` builds deployments from these; the CLI reads them to build its parser without loading Prefect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
ENTRYPOINT = "flows/retrain.py:retrain"
DEFAULT_CRON = "0 3 * * 1"  # Mondays 03:00 UTC
POOL_BACKENDS = {"cpu": "cpu", "gpu": "cuda", "ipu": "ipu"}
# Pools whose jobs queue for a device: the Prefect global concurrency limit their retrains hold a slot of
DEVICE_LIMITS = {"gpu": "qaflow-gpu"}
JOB_ENV = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
    "TOKENIZERS_PARALLELISM": "false",
}


def deployment_name(pool: str) -> str:
    return f"retrain-{pool}"


def work_pool_name(pool: str) -> str:
    return f"qaflow-{pool}"


def retrain_parameters(pool: str, root: str | Path, params_path: str = "params.yaml") -> dict[str, Any]:
    """The flow parameters of a scheduled retrain on `pool`'s hardware."""
    if pool not in POOL_BACKENDS:
        raise ValueError(f"unknown pool {pool!r}: one of {sorted(POOL_BACKENDS)}")
    overrides: dict[str, Any] = {"backend": POOL_BACKENDS[pool]}
    if pool in DEVICE_LIMITS:
        overrides["device_concurrency_limit"] = DEVICE_LIMITS[pool]
    return {"params_path": params_path, "overrides": overrides, "root": str(Path(root).resolve())}
