"""MLflow Model Registry helpers: idempotent registration per run, aliases (`challenger`, `champion`)."""

from __future__ import annotations

import mlflow
from mlflow.entities import LoggedModel, LoggedModelStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.tracking import tags as tag
from tasks.tracking.runs import quote_filter_value


def _client(client: MlflowClient | None) -> MlflowClient:
    return client or MlflowClient()


def ensure_registered_model(name: str, client: MlflowClient | None = None) -> None:
    """Create registered model `name` unless it exists (a concurrent creator is not an error)."""
    client = _client(client)
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def logged_models_of_run(run_id: str, name: str) -> list[LoggedModel]:
    """The logged models named `name` that `run_id` created, newest first (MLflow 3 LoggedModel entities)."""
    experiment_id = MlflowClient().get_run(run_id).info.experiment_id
    found = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"source_run_id = {quote_filter_value(run_id)} AND name = {quote_filter_value(name)}",
        output_format="list",
    )
    return sorted(found, key=lambda m: m.creation_timestamp, reverse=True)


def ready_logged_model(run_id: str, name: str) -> LoggedModel | None:
    """The newest *complete* logged model `name` of the run; None when none finished (e.g. the logger was killed)."""
    return next((m for m in logged_models_of_run(run_id, name) if m.status == LoggedModelStatus.READY), None)


def fail_unfinished_logged_models(run_id: str, name: str) -> int:
    """Mark the run's PENDING logged models `name` FAILED (left by a process killed while logging); how many."""
    client = MlflowClient()
    pending = [m for m in logged_models_of_run(run_id, name) if m.status == LoggedModelStatus.PENDING]
    for model in pending:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
    return len(pending)


def _same_artifact(version: ModelVersion, artifact_path: str) -> bool:
    """The version was registered from this artifact of its run (its tag, else the end of its source path)."""
    if tag.ARTIFACT_PATH in version.tags:
        return version.tags[tag.ARTIFACT_PATH] == artifact_path
    return (version.source or "").rstrip("/").endswith("/" + artifact_path.strip("/"))


def find_version_for_run(
    name: str, run_id: str, artifact_path: str, client: MlflowClient | None = None
) -> ModelVersion | None:
    """The existing version of `name` registered from `run_id`'s `artifact_path`, if any (lowest number)."""
    versions = _client(client).search_model_versions(
        f"name = {quote_filter_value(name)} and run_id = {quote_filter_value(run_id)}"
    )
    matching = [v for v in versions if _same_artifact(v, artifact_path)]
    return min(matching, key=lambda v: int(v.version)) if matching else None


def register_model(
    run_id: str,
    artifact_path: str,
    name: str,
    *,
    alias: str | None = "challenger",
    run_key: str | None = None,
) -> ModelVersion:
    """Register the run's complete logged model `artifact_path` as a version of `name` once per run; move `alias`.

    Calling it again for the same run/artifact (a restarted flow) returns the existing version. Uses the
    current tracking URI. The source is the run's newest READY logged model (`models:/m-...`): MLflow's own
    `runs:/` resolution fails (KeyError) or could pick a half-logged model when a killed logger left one behind.
    """
    client = MlflowClient()
    existing = find_version_for_run(name, run_id, artifact_path, client)
    if existing is not None:
        version = existing
    else:
        ensure_registered_model(name, client)
        tags = {tag.ARTIFACT_PATH: artifact_path, **({tag.RUN_KEY: run_key} if run_key else {})}
        ready = ready_logged_model(run_id, artifact_path)
        source = f"models:/{ready.model_id}" if ready else f"runs:/{run_id}/{artifact_path}"
        version = mlflow.register_model(source, name, tags=tags)
    if alias:
        set_alias(name, alias, version.version, client)
    return client.get_model_version(name, str(version.version))


def set_alias(name: str, alias: str, version: str | int, client: MlflowClient | None = None) -> None:
    """Point `name@alias` at `version` (moves the alias if it pointed elsewhere)."""
    _client(client).set_registered_model_alias(name, alias, str(version))


def get_version_by_alias(name: str, alias: str, client: MlflowClient | None = None) -> ModelVersion | None:
    """The version `name@alias` points at, or None if the model or the alias does not exist."""
    try:
        return _client(client).get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            return None
        raise
