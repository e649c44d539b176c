"""MLflow Model Registry look-ups over an explicit client: logged models of a run, versions, aliases.

Registration itself (`Tracker.register`) is in `tasks.tracking.tracker`: MLflow creates a version from a logged
model only through its fluent `mlflow.register_model`.
"""

from __future__ import annotations

from mlflow.entities import LoggedModel, LoggedModelStatus
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from tasks.tracking import tags as tag
from tasks.tracking.store import quote_filter_value


def ensure_registered_model(client: MlflowClient, name: str) -> None:
    """Create registered model `name` unless it exists (a concurrent creator is not an error)."""
    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def logged_models_of_run(client: MlflowClient, run_id: str, name: str) -> list[LoggedModel]:
    """The logged models named `name` that `run_id` created, newest first (MLflow 3 LoggedModel entities)."""
    experiment_id = client.get_run(run_id).info.experiment_id
    query = f"source_run_id = {quote_filter_value(run_id)} AND name = {quote_filter_value(name)}"
    found: list[LoggedModel] = []
    page_token = None
    while True:
        page = client.search_logged_models([experiment_id], filter_string=query, page_token=page_token)
        found.extend(page.to_list())
        if not page.token:
            break
        page_token = page.token
    return sorted(found, key=lambda m: m.creation_timestamp, reverse=True)


def ready_logged_model(client: MlflowClient, run_id: str, name: str) -> LoggedModel | None:
    """The newest *complete* logged model `name` of the run; None when none finished (e.g. the logger was killed)."""
    return next((m for m in logged_models_of_run(client, run_id, name) if m.status == LoggedModelStatus.READY), None)


def fail_unfinished_logged_models(client: MlflowClient, run_id: str, name: str) -> int:
    """Mark the run's PENDING logged models `name` FAILED (left by a process killed while logging); how many."""
    pending = [m for m in logged_models_of_run(client, run_id, name) if m.status == LoggedModelStatus.PENDING]
    for model in pending:
        client.finalize_logged_model(model.model_id, LoggedModelStatus.FAILED)
    return len(pending)


def _same_artifact(version: ModelVersion, artifact_path: str) -> bool:
    """The version was registered from this artifact of its run (its tag, else the end of its source path)."""
    if tag.ARTIFACT_PATH in version.tags:
        return version.tags[tag.ARTIFACT_PATH] == artifact_path
    return (version.source or "").rstrip("/").endswith("/" + artifact_path.strip("/"))


def find_version_for_run(client: MlflowClient, name: str, run_id: str, artifact_path: str) -> ModelVersion | None:
    """The existing version of `name` registered from `run_id`'s `artifact_path`, if any (lowest number)."""
    versions = client.search_model_versions(
        f"name = {quote_filter_value(name)} and run_id = {quote_filter_value(run_id)}"
    )
    matching = [v for v in versions if _same_artifact(v, artifact_path)]
    return min(matching, key=lambda v: int(v.version)) if matching else None


def get_version_by_alias(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The version `name@alias` points at, or None if the model or the alias does not exist."""
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            return None
        raise


def registered_aliases(client: MlflowClient, name: str) -> dict[str, str] | None:
    """The model's aliases ({alias: version}); None when the registered model does not exist."""
    try:
        return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}:
            return None
        raise
