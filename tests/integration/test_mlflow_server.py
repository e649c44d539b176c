"""A real `mlflow server` (sqlite + proxied artifacts, `tests/servers.py`) and `mlflow models serve`, all on 127.0.0.1.

Logs a run and the tiny QA model over HTTP, reads them back, serves `models:/<name>@challenger` and asks it a
question through `/invocations`. Servers are started in their own process groups and always stopped.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tasks.core.config import TrackingConfig
from tasks.pipeline.serving import log_qa_model
from tasks.tracking import provenance
from tasks.tracking import runs as tracking
from tasks.tracking.tracker import Tracker
from tests.servers import free_port, mlflow_env, mlflow_server, stop_group, wait_http
from tests.tiny_models import model_with_recipe

STARTUP_TIMEOUT_S = 120
CONTEXT = "The Eiffel Tower was built in 1889 by Gustave Eiffel. It stands in Paris, the capital of France."
MODEL_NAME = "tiny-qa-served"


@pytest.fixture(scope="module")
def tracking_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL, artifacts directory) of a running tracking server with a sqlite backend."""
    root = tmp_path_factory.mktemp("mlflow-server")
    artifacts = root / "artifacts"
    with mlflow_server(root, f"sqlite:///{root / 'mlflow.db'}", artifacts, timeout=STARTUP_TIMEOUT_S) as url:
        yield url, artifacts


@pytest.fixture
def served_uri(tracking_server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url, _ = tracking_server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    yield url
    mlflow.set_tracking_uri(None)


def test_log_register_and_serve_over_http(
    served_uri: str, tracking_server: tuple[str, Path], tiny_bert_dir: Path, tmp_path: Path
) -> None:
    _, artifact_dir = tracking_server
    tracker = Tracker.from_config(
        TrackingConfig(tracking_uri=served_uri, experiment_name="server", registered_model_name=MODEL_NAME), tmp_path
    )
    (tmp_path / "report.json").write_text('{"ok": true}')
    history = [{"loss": 2.0, "step": 5}, {"loss": 1.0, "step": 10}]
    with tracker.run("server") as run_id:
        tracker.log_run(
            run_id,
            params={"train": {"learning_rate": 3e-5}, "data": {"long": "z" * 7000}},
            metrics={"exact_match": 50.0, "f1": 60.0},
            log_history=history,
            artifacts=[(tmp_path / "report.json", "reports")],
            tags=provenance.run_tags(data_version="v1", run_key="server-key"),
            environment=False,
        )
        served = model_with_recipe(tiny_bert_dir, tmp_path / "served", max_seq_length=64, doc_stride=16)
        log_qa_model(tracker, run_id, served)
    tracker.register(run_id, "model", run_key="server-key")

    client = MlflowClient(served_uri)
    data = client.get_run(run_id).data
    assert data.params["train.learning_rate"] == "3e-05" and data.metrics["f1"] == 60.0
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [5, 10]
    assert {a.path for a in client.list_artifacts(run_id)} >= {"reports", tracking.OVERFLOW_ARTIFACT}
    assert list(artifact_dir.rglob("report.json")), "artifacts were not proxied to --artifacts-destination"
    assert tracker.find_run("server-key").run_id == run_id
    version = tracker.version_by_alias("challenger")
    assert version is not None and version.run_id == run_id
    assert tracker.register(run_id, "model").version == version.version

    answer = _serve_and_ask(served_uri, tmp_path)
    assert answer["answer"] and CONTEXT[answer["start"] : answer["end"]] == answer["answer"]
    assert 0.0 < answer["score"] <= 1.0


def _serve_and_ask(tracking_uri: str, workdir: Path) -> dict:
    """`mlflow models serve` the challenger (cwd outside the repo: code comes from code_paths) and query it."""
    port = free_port()
    env = {**mlflow_env(), "MLFLOW_TRACKING_URI": tracking_uri}
    cmd = [
        sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL_NAME}@challenger",
        "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1",
    ]  # fmt: skip
    log = workdir / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", STARTUP_TIMEOUT_S, proc, log)
        body = {"dataframe_records": [{"question": "When was the tower built?", "context": CONTEXT}]}
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as resp:
            predictions = json.loads(resp.read())["predictions"]
    finally:
        stop_group(proc, timeout=15)
    assert len(predictions) == 1
    return predictions[0]
