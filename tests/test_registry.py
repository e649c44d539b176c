"""The registry through the `Tracker` (`tasks.tracking.registry` look-ups) on a real local sqlite MLflow store:
idempotent registration, aliases, look-ups."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pytest
from mlflow.entities import LoggedModelStatus

from tasks.core.config import TrackingConfig
from tasks.tracking import tags
from tasks.tracking.registry import (
    ensure_registered_model,
    fail_unfinished_logged_models,
    find_version_for_run,
    get_version_by_alias,
    ready_logged_model,
)
from tasks.tracking.tracker import Tracker


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One sqlite store per module (creating the schema takes seconds); tests use their own model names."""
    root = tmp_path_factory.mktemp("registry-root")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert registry(root, "setup").experiment_id
        yield root


def registry(store: Path, name: str) -> Tracker:
    """A tracker of the module's store whose registered model is `name`."""
    return Tracker.from_config(TrackingConfig(experiment_name="registry", registered_model_name=name), store)


def logged_run(tracker: Tracker, artifact_path: str = "model") -> str:
    """A finished run with a tiny model directory under `artifact_path`; returns its id.

    MLflow 3 registers `runs:/<id>/<path>` from the run's artifacts only where `<path>/MLmodel` exists (else it
    looks for a logged model of that name), so a minimal `MLmodel` file is logged beside a weights file.
    """
    with tracker.run("logged") as run_id:
        tracker.client.log_text(run_id, "flavors: {}\n", f"{artifact_path}/MLmodel")
        tracker.client.log_text(run_id, "weights", f"{artifact_path}/weights.txt")
    return run_id


def test_register_model_creates_version_with_alias_and_tags(store: Path) -> None:
    tracker = registry(store, "reg-a")
    run_id = logged_run(tracker)
    version = tracker.register(run_id, "model", run_key="key123")
    assert version.version == "1" and version.model == "reg-a"
    assert version.run_id == run_id
    assert version.tags[tags.ARTIFACT_PATH] == "model"
    assert version.tags[tags.RUN_KEY] == "key123"
    assert "challenger" in version.aliases
    by_alias = tracker.version_by_alias("challenger")
    assert by_alias is not None and by_alias.version == "1"


def test_register_model_is_idempotent_per_run(store: Path) -> None:
    tracker = registry(store, "reg-b")
    run_id = logged_run(tracker)
    first = tracker.register(run_id, "model")
    again = tracker.register(run_id, "model", run_key="ignored")
    assert again.version == first.version == "1"
    assert len(tracker.client.search_model_versions("name = 'reg-b'")) == 1
    assert tags.RUN_KEY not in again.tags  # the existing version is returned as it is


def test_second_run_gets_next_version_and_moves_alias(store: Path) -> None:
    tracker = registry(store, "reg-c")
    first = tracker.register(logged_run(tracker), "model")
    second = tracker.register(logged_run(tracker), "model")
    assert (first.version, second.version) == ("1", "2")
    current = tracker.version_by_alias("challenger")
    assert current is not None and current.version == "2"
    assert "challenger" not in tracker.client.get_model_version("reg-c", "1").aliases


def test_register_without_alias(store: Path) -> None:
    tracker = registry(store, "reg-d")
    version = tracker.register(logged_run(tracker), "model", alias=None)
    assert version.version == "1" and not version.aliases
    assert tags.RUN_KEY not in version.tags
    assert tracker.version_by_alias("challenger") is None


def test_find_version_for_run(store: Path) -> None:
    tracker = registry(store, "reg-e")
    run_id = logged_run(tracker)
    assert tracker.version_of_run(run_id, "model") is None  # no registered model yet
    registered = tracker.register(run_id, "model")
    found = tracker.version_of_run(run_id, "model")
    assert found is not None and found.version == registered.version
    assert tracker.version_of_run(run_id, "other") is None  # another artifact of the same run
    assert tracker.version_of_run(logged_run(tracker), "model") is None  # another run
    assert find_version_for_run(tracker.client, "reg-e", run_id, "model").version == 1


def test_set_alias_and_get_version_by_alias(store: Path) -> None:
    tracker = registry(store, "reg-f")
    tracker.register(logged_run(tracker), "model")
    tracker.register(logged_run(tracker), "model")
    tracker.set_alias("champion", 1)
    champion = tracker.version_by_alias("champion")
    assert champion is not None and champion.version == "1"
    tracker.set_alias("champion", "2")  # moves it
    champion = tracker.version_by_alias("champion")
    assert champion is not None and champion.version == "2"
    tracker.delete_alias("champion")
    assert tracker.version_by_alias("champion") is None


def test_get_version_by_alias_missing(store: Path) -> None:
    tracker = registry(store, "reg-g")
    tracker.register(logged_run(tracker), "model", alias=None)
    assert tracker.version_by_alias("champion") is None  # no such alias
    assert registry(store, "no-such-model").version_by_alias("champion") is None  # no such model
    assert get_version_by_alias(tracker.client, "no-such-model", "champion") is None


def test_ensure_registered_model_twice(store: Path) -> None:
    client = registry(store, "reg-h").client
    ensure_registered_model(client, "reg-h")
    ensure_registered_model(client, "reg-h")  # already exists: not an error
    assert client.get_registered_model("reg-h").name == "reg-h"


def test_version_tags(store: Path) -> None:
    tracker = registry(store, "reg-tags")
    version = tracker.register(logged_run(tracker), "model")
    tracker.tag_version(version.version, {"qaflow.promotion.by": "me", "qaflow.promotion.decision": "promote"})
    tagged = tracker.version_by_alias("challenger")
    assert tagged is not None and tagged.tags["qaflow.promotion.by"] == "me"


def test_find_version_for_run_does_not_match_a_nested_artifact_with_the_same_last_name(store: Path) -> None:
    tracker = registry(store, "reg-i")
    run_id = logged_run(tracker, "candidates/model")
    tracker.client.log_text(run_id, "flavors: {}\n", "model/MLmodel")
    nested = tracker.register(run_id, "candidates/model")
    assert tracker.version_of_run(run_id, "model") is None
    top = tracker.register(run_id, "model")
    assert top.version != nested.version


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):  # noqa: ANN001, ANN201 - pyfunc signature
        return model_input


def test_a_half_logged_model_is_never_registered(store: Path) -> None:
    """A process killed while logging leaves a PENDING logged model; MLflow's own runs:/ resolution then fails
    with a KeyError. qaflow registers the run's newest READY logged model and marks the half one FAILED."""
    tracker = registry(store, "reg-killed")
    client = tracker.client
    run_id = tracker.create_run("killed")
    killed = client.create_logged_model(tracker.experiment_id, name="model", source_run_id=run_id)
    assert killed.status == LoggedModelStatus.PENDING
    assert ready_logged_model(client, run_id, "model") is None and not tracker.has_ready_model(run_id, "model")
    assert tracker.fail_unfinished_models(run_id, "model") == 1
    assert client.get_logged_model(killed.model_id).status == LoggedModelStatus.FAILED
    assert fail_unfinished_logged_models(client, run_id, "model") == 0
    tracker.log_pyfunc_model(run_id, "model", python_model=_Echo(), pip_requirements=["mlflow"])
    ready = ready_logged_model(client, run_id, "model")
    assert ready is not None and tracker.has_ready_model(run_id, "model")
    version = tracker.register(run_id, "model")
    assert version.source == f"models:/{ready.model_id}" and version.run_id == run_id
    assert tracker.register(run_id, "model").version == version.version
