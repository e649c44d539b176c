"""The tracking seam (`tasks.tracking.tracker.Tracker`): each tracker is bound to its own store, steps never set
MLflow's process-global tracking URI, and the fluent calls that need it put back whatever was there."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.pyfunc
import pytest

from tasks.core.artifacts import DataSnapshot
from tasks.core.config import TrackingConfig
from tasks.pipeline import run_record
from tasks.pipeline.compare import compare
from tasks.pipeline.evaluation import Evaluation, log_evaluation
from tasks.pipeline.suites import MemberScore, SuiteResult, log_suite
from tasks.tracking import tags as tag
from tasks.tracking.tracker import ModelLoadError, Tracker


class _Constant(mlflow.pyfunc.PythonModel):
    """Answers every row with the store's name: tells which store a model was loaded from."""

    def __init__(self, value: str) -> None:
        self.value = value

    def predict(self, context, model_input):  # noqa: ANN001, ANN201 - pyfunc signature
        return [self.value] * len(model_input)


@pytest.fixture(autouse=True)
def no_global_uri(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no process-global tracking URI (and leaves none behind)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    yield
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two project roots whose sqlite stores exist (creating a schema takes seconds); tests use their own names."""
    roots = tmp_path_factory.mktemp("store-a"), tmp_path_factory.mktemp("store-b")
    for root in roots:
        assert _tracker(root).experiment_id
    mlflow.set_tracking_uri(None)
    return roots


def _tracker(root: Path, model: str = "seam-qa", experiment: str = "seam") -> Tracker:
    return Tracker.from_config(TrackingConfig(experiment_name=experiment, registered_model_name=model), root)


def _no_global_uri() -> bool:
    return not mlflow.is_tracking_uri_set() and "MLFLOW_TRACKING_URI" not in os.environ


def test_two_trackers_on_two_stores_do_not_interfere(stores: tuple[Path, Path]) -> None:
    a, b = _tracker(stores[0]), _tracker(stores[1])  # same experiment and model names, two stores
    run_a = a.create_run("in-a", tags={tag.RUN_KEY: "k"})
    run_b = b.create_run("in-b", tags={tag.RUN_KEY: "k"})
    a.log_metrics(run_a, {"f1": 1.0})
    b.log_metrics(run_b, {"f1": 2.0})
    a.log_pyfunc_model(run_a, "model", python_model=_Constant("a"), pip_requirements=["mlflow"])
    b.log_pyfunc_model(run_b, "model", python_model=_Constant("b"), pip_requirements=["mlflow"])
    version_b = b.register(run_b, "model")
    version_a = a.register(run_a, "model")
    a.set_alias("champion", version_a.version)

    assert (version_a.run_id, version_b.run_id) == (run_a, run_b)
    assert version_a.version == version_b.version == "1"  # each store numbers its own versions
    assert [r.run_id for r in a.search_runs()] == [run_a] and [r.run_id for r in b.search_runs()] == [run_b]
    assert a.find_run("k").metrics == {"f1": 1.0} and b.find_run("k").metrics == {"f1": 2.0}
    assert a.version_by_alias("champion") is not None and b.version_by_alias("champion") is None
    assert list(a.load_pyfunc("models:/seam-qa@challenger").predict([{"x": 1}])) == ["a"]
    assert list(b.load_pyfunc("models:/seam-qa@challenger").predict([{"x": 1}])) == ["b"]
    assert _no_global_uri()


def test_fluent_calls_put_back_a_global_uri_set_by_someone_else(
    stores: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = f"sqlite:///{tmp_path / 'decoy.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", decoy)  # e.g. the user's shell
    tracker = _tracker(stores[0], model="seam-decoy", experiment="decoy")
    run_id = tracker.create_run("model")
    tracker.log_pyfunc_model(run_id, "model", python_model=_Constant("project"), pip_requirements=["mlflow"])
    tracker.register(run_id, "model")
    assert list(tracker.load_pyfunc("models:/seam-decoy/1").predict([{"x": 1}])) == ["project"]
    assert tracker.download_model("models:/seam-decoy/1", tmp_path / "dl").is_dir()
    assert mlflow.get_tracking_uri() == decoy == os.environ["MLFLOW_TRACKING_URI"]
    assert not (tmp_path / "decoy.db").exists()  # nothing ever went to the store the global URI names


def test_steps_set_no_global_tracking_uri(stores: tuple[Path, Path], tmp_path: Path) -> None:
    """Run planning, evaluation and suite runs, a comparison: all in the tracker's store, nothing set globally."""
    tracker = _tracker(stores[1], model="seam-steps", experiment="steps")
    snapshot = DataSnapshot("0123abcd4567", {}, tmp_path / "data")
    plan = run_record.open_run(tracker, "key-1", snapshot, force=False)
    assert plan.action == "new" and tracker.get_run(plan.run_id).tags[tag.RUN_KEY] == "key-1"
    again = run_record.open_run(tracker, "key-1", snapshot, force=False)
    assert (again.action, again.run_id) == ("resume", plan.run_id)
    tracker.log_metrics(plan.run_id, {"f1": 55.0, "exact_match": 40.0, "loss": 1.5})
    assert run_record.logged_scores(tracker, plan.run_id) == {"f1": 55.0, "exact_match": 40.0}
    evaluated = log_evaluation(tracker, Evaluation("models:/seam-qa@champion", "dev.json", "abc", 5, {"f1": 50.0}, {}))
    member = MemberScore("dev", "dev.json", "abc", 5, 1.0, None, {"f1": 60.0, "exact_match": 50.0})
    suite_run = log_suite(tracker, SuiteResult("s", "models:/seam-qa@champion", [member]), scored_run=plan.run_id)
    assert tracker.get_run(evaluated).tags[tag.KIND] == tag.KIND_EVALUATION
    assert tracker.get_run(suite_run).metrics["suite_f1"] == 60.0
    assert tracker.get_run(suite_run).tags[tag.SCORED_RUN] == plan.run_id
    result = compare(tracker, output_dir=tmp_path / "cmp", log=True)
    assert {plan.run_id, evaluated, suite_run} == {r.run_id for r in result.rows}
    assert tracker.get_run(result.mlflow_run_id).tags[tag.KIND] == tag.KIND_COMPARISON
    assert _no_global_uri()


def test_store_is_created_on_first_use_only(tmp_path: Path) -> None:
    tracker = _tracker(tmp_path)
    assert not tracker.store_exists() and not (tmp_path / "mlruns").exists()
    assert tracker.version_by_alias("champion") is None  # first use: the store is created
    assert tracker.store_exists() and (tmp_path / "mlruns" / "mlflow.db").is_file()


def test_a_tracker_pickles_to_its_settings(stores: tuple[Path, Path]) -> None:
    """Prefect hashes task inputs: a tracker copies as its settings, and the copy opens its own client."""
    tracker = _tracker(stores[1])
    experiment = tracker.experiment_id
    copy = pickle.loads(pickle.dumps(tracker))
    assert "client" not in copy.__dict__ and (copy.uri, copy.model_name) == (tracker.uri, tracker.model_name)
    assert copy.experiment_id == experiment and copy.client is not tracker.client


def test_an_unknown_model_is_one_line(stores: tuple[Path, Path]) -> None:
    with pytest.raises(ModelLoadError, match=r"^cannot load models:/never-registered@champion: .*") as info:
        _tracker(stores[0]).load_pyfunc("models:/never-registered@champion")
    assert "\n" not in str(info.value)
    assert _no_global_uri()


def test_bind_process_is_the_one_global(stores: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """`qaflow train --report_to mlflow`: the Trainer's own callback reads MLflow's globals."""
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)  # put back after the test
    tracker = _tracker(stores[0], experiment="bound")
    tracker.bind_process()
    assert mlflow.get_tracking_uri() == tracker.uri == os.environ["MLFLOW_TRACKING_URI"]
    with mlflow.start_run() as run:
        pass
    assert run.info.experiment_id == tracker.experiment_id


def test_benchmark_flow_logs_one_finished_run_per_mode(stores: tuple[Path, Path]) -> None:
    from flows.benchmark import log_mode
    from tasks.core.config import QAFlowConfig
    from tasks.pipeline.benchmark import ModeResult

    tracker = _tracker(stores[1], experiment="benchmark")
    result = ModeResult("compile", {"train_steps_per_second": 3.5}, "x86_64 (2 cores)", {})
    run = tracker.get_run(log_mode.fn(tracker, QAFlowConfig(), result, "cpu"))
    assert (run.name, run.status, run.metrics) == ("benchmark-compile", "FINISHED", {"train_steps_per_second": 3.5})
    assert run.tags[tag.KIND] == tag.KIND_BENCHMARK and run.tags[tag.RUN_MODE] == "compile"
    assert run.tags[tag.BACKEND] == "cpu" and run.tags["mlflow.user"]  # MLflow's context tags, as start_run made
    assert run.params["train.max_steps"] == str(QAFlowConfig().train.max_steps)
    assert _no_global_uri()
