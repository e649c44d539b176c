"""The tracking store: its URI resolved (a relative `sqlite:///` against the project root; `http(s)://` servers
pass through) with bounded waits on a server and a local sqlite file checked, the first-use lock, the experiment,
and finding a run (by key, its UI link). Plain functions over an explicit `MlflowClient`."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.tracking import tags as tag

_SQLITE = "sqlite:///"


# --- configuration

# A tracking server that is down, or accepts and never answers, fails a command within about 30 s instead of MLflow's
# minutes (7 retries with exponential backoff, 120 s per request): 3 tries of 8 s, 0 then 1-2 s apart. A variable
# set in the environment wins.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "8",
}
SQLITE_MAGIC = b"SQLite format 3\x00"


class TrackingStoreError(ValueError):
    """A tracking store qaflow will not use (an empty or corrupt sqlite file): never re-initialised silently."""


def open_tracking_uri(uri: str, root: Path) -> str:
    """The resolved tracking URI, with bounded waits on a server (`HTTP_LIMITS`) and a local sqlite store checked
    (`check_sqlite_store`); every command opens its store through here."""
    for name, value in HTTP_LIMITS.items():
        os.environ.setdefault(name, value)
    resolved = resolve_tracking_uri(uri, root)
    if resolved.startswith(_SQLITE):
        check_sqlite_store(Path(resolved[len(_SQLITE) :]))
    return resolved


def check_sqlite_store(db: Path) -> None:
    """An existing sqlite store must be a readable SQLite database; a missing one is created by MLflow (first use).

    A 0-byte or foreign file would otherwise be initialised as an empty store, hiding every run and model."""
    if not db.exists():
        return
    with open(db, "rb") as handle:
        head = handle.read(len(SQLITE_MAGIC))
    if not head:
        raise TrackingStoreError(
            f"{db}: empty file (0 bytes), not an MLflow tracking store; restore it, or delete it to start a new store"
        )
    if head != SQLITE_MAGIC:
        raise TrackingStoreError(f"{db}: not an SQLite database (not an MLflow tracking store)")
    try:
        with contextlib.closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)) as conn:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise TrackingStoreError(f"{db}: corrupt SQLite tracking store ({exc})") from None


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


# MLflow 3's UI opens an experiment on the view of its kind; without this tag it may infer GenAI ("Traces 0").
# `custom_model_development` is what the UI itself writes for "Machine learning": the training-runs view.
EXPERIMENT_KIND = {tag.EXPERIMENT_KIND: tag.KIND_MACHINE_LEARNING}


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created if missing (of MLflow's machine-learning kind, `EXPERIMENT_KIND`; an
    existing one without a kind gets it, a kind someone chose is kept); a concurrent creator's is re-read."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        if tag.EXPERIMENT_KIND not in found.tags:
            client.set_experiment_tag(found.experiment_id, tag.EXPERIMENT_KIND, tag.KIND_MACHINE_LEARNING)
        return found.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location, tags=EXPERIMENT_KIND)
    except MlflowException as exc:
        if not _is_already_exists(exc):
            raise
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


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
