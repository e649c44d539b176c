"""The tracking seam: one `Tracker` per entry point (a flow or a `qaflow` command), bound to one store.

`Tracker.from_config(cfg.tracking, root)` is built once where a flow or command starts and handed to every step
that tracks: open or resume a run, log params / metrics / tables / artifacts, live Trainer callbacks, log and load
the served model, register a version, move aliases, read runs back. It holds an `MlflowClient` bound to its own URI,
so two trackers on two stores live side by side in one process. Steps never set MLflow's process-global tracking
URI; the few MLflow calls that only read it (logging and loading a pyfunc, `mlflow.register_model`, downloading a
`models:/` URI) get it from `_fluent_store` for that call only. `bind_process` is the one exception, for code that
only speaks MLflow's fluent API (the Trainer's own `MLflowCallback`).

What it reads back are plain records (`tasks.tracking.records`), so the steps hold no MLflow types.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
from mlflow.entities import Run
from mlflow.entities.model_registry import ModelVersion
from mlflow.environment_variables import MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.tracking import fluent as mlflow_fluent
from mlflow.tracking.context.registry import resolve_tags

from tasks.core.artifacts import TrainResult
from tasks.core.config import TrackingConfig
from tasks.core.slices import SliceRow
from tasks.tracking import tags as tag
from tasks.tracking.records import RunRecord, VersionRecord
from tasks.tracking.registry import (
    ensure_registered_model,
    fail_unfinished_logged_models,
    find_version_for_run,
    get_version_by_alias,
    ready_logged_model,
    registered_aliases,
)
from tasks.tracking.runs import (
    log_artifacts,
    log_batched,
    log_data_inputs,
    log_params,
    log_run,
    metric_entities,
)
from tasks.tracking.slice_tables import SLICES_TABLE, load_slice_table, log_slice_table
from tasks.tracking.store import (
    ensure_experiment,
    find_run_by_key,
    init_lock,
    is_server,
    open_tracking_uri,
    quote_filter_value,
    run_url,
    store_exists,
)
from tasks.tracking.system_metrics import system_metrics as sample_system_metrics

if TYPE_CHECKING:
    from tasks.tracking.live import LiveMetrics


class ModelLoadError(RuntimeError):
    """A model URI the store cannot resolve or load (one line: the URI and the store's message)."""


def run_record(run: Run) -> RunRecord:
    info, data = run.info, run.data
    return RunRecord(
        info.run_id, info.experiment_id, info.run_name or data.tags.get("mlflow.runName", ""), info.status,
        dict(data.tags), dict(data.params), dict(data.metrics),
    )  # fmt: skip


def version_record(version: ModelVersion) -> VersionRecord:
    return VersionRecord(
        version.name, str(version.version), version.run_id, version.source or "", dict(version.tags),
        tuple(version.aliases or ()),
    )  # fmt: skip


@contextlib.contextmanager
def _fluent_store(uri: str) -> Iterator[None]:
    """MLflow's fluent API reads the process-global tracking URI: point it at `uri` for the block, then put back
    whatever was there (nothing, or another URI)."""
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    # `set_experiment` (bind_process) leaves an active experiment id that `start_run(run_id=...)` checks a run of
    # another experiment against: none for the block. MLflow has no public way to unset it.
    active_experiment = mlflow_fluent._active_experiment_id
    mlflow.set_tracking_uri(uri)
    mlflow_fluent._active_experiment_id = None
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)
        mlflow_fluent._active_experiment_id = active_experiment


class Tracker:
    """One MLflow store (`uri`), the experiment runs go to, and the registered model versions go to."""

    def __init__(self, uri: str, experiment_name: str, model_name: str, artifacts: Path | None = None) -> None:
        self.uri = uri
        self.experiment_name = experiment_name
        self.model_name = model_name
        self.artifacts = artifacts  # a local store's artifact directory; a server decides its own

    @classmethod
    def from_config(cls, tracking: TrackingConfig, root: Path) -> Tracker:
        """The configured store: a relative `sqlite:///` path and `artifact_root` are the project's (`root`)."""
        uri = open_tracking_uri(tracking.tracking_uri, root)  # bounded waits on a server; a sqlite store checked
        artifacts = None if is_server(uri) else Path(root).resolve() / tracking.artifact_root
        return cls(uri, tracking.experiment_name, tracking.registered_model_name, artifacts)

    def __repr__(self) -> str:
        return f"Tracker({self.uri!r}, experiment={self.experiment_name!r}, model={self.model_name!r})"

    def __getstate__(self) -> dict[str, Any]:
        """The settings only (Prefect hashes task inputs): a copy opens its own client."""
        return {k: self.__dict__[k] for k in ("uri", "experiment_name", "model_name", "artifacts")}

    # --- the store

    def store_exists(self) -> bool:
        """Whether the store is there already (a local sqlite file exists; a server is assumed to). Creates nothing."""
        return store_exists(self.uri)

    @cached_property
    def client(self) -> MlflowClient:
        """The client of this store (opening a local sqlite store the first time creates its schema, under a lock)."""
        with init_lock(self.uri):
            return MlflowClient(self.uri)

    @cached_property
    def experiment_id(self) -> str:
        """The experiment's id, created on first use (a local store's artifacts under `artifacts`)."""
        client = self.client
        location = None
        if self.artifacts is not None:
            self.artifacts.mkdir(parents=True, exist_ok=True)
            location = self.artifacts.as_uri()
        with init_lock(self.uri):
            return ensure_experiment(client, self.experiment_name, location)

    def bind_process(self) -> None:
        """Point MLflow's process-global fluent API (and child processes, through MLFLOW_TRACKING_URI) at this store
        and experiment: only for code that speaks nothing else, the Trainer's own `MLflowCallback`."""
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_experiment(experiment_id=self.experiment_id)

    def run_url(self, run_id: str) -> str:
        """The run's page in the MLflow UI (for a local store: where `mlflow ui --backend-store-uri URI` serves it)."""
        return run_url(self.uri, self.experiment_id, run_id)

    def ui_command(self) -> str | None:
        """What serves `run_url`'s pages: None for a tracking server (it is the UI), else the `mlflow ui` command
        for this local store (its default address is the one `run_url` links to)."""
        return None if is_server(self.uri) else f"mlflow ui --backend-store-uri {self.uri}"

    # --- runs

    def create_run(self, name: str, tags: Mapping[str, str] | None = None) -> str:
        """A new RUNNING run of the experiment; its id."""
        return self.client.create_run(self.experiment_id, tags=dict(tags or {}), run_name=name).info.run_id

    @contextlib.contextmanager
    def run(self, name: str, tags: Mapping[str, str] | None = None) -> Iterator[str]:
        """A new run for the block, as `mlflow.start_run` makes one (with MLflow's context tags: user, source; system
        metrics where MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING asks); FINISHED when the block ends, FAILED if it raises."""
        run = self.client.create_run(self.experiment_id, tags=resolve_tags(dict(tags or {})), run_name=name)
        run_id = run.info.run_id
        sampling = MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING.get()
        with self._ended(run_id), self.system_metrics(run_id) if sampling else contextlib.nullcontext():
            yield run_id

    @contextlib.contextmanager
    def resumed(self, run_id: str) -> Iterator[str]:
        """Run `run_id` RUNNING again for the block; FINISHED when it ends, FAILED when it raises."""
        self.client.update_run(run_id, status="RUNNING")
        with self._ended(run_id):
            yield run_id

    @contextlib.contextmanager
    def _ended(self, run_id: str) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        self.client.set_terminated(run_id, "FINISHED")

    def mark_running(self, run_id: str) -> None:
        """A resumed run is RUNNING again (while it trains, or while a resumed search runs its trials)."""
        if self.client.get_run(run_id).info.status != "RUNNING":
            self.client.update_run(run_id, status="RUNNING")

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        """End the run: FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status)

    def get_run(self, run_id: str) -> RunRecord:
        return run_record(self.client.get_run(run_id))

    def find_run(self, run_key: str) -> RunRecord | None:
        """The newest run of the experiment tagged with `run_key` (any status), or None."""
        found = find_run_by_key(self.client, self.experiment_id, run_key)
        return run_record(found) if found is not None else None

    def search_runs(self, max_results: int = 200) -> list[RunRecord]:
        """The experiment's runs, newest first."""
        runs = self.client.search_runs(
            [self.experiment_id], max_results=max_results, order_by=["attributes.start_time DESC"]
        )
        return [run_record(r) for r in runs]

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """(step, value) of every logged value of metric `key`, by step."""
        return sorted((int(m.step), float(m.value)) for m in self.client.get_metric_history(run_id, key))

    # --- logging

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_tag(run_id, key, value)

    def log_params(self, run_id: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """A nested config as `section.key` params; what does not fit goes to `params_overflow.json` (returned)."""
        return log_params(self.client, run_id, params)

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Numeric values of `metrics` at `step` (names mapped onto MLflow's alphabet)."""
        log_batched(self.client, run_id, metrics=metric_entities(metrics, step=step))

    def log_run(
        self,
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
        """Everything about one run (see `tasks.tracking.runs.log_run`); logging it again adds nothing twice."""
        log_run(self.client, run_id, params=params, metrics=metrics, train_result=train_result,
                log_history=log_history, artifacts=artifacts, tags=tags, environment=environment)  # fmt: skip

    def log_data_inputs(self, run_id: str, data_version: str, splits: Mapping[str, Path]) -> None:
        """Each split file as a dataset input (context = its role) with the data version as its digest."""
        log_data_inputs(self.client, run_id, data_version, splits)

    def log_artifacts(self, run_id: str, artifacts: Iterable[tuple[str | Path, str | None]]) -> list[str]:
        """Files / directories, each under its artifact sub-path (None = the run's root)."""
        return log_artifacts(self.client, run_id, artifacts)

    def log_table(self, run_id: str, data: Any, artifact_file: str) -> None:
        """Columns (a dict of lists or a DataFrame) as an MLflow table; logged again, it is appended to."""
        self.client.log_table(run_id, data=data, artifact_file=artifact_file)

    def log_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        self.client.log_dict(run_id, data, artifact_file)

    def has_artifact(self, run_id: str, path: str) -> bool:
        """Whether the run has an artifact at `path` (a file or a directory)."""
        parent = path.rsplit("/", 1)[0] if "/" in path else None
        return any(a.path == path for a in self.client.list_artifacts(run_id, parent))

    def log_slice_table(self, run_id: str, rows: Sequence[SliceRow], artifact_file: str = SLICES_TABLE) -> None:
        """Error-slice rows as the run's slice table (read back by `slice_table`)."""
        log_slice_table(self.client, run_id, rows, artifact_file)

    def slice_table(self, run_id: str, artifact_file: str = SLICES_TABLE) -> list[dict[str, Any]]:
        """A run's slice table as row dicts; [] when it logged none."""
        return load_slice_table(self.client, run_id, artifact_file)

    def live_metrics(self, run_id: str) -> LiveMetrics:
        """A Trainer callback logging every log entry into the run as it happens."""
        # late: the callback is a transformers TrainerCallback (transformers imports torch); only training asks for
        # it, and the light commands that hold a Tracker (`qaflow compare`) must start without either
        from tasks.tracking.live import LiveMetrics

        return LiveMetrics(self.client, run_id)

    def system_metrics(self, run_id: str) -> contextlib.AbstractContextManager[Any]:
        """Sample CPU, memory, disk, network (and GPU) into the run while the block runs."""
        return sample_system_metrics(self.uri, run_id)

    # --- the served model

    def has_ready_model(self, run_id: str, name: str) -> bool:
        """Whether the run logged model `name` completely (a killed logger leaves an unfinished one)."""
        return ready_logged_model(self.client, run_id, name) is not None

    def fail_unfinished_models(self, run_id: str, name: str) -> int:
        """Mark the run's unfinished logged models `name` FAILED; how many."""
        return fail_unfinished_logged_models(self.client, run_id, name)

    def log_pyfunc_model(self, run_id: str, name: str, **pyfunc: Any) -> None:
        """`mlflow.pyfunc.log_model(name=name, **pyfunc)` into run `run_id`. MLflow 3 logs a model only into the
        active run of the process-global store, so both are set for this call (the run is FINISHED after it)."""
        with _fluent_store(self.uri), mlflow.start_run(run_id=run_id):
            mlflow.pyfunc.log_model(name=name, **pyfunc)

    def load_pyfunc(self, model_uri: str) -> Any:
        """`mlflow.pyfunc.load_model(model_uri)` from this store (`models:/name@alias`, `models:/name/3`,
        `runs:/id/model`); a URI it cannot load raises ModelLoadError. MLflow runs the model's code to load it (or
        unpickles it): qaflow's commands load models through `pipeline.serving.load_qa_model` instead."""
        with _fluent_store(self.uri):
            try:
                return mlflow.pyfunc.load_model(model_uri)
            except MlflowException as exc:
                raise ModelLoadError(f"cannot load {model_uri}: {exc.message}") from exc

    def download_model(self, model_uri: str, dst: Path) -> Path:
        """The files of `model_uri` (e.g. `models:/name/3`) downloaded under `dst`; the local path."""
        with _fluent_store(self.uri):
            return Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(dst)))

    # --- the registry (model `model_name`)

    def register(
        self, run_id: str, artifact_path: str, *, alias: str | None = "challenger", run_key: str | None = None
    ) -> VersionRecord:
        """Register the run's complete logged model `artifact_path` once per run; move `alias` to that version.

        Calling it again for the same run/artifact (a restarted flow) returns the existing version. The source is
        the run's newest READY logged model (`models:/m-...`): MLflow's own `runs:/` resolution fails (KeyError) or
        could pick a half-logged model when a killed logger left one behind.
        """
        version = find_version_for_run(self.client, self.model_name, run_id, artifact_path)
        if version is None:
            ensure_registered_model(self.client, self.model_name)
            tags = {tag.ARTIFACT_PATH: artifact_path, **({tag.RUN_KEY: run_key} if run_key else {})}
            ready = ready_logged_model(self.client, run_id, artifact_path)
            source = f"models:/{ready.model_id}" if ready else f"runs:/{run_id}/{artifact_path}"
            with _fluent_store(self.uri):
                version = mlflow.register_model(source, self.model_name, tags=tags)
        if alias:
            self.set_alias(alias, version.version)
        return version_record(self.client.get_model_version(self.model_name, str(version.version)))

    def version_of_run(self, run_id: str, artifact_path: str) -> VersionRecord | None:
        """The version registered from the run's `artifact_path`, if any."""
        found = find_version_for_run(self.client, self.model_name, run_id, artifact_path)
        return version_record(found) if found is not None else None

    def version_by_alias(self, alias: str) -> VersionRecord | None:
        """The version `model@alias` points at, or None (no such model or alias)."""
        found = get_version_by_alias(self.client, self.model_name, alias)
        return version_record(found) if found is not None else None

    def set_alias(self, alias: str, version: str | int) -> None:
        """Point `model@alias` at `version` (moves it if it pointed elsewhere)."""
        self.client.set_registered_model_alias(self.model_name, alias, str(version))

    def delete_alias(self, alias: str) -> None:
        self.client.delete_registered_model_alias(self.model_name, alias)

    def tag_version(self, version: str, tags: Mapping[str, str]) -> None:
        for key, value in tags.items():
            self.client.set_model_version_tag(self.model_name, str(version), key, value)

    def describe_version(self, version: str, description: str) -> None:
        """The version's description (shown on the registry page)."""
        self.client.update_model_version(self.model_name, str(version), description=description)

    def versions(self) -> list[VersionRecord]:
        """Every registered version of the model, oldest first, with its aliases; [] when there is no such model."""
        aliases = registered_aliases(self.client, self.model_name)
        if aliases is None:
            return []
        found: list[ModelVersion] = []
        page_token = None
        while True:
            page = self.client.search_model_versions(f"name = {quote_filter_value(self.model_name)}",
                                                     page_token=page_token)  # fmt: skip
            found.extend(page)
            page_token = page.token
            if not page_token:
                break
        by_version: dict[str, list[str]] = {}
        for alias, version in aliases.items():
            by_version.setdefault(str(version), []).append(alias)
        records = [version_record(v) for v in found]
        return sorted(
            (replace(r, aliases=tuple(sorted(by_version.get(r.version, ())))) for r in records),
            key=lambda r: int(r.version),
        )
