"""Scheduled retraining for real: a local `prefect server`, the retrain deployment served by a subprocess.

Covers: `prefect.yaml` (`prefect deploy --all`) and `qaflow deploy --pool` register cron-scheduled deployments in
process work pools; `qaflow deploy --serve` registers the schedule and executes a triggered run to COMPLETED
(trains and registers); a second run with nothing changed completes with action "skip"; after promotion the
champion skip rule (`champion_unchanged`) names the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.integration.test_retrain_flow import env_for, make_repo
from tests.servers import prefect_server, stop_group

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:_NoneStep.value:DeprecationWarning")]
CRON = "0 3 * * 1"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A real Prefect API; this process talks to it (and reads persisted results) through temporary settings."""
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    base = tmp_path_factory.mktemp("prefect")
    (base / "home").mkdir()
    storage = base / "results"
    with prefect_server(base / "home") as url, temporary_settings(
        {PREFECT_API_URL: url, PREFECT_LOCAL_STORAGE_PATH: str(storage)}
    ):  # fmt: skip
        yield {"PREFECT_API_URL": url, "PREFECT_LOCAL_STORAGE_PATH": str(storage)}


def _deployment(name: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name)


def test_prefect_yaml_and_pool_deployment(api: dict[str, str], tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    from flows.deploy import deploy_retrain, ensure_work_pool

    for pool in ("qaflow-cpu", "qaflow-gpu", "qaflow-ipu"):
        ensure_work_pool(pool)
    assert ensure_work_pool("qaflow-cpu") is False  # idempotent
    env = {**os.environ, **api, "PREFECT_HOME": str(tmp_path / "home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    out = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    for pool, backend, cron in (("cpu", "cpu", "0 3 * * 1"), ("gpu", "cuda", "0 4 * * 1"), ("ipu", "ipu", "0 5 * * 1")):
        dep = _deployment(f"retrain/retrain-{pool}")
        assert dep.work_pool_name == f"qaflow-{pool}" and dep.entrypoint == "flows/retrain.py:retrain"
        limit = {"device_concurrency_limit": "qaflow-gpu"} if pool == "gpu" else {}
        assert dep.parameters["overrides"] == {"backend": backend, **limit}
        (schedule,) = dep.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (cron, "UTC", True)
        assert dep.pull_steps[0]["prefect.deployments.steps.set_working_directory"]["directory"] == str(REPO_ROOT)

    project = tmp_path / "project"
    project.mkdir()
    deploy_retrain(pool="gpu", cron="30 2 * * 0", root=project, name="retrain-gpu-python")
    dep = _deployment("retrain/retrain-gpu-python")
    assert dep.work_pool_name == "qaflow-gpu" and dep.schedules[0].schedule.cron == "30 2 * * 0"
    overrides = {"backend": "cuda", "device_concurrency_limit": "qaflow-gpu"}
    assert dep.parameters == {"params_path": "params.yaml", "overrides": overrides, "root": str(project)}
    assert dep.job_variables["env"]["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] == "true"
    with get_client(sync_client=True) as client:  # the gpu pool's device limit, made by the deploy: 1 slot
        assert client.read_global_concurrency_limit_by_name("qaflow-gpu").limit == 1


def test_served_schedule_runs_then_skips(api: dict[str, str], tmp_path: Path, tiny_bert_dir: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.deployments import run_deployment

    project = make_repo(tmp_path / "project", tiny_bert_dir)
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "deploy", "--serve", "--pool", "cpu", "--cron", CRON,
         "--name", "retrain-served", "--root", str(project)],
        cwd=REPO_ROOT, env={**env_for(project), **api}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                dep = _deployment("retrain/retrain-served")
                break
            except Exception:
                assert time.monotonic() < deadline, "the served deployment never appeared"
                time.sleep(1)
        (schedule,) = dep.schedules
        assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (CRON, "UTC", True)
        assert dep.parameters["overrides"] == {"backend": "cpu"} and dep.parameters["root"] == str(project)

        first = run_deployment("retrain/retrain-served", timeout=900, poll_interval=2)
        assert first.state.is_completed(), (tmp_path / "serve.log").read_text()[-4000:]
        s1 = first.state.result()
        assert s1["action"] == "new" and s1["version"] == "1" and "f1" in s1["metrics"]

        second = run_deployment("retrain/retrain-served", timeout=600, poll_interval=2)
        assert second.state.is_completed(), (tmp_path / "serve.log").read_text()[-4000:]
        s2 = second.state.result()
        assert s2["action"] == "skip" and s2["run_id"] == s1["run_id"] and s2["data_version"] == s1["data_version"]
        deadline = time.monotonic() + 30
        with get_client(sync_client=True) as client:
            while True:  # logs are shipped in batches: give the last one a moment
                logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[second.id])))
                if any("retrain skipped" in entry.message for entry in logs) or time.monotonic() > deadline:
                    break
                time.sleep(1)
        assert any("retrain skipped: data version and parameters unchanged" in e.message for e in logs)
    finally:
        stop_group(server, timeout=30)
        log.close()

    from tasks.core.config import load_config
    from tasks.pipeline.promote import champion_unchanged, promote
    from tasks.pipeline.runplan import run_key
    from tasks.tracking.tracker import Tracker

    cfg = load_config(project / "params.yaml", {"backend": "cpu"})
    tracker, version = Tracker.from_config(cfg.tracking, project), s1["data_version"]
    assert champion_unchanged(tracker, version, run_key(cfg, version)) is None  # a challenger only, no champion yet
    assert promote(tracker, cfg, project).action == "first-champion"
    reason = champion_unchanged(tracker, version, run_key(cfg, version))
    assert reason and version in reason and s1["run_key"] in reason
    changed = load_config(project / "params.yaml", {"learning_rate": 5e-4})
    assert champion_unchanged(tracker, version, run_key(changed, version)) is None
