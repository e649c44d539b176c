"""Logging a run: its params (flattened; what MLflow cannot hold goes to an overflow artifact), metrics and
training history, artifacts, data inputs, tags and environment, batched within MLflow's per-request limits.

Plain functions over an explicit `MlflowClient` (the `Tracker` in `tasks.tracking.tracker` holds the one bound to
the configured store and calls them); none reads or sets MLflow's process-global tracking URI or active run. The
store itself (URIs, checks, lookups) is `tasks.tracking.store`; git state and environment `tasks.tracking.provenance`.
"""

from __future__ import annotations

import json
import re
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
)

from tasks.core.artifacts import TrainResult
from tasks.tracking import tags as tag
from tasks.tracking.provenance import log_environment

OVERFLOW_ARTIFACT = "params_overflow.json"
_BAD_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_\-./ ]")
_PARAM_KEY_OK = re.compile(r"^[A-Za-z0-9_\-./ ]+$")
_HISTORY_SKIP = frozenset({"step"})
# Cumulative-seconds keys a log_history entry may carry; used to derive steps/s between two log points.
_ELAPSED_KEYS = ("elapsed_seconds", "train_runtime")


# --- params


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple | dict):
        return json.dumps(value, default=str)
    return str(value)


def flatten_params(cfg_dict: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, str], dict[str, Any]]:
    """Nested mapping → (`{"section.key": "value"}`, overflow).

    Keys longer than MLflow's key limit (or with characters it rejects) and values longer than its value limit
    go to `overflow` with their original value, to be logged as a JSON artifact instead of failing the run.
    """
    params: dict[str, str] = {}
    overflow: dict[str, Any] = {}
    for key, value in cfg_dict.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            sub_params, sub_overflow = flatten_params(value, prefix=f"{name}.")
            params.update(sub_params)
            overflow.update(sub_overflow)
            continue
        text = _param_text(value)
        fits = len(name) <= MAX_ENTITY_KEY_LENGTH and len(text) <= MAX_PARAM_VAL_LENGTH
        if fits and _PARAM_KEY_OK.match(name):
            params[name] = text
        else:
            overflow[name] = value
    return params, overflow


# --- batching


def _chunked(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for lo in range(0, len(items), size):
        yield items[lo : lo + size]


def log_batched(
    client: MlflowClient,
    run_id: str,
    *,
    metrics: Sequence[Metric] = (),
    params: Sequence[Param] = (),
    tags: Sequence[RunTag] = (),
) -> None:
    """`MlflowClient.log_batch` in chunks within the per-request limits (100 params/tags, 1000 metrics)."""
    for chunk in _chunked(list(params), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, params=list(chunk))
    for chunk in _chunked(list(tags), MAX_PARAMS_TAGS_PER_BATCH):
        client.log_batch(run_id, tags=list(chunk))
    for chunk in _chunked(list(metrics), MAX_METRICS_PER_BATCH):
        client.log_batch(run_id, metrics=list(chunk))


def log_params(client: MlflowClient, run_id: str, cfg_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Log the flattened config as params; what does not fit goes to `params_overflow.json` (returned)."""
    params, overflow = flatten_params(cfg_dict)
    log_batched(client, run_id, params=[Param(k, v) for k, v in params.items()])
    if overflow:
        client.log_dict(run_id, overflow, OVERFLOW_ARTIFACT)
    return overflow


# --- metrics


def sanitize_metric_name(name: str) -> str:
    """Map a metric name onto MLflow's alphabet (alnum, `_-./`, space) as a clean relative path."""
    clean = _BAD_METRIC_CHARS.sub("_", str(name)).strip()
    clean = re.sub(r"/+", "/", clean).strip("/")
    parts = [p if p not in {".", ".."} else p.replace(".", "_") for p in clean.split("/")]
    return "/".join(p for p in parts if p) or "_"


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:  # numpy / torch scalars
        return float(value.item())
    except (AttributeError, TypeError, ValueError):
        return None


def metric_entities(
    values: Mapping[str, Any], *, step: int = 0, prefix: str = "", timestamp: int | None = None
) -> list[Metric]:
    """Numeric entries of `values` as Metric entities with sanitised names; others are dropped."""
    ts = timestamp if timestamp is not None else int(time.time() * 1000)
    out = []
    for key, value in values.items():
        number = _as_float(value)
        if number is not None:
            out.append(Metric(sanitize_metric_name(f"{prefix}{key}"), number, ts, int(step)))
    return out


def entry_entities(
    entry: Mapping[str, Any], previous: tuple[int, float] | None, timestamp: int | None = None
) -> tuple[list[Metric], tuple[int, float] | None]:
    """One Trainer log entry as metrics at its `step`, and the (step, elapsed) point for the next entry.

    Where the entry carries a cumulative time (`elapsed_seconds` or `train_runtime`) and `previous` is an earlier
    point, the steps/s between the two is added as `train_steps_per_second_interval`.
    """
    ts = timestamp if timestamp is not None else int(time.time() * 1000)
    step = int(entry.get("step", 0))
    out = metric_entities({k: v for k, v in entry.items() if k not in _HISTORY_SKIP}, step=step, timestamp=ts)
    elapsed = next((_as_float(entry[k]) for k in _ELAPSED_KEYS if k in entry), None)
    if elapsed is None:
        return out, previous
    if previous is not None and step > previous[0] and elapsed > previous[1]:
        out.append(Metric("train_steps_per_second_interval", (step - previous[0]) / (elapsed - previous[1]), ts, step))
    return out, (step, elapsed)


def history_entities(log_history: Sequence[Mapping[str, Any]], timestamp: int | None = None) -> list[Metric]:
    """Trainer `log_history` as step-wise metrics (`loss`, `learning_rate`, `grad_norm`, eval_*, ...), with the
    steps/s between consecutive timed entries (`entry_entities`)."""
    out: list[Metric] = []
    previous: tuple[int, float] | None = None
    for entry in log_history:
        metrics, previous = entry_entities(entry, previous, timestamp)
        out.extend(metrics)
    return out


def unlogged(client: MlflowClient, run_id: str, entities: Sequence[Metric]) -> list[Metric]:
    """The step-wise `entities` whose (key, step) the run does not have yet: logging a history again (a resumed
    run, or one whose training was logged live) adds nothing twice."""
    seen: dict[str, set[int]] = {}
    for key in {m.key for m in entities}:
        seen[key] = {m.step for m in client.get_metric_history(run_id, key)}
    return [m for m in entities if m.step not in seen[m.key]]


# --- artifacts


def log_artifacts(client: MlflowClient, run_id: str, artifacts: Iterable[tuple[str | Path, str | None]]) -> list[str]:
    """Log files/directories, each under its artifact sub-path (None = run root). Missing paths raise."""
    logged = []
    for local, sub in artifacts:
        path = Path(local)
        if path.is_dir():
            client.log_artifacts(run_id, str(path), sub)
        elif path.is_file():
            client.log_artifact(run_id, str(path), sub)
        else:
            raise FileNotFoundError(f"artifact {path} does not exist")
        logged.append(f"{sub}/{path.name}" if sub and path.is_file() else (sub or path.name))
    return logged


# --- data inputs


def log_data_inputs(client: MlflowClient, run_id: str, data_version: str, splits: Mapping[str, Path]) -> None:
    """Log each split file as a dataset input of the run (context = the split's role, e.g. `training`), with the
    DVC data version as its digest: the run page's Datasets panel shows which data version a run used."""
    inputs = []
    for context, path in splits.items():
        with warnings.catch_warnings():  # a local path resolves to the same source class twice: harmless
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(str(Path(path).resolve()))
        dataset = MetaDataset(source, name=f"{Path(path).stem}@{data_version}", digest=data_version[:36])
        context_tag = InputTag(MLFLOW_DATASET_CONTEXT, context)
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[context_tag]))
    for attempt in range(DATASET_RACE_TRIES):
        try:
            client.log_inputs(run_id, datasets=inputs)
            return
        except MlflowException as exc:
            if attempt == DATASET_RACE_TRIES - 1 or not _lost_insert_race(exc):
                raise
            time.sleep(0.2 * (attempt + 1))


# Two runs logging the same dataset (same experiment, name and data version) at once: MLflow's store looks the row up,
# finds none in both, and the second INSERT breaks the unique key. Its transaction is rolled back; logging again finds
# the row the other run made and only links it.
DATASET_RACE_TRIES = 3
_UNIQUE_VIOLATION = ("UNIQUE constraint failed", "duplicate key value violates unique constraint")


def _lost_insert_race(exc: MlflowException) -> bool:
    return any(marker in str(exc) for marker in _UNIQUE_VIOLATION)


# --- one call


def log_run(
    client: MlflowClient,
    run_id: str,
    *,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    train_result: TrainResult | None = None,
    log_history: Sequence[Mapping[str, Any]] = (),
    artifacts: Iterable[tuple[str | Path, str | None]] = (),
    tags: Mapping[str, str] | None = None,
    environment: bool = True,
) -> None:
    """Log everything about one run into run `run_id`.

    `params` is a nested config dict (`cfg.to_dict()`); `metrics` are final figures (EM/F1, v2 breakdown).
    A `train_result` adds its metrics, its `log_history` (step-wise; steps the run already has, e.g. logged live
    during training, are not logged again), its artifacts (under `train/`) and the backend/device tags.
    `artifacts` are `(local path, artifact sub-path or None)` pairs.
    """
    all_tags = dict(tags or {})
    history = list(log_history)
    values = dict(metrics or {})
    extra: list[tuple[str | Path, str | None]] = []
    device = None
    if train_result is not None:
        values = {**train_result.metrics, **values}
        history = history or list(train_result.log_history)
        extra = [(p, "train") for p in train_result.artifacts.values()]
        device = train_result.device.device_name
        all_tags.setdefault(tag.BACKEND, train_result.device.backend)
        all_tags.setdefault(tag.DEVICE, device)
    if params:
        log_params(client, run_id, params)
    entities = metric_entities(values) + unlogged(client, run_id, history_entities(history))
    log_batched(client, run_id, metrics=entities, tags=[RunTag(k, str(v)) for k, v in all_tags.items()])
    log_artifacts(client, run_id, [*artifacts, *extra])
    if environment:
        log_environment(client, run_id, device or all_tags.get(tag.DEVICE))
