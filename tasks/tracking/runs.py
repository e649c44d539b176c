"""MLflow tracking helpers: resolve the store; log a run's params, metrics, history, artifacts, tags, environment.

Plain functions over an explicit `MlflowClient` (the `Tracker` in `tasks.tracking.tracker` holds the one bound to
the configured store and calls them); none reads or sets MLflow's process-global tracking URI or active run.
A relative `sqlite:///` URI is resolved against the project root; `http(s)://` URIs (a tracking server)
pass through.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag, Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from mlflow.utils.validation import (
    MAX_ENTITY_KEY_LENGTH,
    MAX_METRICS_PER_BATCH,
    MAX_PARAM_VAL_LENGTH,
    MAX_PARAMS_TAGS_PER_BATCH,
    MAX_TAG_VAL_LENGTH,
)

from tasks.core.artifacts import TrainResult
from tasks.tracking import tags as tag

OVERFLOW_ARTIFACT = "params_overflow.json"
_SQLITE = "sqlite:///"
_BAD_METRIC_CHARS = re.compile(r"[^A-Za-z0-9_\-./ ]")
_PARAM_KEY_OK = re.compile(r"^[A-Za-z0-9_\-./ ]+$")
_HISTORY_SKIP = frozenset({"step"})
# Cumulative-seconds keys a log_history entry may carry; used to derive steps/s between two log points.
_ELAPSED_KEYS = ("elapsed_seconds", "train_runtime")


# --- configuration


def resolve_tracking_uri(uri: str, root: Path) -> str:
    """A relative `sqlite:///rel/path.db` becomes absolute under `root`; other URIs are returned unchanged."""
    if not uri.startswith(_SQLITE):
        return uri
    db = Path(uri[len(_SQLITE) :])
    if not db.is_absolute():
        db = Path(root).resolve() / db
    return _SQLITE + str(db)


def is_server(uri: str) -> bool:
    """A tracking server (`http(s)://`): it decides its own artifact location."""
    return uri.startswith(("http://", "https://"))


def store_exists(resolved_uri: str) -> bool:
    """Whether a tracking store is there already (a local sqlite file exists; a server is assumed to)."""
    return not resolved_uri.startswith(_SQLITE) or Path(resolved_uri[len(_SQLITE) :]).exists()


@contextlib.contextmanager
def init_lock(uri: str) -> Iterator[None]:
    """Serialise first use of a sqlite store across processes (schema creation is not concurrency-safe)."""
    if not uri.startswith(_SQLITE):
        yield
        return
    db = Path(uri[len(_SQLITE) :])
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.parent / f".{db.name}.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _is_already_exists(exc: MlflowException) -> bool:
    return exc.error_code == "RESOURCE_ALREADY_EXISTS" or "already exists" in str(exc).lower()


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created if missing; a concurrent creator's experiment is re-read."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as exc:
        if not _is_already_exists(exc):
            raise
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


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


# --- tags, environment


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_commit(root: Path) -> str | None:
    """HEAD's commit hash in `root`, or None outside a git repository / before the first commit."""
    commit = (_git(root, "rev-parse", "HEAD") or "").strip()
    return commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None


def git_tags(root: Path) -> dict[str, str]:
    """The code a run ran: commit and branch (MLflow's own `mlflow.source.git.*` tags) and whether the working
    tree had uncommitted changes (`qaflow.git_dirty`: true | false). Empty outside a git repository."""
    commit = git_commit(root)
    if commit is None:
        return {}
    tags = {tag.GIT_COMMIT: commit}
    branch = (_git(root, "rev-parse", "--abbrev-ref", "HEAD") or "").strip()
    if branch and branch != "HEAD":  # "HEAD": detached, no branch
        tags[tag.GIT_BRANCH] = branch
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    if status is not None:
        tags[tag.GIT_DIRTY] = str(bool(status.strip())).lower()
    return tags


def run_tags(
    *,
    data_version: str | None = None,
    backend: str | None = None,
    device: str | None = None,
    run_key: str | None = None,
    root: Path | None = None,
) -> dict[str, str]:
    """Standard qaflow tags plus the git state of `root` (`git_tags`)."""
    tags = {
        tag.DATA_VERSION: data_version,
        tag.BACKEND: backend,
        tag.DEVICE: device,
        tag.RUN_KEY: run_key,
        **(git_tags(root) if root is not None else {}),
    }
    return {k: str(v)[:MAX_TAG_VAL_LENGTH] for k, v in tags.items() if v is not None}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def requirements_text() -> str:
    """`pip freeze` of this interpreter; falls back to the installed distributions if pip is unavailable."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, timeout=60, check=True
        )
        return out.stdout
    except (OSError, subprocess.SubprocessError):
        dists = {f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()}
        return "\n".join(sorted(dists, key=str.lower)) + "\n"


def environment_info(device: str | None = None) -> dict[str, Any]:
    """Interpreter, library versions and hardware of this process."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "tokenizers": _version("tokenizers"),
        "mlflow": _version("mlflow"),
        "device": device,
        "cpu_count": cpus,
        "processor": platform.processor() or platform.machine(),
    }


def log_environment(client: MlflowClient, run_id: str, device: str | None = None) -> None:
    """`environment.json` and `requirements.txt` (pip freeze) under the run's `environment/` artifacts."""
    client.log_dict(run_id, environment_info(device), "environment/environment.json")
    client.log_text(run_id, requirements_text(), "environment/requirements.txt")


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


# --- lookup


LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves a local store by default


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run's page in the MLflow UI: on the tracking server, or (a local store) where `mlflow ui` serves it."""
    base = tracking_uri.rstrip("/") if is_server(tracking_uri) else LOCAL_UI
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def quote_filter_value(value: str) -> str:
    """A string literal for MLflow search filters (which have no escape for the quote character)."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise ValueError(f"cannot search for a value containing both quote characters: {value!r}")


def find_run_by_key(client: MlflowClient, experiment_id: str, key: str) -> Run | None:
    """The newest run of the experiment tagged `qaflow.run_key = key` (any status), or None."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{tag.RUN_KEY}` = {quote_filter_value(key)}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None
