"""MLflow tracking, registry and pyfunc through the `Tracker`, against a real sqlite store under a temp dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from transformers import TrainerCallback

from tasks.core.artifacts import DeviceInfo, TrainResult
from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import QAFlowConfig, TrackingConfig
from tasks.core.data import load_dataset_file
from tasks.core.layout import TrainPaths
from tasks.core.model_spec import ModelSpec
from tasks.families.registry import resolve_family
from tasks.pipeline.featurize import build_train_features
from tasks.pipeline.serving import log_qa_model
from tasks.tracking import provenance, registry
from tasks.tracking import runs as tracking
from tasks.tracking import store as tracking_store
from tasks.tracking import tags as tag
from tasks.tracking.tracker import Tracker
from tasks.train.backends.cpu import CPUBackend
from tasks.train.trainer import run_trainer
from tests.tiny_models import model_with_recipe

REPO = Path(__file__).resolve().parents[1]
SAMPLE_TRAIN = REPO / "data" / "sample" / "squad-v1.1-sample-train.json"
SAMPLE_DEV = REPO / "data" / "sample" / "squad-v1.1-sample-dev.json"
CONTEXT = "The Eiffel Tower was built in 1889 by Gustave Eiffel. It stands in Paris, the capital of France."


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One sqlite store per module (creating the schema takes seconds); tests use their own experiments."""
    root = tmp_path_factory.mktemp("mlflow-root")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert Tracker.from_config(TrackingConfig(experiment_name="setup"), root).experiment_id
        yield root


def experiment(store: Path, name: str, model: str = "qaflow-qa") -> Tracker:
    """A tracker of the module's store with its own experiment (created) and registered model name."""
    tracker = Tracker.from_config(TrackingConfig(experiment_name=name, registered_model_name=model), store)
    assert tracker.experiment_id
    return tracker


# --- pure helpers


def test_flatten_params_dots_and_overflow() -> None:
    cfg = QAFlowConfig().to_dict()
    cfg["data"]["train_file"] = "x" * (MAX_PARAM_VAL_LENGTH + 1)
    cfg["ipu"]["layers_per_ipu"] = [1, 2]
    cfg["extra"] = {"k" * 300: 1, "bad key!": 2}
    params, overflow = tracking.flatten_params(cfg)
    assert params["train.learning_rate"] == "3e-05"
    assert params["data.dataset_name"] == "None"
    assert params["ipu.layers_per_ipu"] == "[1, 2]"
    assert "data.train_file" not in params
    assert overflow["data.train_file"] == "x" * (MAX_PARAM_VAL_LENGTH + 1)
    assert set(overflow) == {"data.train_file", "extra." + "k" * 300, "extra.bad key!"}


def test_sanitize_metric_name() -> None:
    assert tracking.sanitize_metric_name("HasAns_f1") == "HasAns_f1"
    assert tracking.sanitize_metric_name("f1@thr(0.5)") == "f1_thr_0.5_"
    assert tracking.sanitize_metric_name("/eval//f1/") == "eval/f1"
    assert tracking.sanitize_metric_name("..") == "__"


def test_history_entities_steps_and_interval_rate() -> None:
    history = [
        {"loss": 2.0, "learning_rate": 3e-5, "grad_norm": 1.5, "epoch": 0.5, "step": 10, "elapsed_seconds": 5.0},
        {"loss": 1.0, "learning_rate": 1e-5, "epoch": 1.0, "step": 20, "elapsed_seconds": 7.0},
        {"train_runtime": 9.0, "train_loss": 1.5, "step": 20, "note": "text"},
    ]
    by_key: dict[str, list[tuple[int, float]]] = {}
    for m in tracking.history_entities(history):
        by_key.setdefault(m.key, []).append((m.step, m.value))
    assert by_key["loss"] == [(10, 2.0), (20, 1.0)]
    assert by_key["grad_norm"] == [(10, 1.5)]
    assert by_key["train_steps_per_second_interval"] == [(20, 5.0)]  # 10 steps in 2 s
    assert "note" not in by_key and "step" not in by_key


def test_resolve_tracking_uri(tmp_path: Path) -> None:
    assert tracking_store.resolve_tracking_uri("sqlite:///a/b.db", tmp_path) == f"sqlite:///{tmp_path.resolve()}/a/b.db"
    assert tracking_store.resolve_tracking_uri("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    assert tracking_store.resolve_tracking_uri("http://127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"


# --- store


def test_configure_is_idempotent_and_puts_artifacts_under_root(store: Path) -> None:
    first = experiment(store, "idem")
    assert experiment(store, "idem").experiment_id == first.experiment_id
    exp = first.client.get_experiment(first.experiment_id)
    assert exp.artifact_location == (store / "mlruns" / "artifacts").resolve().as_uri()
    assert (store / "mlruns" / "mlflow.db").exists()


def test_configure_concurrent_first_use(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from tasks.core.config import TrackingConfig; "
        "from tasks.tracking.tracker import Tracker; "
        "print(Tracker.from_config(TrackingConfig(experiment_name='race'), Path(sys.argv[1])).experiment_id)"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, env=env, stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[0].decode().strip().splitlines()[-1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1]


def test_log_run_round_trip(store: Path, tmp_path: Path) -> None:
    tracker = experiment(store, "roundtrip")
    cfg = QAFlowConfig().to_dict()
    cfg["data"]["train_file"] = "y" * (MAX_PARAM_VAL_LENGTH + 10)
    cfg["many"] = {f"p{i}": i for i in range(150)}  # more than one log_batch of params
    (tmp_path / "report.json").write_text("{}")
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "a.png").write_bytes(b"png")
    history = [{"loss": 3.0 - i / 1000, "learning_rate": 1e-5, "step": i} for i in range(1, 1201)]
    result = TrainResult(
        model_dir=tmp_path, metrics={"train_runtime": 12.5}, device=DeviceInfo("cpu", "x86 (2 cores)", 1)
    )
    tags = provenance.run_tags(data_version="d" * 8, run_key="key-1", root=REPO)
    with tracker.run("roundtrip") as run_id:
        tracker.log_run(
            run_id,
            params=cfg,
            metrics={"exact_match": 81.5, "f1": 88.25, "HasAns_exact (v2)": 70.0},
            train_result=result,
            log_history=history,
            artifacts=[(tmp_path / "report.json", None), (tmp_path / "plots", "plots")],
            tags=tags,
        )
    client = MlflowClient(tracker.uri)
    assert client.get_run(run_id).info.status == "FINISHED"
    data = client.get_run(run_id).data
    assert data.params["train.learning_rate"] == "3e-05" and data.params["many.p149"] == "149"
    assert "data.train_file" not in data.params
    assert data.metrics["exact_match"] == 81.5 and data.metrics["HasAns_exact _v2_"] == 70.0
    assert data.metrics["train_runtime"] == 12.5
    loss = client.get_metric_history(run_id, "loss")
    assert len(loss) == 1200 and sorted(m.step for m in loss)[:2] == [1, 2]
    assert data.tags["qaflow.run_key"] == "key-1" and data.tags["qaflow.data_version"] == "dddddddd"
    assert data.tags["qaflow.backend"] == "cpu" and data.tags["qaflow.device"] == "x86 (2 cores)"
    files = {a.path for a in client.list_artifacts(run_id)}
    assert {"report.json", "plots", "environment", tracking.OVERFLOW_ARTIFACT} <= files
    assert [a.path for a in client.list_artifacts(run_id, "plots")] == ["plots/a.png"]
    assert tracker.has_artifact(run_id, "plots/a.png") and not tracker.has_artifact(run_id, "plots/b.png")
    local = Path(client.download_artifacts(run_id, "", str(tmp_path / "dl")))
    overflow = json.loads((local / tracking.OVERFLOW_ARTIFACT).read_text())
    assert overflow["data.train_file"].startswith("yyy")
    env = json.loads((local / "environment" / "environment.json").read_text())
    assert env["torch"] and env["transformers"] and env["cpu_count"] >= 1 and env["device"] == "x86 (2 cores)"
    assert "torch==" in (local / "environment" / "requirements.txt").read_text()


def test_a_failing_block_fails_its_run(store: Path) -> None:
    tracker = experiment(store, "failing")
    with pytest.raises(ValueError, match="boom"), tracker.run("fails") as run_id:
        raise ValueError("boom")
    assert tracker.get_run(run_id).status == "FAILED"
    with tracker.resumed(run_id):
        assert tracker.get_run(run_id).status == "RUNNING"
    assert tracker.get_run(run_id).status == "FINISHED"


def test_find_run_by_key(store: Path) -> None:
    tracker = experiment(store, "keys")
    ids = {key: tracker.create_run(f"run-{key}", tags={tag.RUN_KEY: key}) for key in ("a", "it's")}
    assert tracker.find_run("a").run_id == ids["a"]
    assert tracker.find_run("it's").run_id == ids["it's"] and tracker.find_run("it's").name == "run-it's"
    assert tracker.find_run("missing") is None


# --- model: pyfunc + registry


@pytest.fixture(scope="module")
def logged_model(store: Path, tiny_bert_dir: Path) -> tuple[Tracker, str]:
    """(tracker, run_id) of the tiny model logged as a pyfunc and registered (`tiny-qa`) as `challenger`."""
    tracker = experiment(store, "models", model="tiny-qa")
    run_id = tracker.create_run("models")
    served = model_with_recipe(tiny_bert_dir, store / "served", max_seq_length=64, doc_stride=16)
    log_qa_model(tracker, run_id, served)
    tracker.register(run_id, "model", run_key="rk")
    return tracker, run_id


def _check_answers(out: pd.DataFrame, contexts: list[str]) -> None:
    assert list(out.columns) == ["id", "answer", "score", "start", "end"]
    for (_, row), context in zip(out.iterrows(), contexts, strict=True):
        assert row["answer"] == context[row["start"] : row["end"]] and row["answer"]
        assert 0.0 < row["score"] <= 1.0


def test_pyfunc_answers_from_run(logged_model: tuple[Tracker, str], tmp_path: Path) -> None:
    tracker, run_id = logged_model
    model = tracker.load_pyfunc(f"runs:/{run_id}/model")
    long_context = " ".join([CONTEXT] * 6)  # several windows at max_seq_length 64
    frame = pd.DataFrame(
        [
            {"question": "When was the tower built?", "context": CONTEXT, "id": "q1"},
            {"question": "Where does it stand?", "context": long_context, "id": "q2"},
        ]
    )
    out = model.predict(frame)
    assert list(out["id"]) == ["q1", "q2"]
    _check_answers(out, [CONTEXT, long_context])
    local = tracker.download_model(f"runs:/{run_id}/model", tmp_path / "dl")
    assert (local / "code" / "tasks" / "pipeline" / "serving.py").exists()  # servable without qaflow installed
    (recipe_file,) = (local / "artifacts").glob("*/inference_recipe.json")  # the model dir travels with its recipe
    recipe = json.loads(recipe_file.read_text())
    assert recipe["windows"]["max_seq_length"] == 64 and recipe["family"] == "extractive"


def test_register_is_idempotent_and_alias_loads(logged_model: tuple[Tracker, str]) -> None:
    tracker, run_id = logged_model
    again = tracker.register(run_id, "model")
    versions = tracker.client.search_model_versions("name = 'tiny-qa'")
    assert len(versions) == 1 and again.version == str(versions[0].version)
    assert again.tags[tag.RUN_KEY] == "rk" and again.run_id == run_id and "challenger" in again.aliases
    assert tracker.version_by_alias("challenger").version == again.version
    assert tracker.version_by_alias("champion") is None
    assert registry.get_version_by_alias(tracker.client, "no-such-model", "champion") is None
    tracker.set_alias("champion", again.version)
    assert tracker.version_by_alias("champion").run_id == run_id
    model = tracker.load_pyfunc("models:/tiny-qa@challenger")
    _check_answers(model.predict([{"question": "Who built it?", "context": CONTEXT}]), [CONTEXT])


# --- live tracking while training


def test_live_metrics_and_system_metrics_are_readable_while_training(
    store: Path, tiny_bert_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second client reads loss / learning rate (at their real steps) and system metrics mid-training."""
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    tracker = experiment(store, "live")
    run_id = tracker.create_run("live")
    cfg = QAFlowConfig()
    cfg.model.model_name_or_path = str(tiny_bert_dir)
    cfg.features.max_seq_length, cfg.features.doc_stride = 96, 32
    cfg.train.max_steps, cfg.train.per_device_train_batch_size, cfg.train.save_steps = 8, 4, 100
    cfg.train.logging_steps, cfg.train.bf16 = 2, False
    family = resolve_family("auto", tiny_bert_dir)
    examples = load_dataset_file(SAMPLE_TRAIN, max_samples=16).examples
    features = build_train_features(cfg, family, examples, load_tokenizer(str(tiny_bert_dir)))
    seen: dict[str, object] = {}

    class MidTrainingReader(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            if state.global_step != 5:
                return
            reader = MlflowClient(tracker.uri)  # what `mlflow ui` would show now
            deadline = time.monotonic() + 20
            while not any(k.startswith("system/") for k in reader.get_run(run_id).data.metrics):
                assert time.monotonic() < deadline, "no system metrics after 20 s"
                time.sleep(0.1)
            seen["loss"] = [(m.step, m.timestamp) for m in reader.get_metric_history(run_id, "loss")]
            seen["lr_steps"] = [m.step for m in reader.get_metric_history(run_id, "learning_rate")]
            seen["metrics"] = set(reader.get_run(run_id).data.metrics)
            seen["at"] = time.time() * 1000

    started = time.time() * 1000
    live_cb = tracker.live_metrics(run_id)
    with tracker.system_metrics(run_id):
        result = run_trainer(
            family, ModelSpec.from_config(cfg), cfg.train, features, backend=CPUBackend(),
            paths=TrainPaths(tmp_path / "train"), dynamic_padding=True, callbacks=[live_cb, MidTrainingReader()],
        )  # fmt: skip
    assert [step for step, _ in seen["loss"]] == [1, 2, 4]  # logging_first_step, then every 2 steps
    assert seen["lr_steps"] == [1, 2, 4]
    assert all(started <= ts <= seen["at"] for _, ts in seen["loss"])  # logged as it happened
    assert {"grad_norm", "elapsed_seconds", "train_steps_per_second_interval"} <= seen["metrics"]
    assert "system/cpu_utilization_percentage" in seen["metrics"] and "train_runtime" not in seen["metrics"]
    assert live_cb.logged_steps == [1, 2, 4, 6, 8, 8]  # the last entry: train_runtime, train_loss, ...

    client = MlflowClient(tracker.uri)
    assert client.get_run(run_id).data.metrics["train_runtime"] == pytest.approx(result.metrics["train_runtime"])
    with tracker.resumed(run_id):  # the history logged again after training adds nothing twice
        tracker.log_run(run_id, train_result=result, environment=False)
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 4, 6, 8]
    assert [step for step, _ in tracker.metric_history(run_id, "loss")] == [1, 2, 4, 6, 8]


def test_git_tags_and_data_inputs(store: Path, tmp_path: Path) -> None:
    tracker = experiment(store, "inputs")
    assert provenance.git_tags(tmp_path) == {}  # not a repository
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    (tmp_path / "a.txt").write_text("a")
    for argv in (["init", "-q", "-b", "exp-branch"], ["add", "-A"], ["commit", "-qm", "one"]):
        subprocess.run([*git, *argv], cwd=tmp_path, check=True, capture_output=True)
    tags = provenance.git_tags(tmp_path)
    commit = provenance.git_commit(tmp_path)
    assert tags == {tag.GIT_COMMIT: commit, tag.GIT_BRANCH: "exp-branch", tag.GIT_DIRTY: "false"}
    (tmp_path / "untracked.txt").write_text("not part of the code")
    assert provenance.git_tags(tmp_path)[tag.GIT_DIRTY] == "false"
    (tmp_path / "a.txt").write_text("changed")
    assert provenance.git_tags(tmp_path)[tag.GIT_DIRTY] == "true"
    run_id = tracker.create_run("inputs")
    for _ in range(2):  # logged again on resume: still one input per split
        tracker.log_data_inputs(run_id, "0123abcd4567", {"training": SAMPLE_TRAIN, "evaluation": SAMPLE_DEV})
    inputs = tracker.client.get_run(run_id).inputs.dataset_inputs
    by_context = {i.tags[0].value: i.dataset for i in inputs}
    assert set(by_context) == {"training", "evaluation"} and len(inputs) == 2
    assert {d.digest for d in by_context.values()} == {"0123abcd4567"}
    assert by_context["training"].name == f"{SAMPLE_TRAIN.stem}@0123abcd4567"
