"""`tasks.tracking.registry` on a real local sqlite MLflow store: idempotent registration, aliases, look-ups."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pytest
from mlflow.entities import LoggedModelStatus
from mlflow.tracking import MlflowClient

from tasks.core.config import TrackingConfig
from tasks.tracking import tags
from tasks.tracking.registry import (
    ensure_registered_model,
    fail_unfinished_logged_models,
    find_version_for_run,
    get_version_by_alias,
    ready_logged_model,
    register_model,
    set_alias,
)
from tasks.tracking.runs import configure_mlflow


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One sqlite store per module (creating the schema takes seconds); tests use their own model names."""
    root = tmp_path_factory.mktemp("registry-root")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        configure_mlflow(TrackingConfig(experiment_name="registry"), root)
        yield root
        mlflow.set_tracking_uri(None)  # also unsets MLFLOW_TRACKING_URI, which set_tracking_uri exports


def logged_run(store: Path, artifact_path: str = "model") -> str:
    """A finished run with a tiny model directory under `artifact_path`; returns its id.

    MLflow 3 registers `runs:/<id>/<path>` from the run's artifacts only where `<path>/MLmodel` exists (else it
    looks for a logged model of that name), so a minimal `MLmodel` file is logged beside a weights file.
    """
    configure_mlflow(TrackingConfig(experiment_name="registry"), store)
    with mlflow.start_run() as run:
        mlflow.log_text("flavors: {}\n", f"{artifact_path}/MLmodel")
        mlflow.log_text("weights", f"{artifact_path}/weights.txt")
    return run.info.run_id


def test_register_model_creates_version_with_alias_and_tags(store: Path) -> None:
    run_id = logged_run(store)
    version = register_model(run_id, "model", "reg-a", run_key="key123")
    assert str(version.version) == "1"
    assert version.run_id == run_id
    assert version.tags[tags.ARTIFACT_PATH] == "model"
    assert version.tags[tags.RUN_KEY] == "key123"
    assert "challenger" in version.aliases
    by_alias = get_version_by_alias("reg-a", "challenger")
    assert by_alias is not None and str(by_alias.version) == "1"


def test_register_model_is_idempotent_per_run(store: Path) -> None:
    run_id = logged_run(store)
    first = register_model(run_id, "model", "reg-b")
    again = register_model(run_id, "model", "reg-b", run_key="ignored")
    assert str(again.version) == str(first.version) == "1"
    assert len(MlflowClient().search_model_versions("name = 'reg-b'")) == 1
    assert tags.RUN_KEY not in again.tags  # the existing version is returned as it is


def test_second_run_gets_next_version_and_moves_alias(store: Path) -> None:
    first = register_model(logged_run(store), "model", "reg-c")
    second = register_model(logged_run(store), "model", "reg-c")
    assert (str(first.version), str(second.version)) == ("1", "2")
    current = get_version_by_alias("reg-c", "challenger")
    assert current is not None and str(current.version) == "2"
    assert "challenger" not in MlflowClient().get_model_version("reg-c", "1").aliases


def test_register_without_alias(store: Path) -> None:
    version = register_model(logged_run(store), "model", "reg-d", alias=None)
    assert str(version.version) == "1" and not version.aliases
    assert tags.RUN_KEY not in version.tags
    assert get_version_by_alias("reg-d", "challenger") is None


def test_find_version_for_run(store: Path) -> None:
    run_id = logged_run(store)
    assert find_version_for_run("reg-e", run_id, "model") is None  # no registered model yet
    registered = register_model(run_id, "model", "reg-e")
    found = find_version_for_run("reg-e", run_id, "model")
    assert found is not None and str(found.version) == str(registered.version)
    assert find_version_for_run("reg-e", run_id, "other") is None  # another artifact of the same run
    assert find_version_for_run("reg-e", logged_run(store), "model") is None  # another run


def test_set_alias_and_get_version_by_alias(store: Path) -> None:
    register_model(logged_run(store), "model", "reg-f")
    register_model(logged_run(store), "model", "reg-f")
    set_alias("reg-f", "champion", 1)
    champion = get_version_by_alias("reg-f", "champion")
    assert champion is not None and str(champion.version) == "1"
    set_alias("reg-f", "champion", "2")  # moves it
    champion = get_version_by_alias("reg-f", "champion")
    assert champion is not None and str(champion.version) == "2"


def test_get_version_by_alias_missing(store: Path) -> None:
    register_model(logged_run(store), "model", "reg-g", alias=None)
    assert get_version_by_alias("reg-g", "champion") is None  # no such alias
    assert get_version_by_alias("no-such-model", "champion") is None  # no such model


def test_ensure_registered_model_twice(store: Path) -> None:
    ensure_registered_model("reg-h")
    ensure_registered_model("reg-h")  # already exists: not an error
    assert MlflowClient().get_registered_model("reg-h").name == "reg-h"


def test_find_version_for_run_does_not_match_a_nested_artifact_with_the_same_last_name(store: Path) -> None:
    run_id = logged_run(store, "candidates/model")
    with mlflow.start_run(run_id=run_id):
        mlflow.log_text("flavors: {}\n", "model/MLmodel")
    nested = register_model(run_id, "candidates/model", "reg-i")
    assert find_version_for_run("reg-i", run_id, "model") is None
    top = register_model(run_id, "model", "reg-i")
    assert str(top.version) != str(nested.version)


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):  # noqa: ANN001, ANN201 - pyfunc signature
        return model_input


def test_a_half_logged_model_is_never_registered(store: Path) -> None:
    """A process killed while logging leaves a PENDING logged model; MLflow's own runs:/ resolution then fails
    with a KeyError. qaflow registers the run's newest READY logged model and marks the half one FAILED."""
    configure_mlflow(TrackingConfig(experiment_name="registry"), store)
    with mlflow.start_run() as run:
        killed = mlflow.initialize_logged_model(name="model", source_run_id=run.info.run_id)
    run_id = run.info.run_id
    assert ready_logged_model(run_id, "model") is None
    assert fail_unfinished_logged_models(run_id, "model") == 1
    assert MlflowClient().get_logged_model(killed.model_id).status == LoggedModelStatus.FAILED
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=_Echo())
    ready = ready_logged_model(run_id, "model")
    assert ready is not None and ready.model_id == info.model_id
    version = register_model(run_id, "model", "reg-killed")
    assert version.source == f"models:/{info.model_id}" and version.run_id == run_id
    assert register_model(run_id, "model", "reg-killed").version == version.version
