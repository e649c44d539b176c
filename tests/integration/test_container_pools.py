"""`deploy/prefect-containers.yaml` through the real `prefect deploy` against a real `prefect server`.

The Docker and Kubernetes work pools are created with their real templates (prefect-docker's default, and
`deploy/work-pools/kubernetes.json`, which the server validates). `prefect --no-prompt deploy --all --prefect-file`
then runs on a copy of the file whose build and push steps are `offline_build` / `offline_push` below: they bind
their arguments to prefect-docker's own step signatures and return what those steps return, without a Docker daemon.
Everything after them is Prefect's: templating `{{ build-image.image }}`, schedules, work queues, pull steps, and
the server's check of the job variables against each pool's schema (which a bad GPU count fails).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.servers import prefect_server

pytestmark = pytest.mark.slow
TAG = "offline-tag"
STEPS = "prefect_docker.deployments.steps."


def offline_build(**kwargs: Any) -> dict[str, str]:
    """build_docker_image's arguments and result, without building: the Dockerfile must exist."""
    from prefect_docker.deployments.steps import build_docker_image

    inspect.signature(build_docker_image).bind(**kwargs)
    assert (Path.cwd() / kwargs.get("dockerfile", "Dockerfile")).is_file()
    image_name = kwargs["image_name"]
    return {"image_name": image_name, "tag": TAG, "image": f"{image_name}:{TAG}", "image_id": "sha256:offline"}


def offline_push(**kwargs: Any) -> dict[str, str]:
    """push_docker_image's arguments and result, without pushing."""
    from prefect_docker.deployments.steps import push_docker_image

    inspect.signature(push_docker_image).bind(**kwargs)
    return {
        "image_name": kwargs["image_name"],
        "tag": kwargs["tag"],
        "image": f"{kwargs['image_name']}:{kwargs['tag']}",
    }


def offline_copy(source: Path, target: Path) -> Path:
    """The file with prefect-docker's build/push steps swapped for the offline ones (anchors expanded)."""
    raw = yaml.safe_load(source.read_text())
    for dep in raw["deployments"]:
        for action, fake in (("build", "offline_build"), ("push", "offline_push")):
            swapped = []
            for step in dep[action]:
                ((fqn, shared),) = step.items()
                inputs = dict(shared)  # YAML aliases share one dict between deployments
                assert fqn.startswith(STEPS) and inputs.pop("requires") == "prefect-docker==0.7.4"
                swapped.append({f"tests.integration.test_container_pools.{fake}": inputs})
            dep[action] = swapped
    target.write_text(yaml.safe_dump(raw, sort_keys=False))
    return target


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    base = tmp_path_factory.mktemp("prefect")
    (base / "home").mkdir()
    with prefect_server(base / "home") as url, temporary_settings({PREFECT_API_URL: url}):
        yield {"PREFECT_API_URL": url}


def create_pools() -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect_docker.worker import DockerWorker

    kubernetes = json.loads((REPO_ROOT / "deploy/work-pools/kubernetes.json").read_text())
    with get_client(sync_client=True) as client:
        for name in ("qaflow-docker", "qaflow-docker-gpu"):
            template = DockerWorker.get_default_base_job_template()
            client.create_work_pool(WorkPoolCreate(name=name, type="docker", base_job_template=template))
        client.create_work_pool(WorkPoolCreate(name="qaflow-k8s", type="kubernetes", base_job_template=kubernetes))


def test_prefect_deploy_registers_the_container_deployments(api: dict[str, str], tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    create_pools()
    prefect_file = offline_copy(REPO_ROOT / "deploy/prefect-containers.yaml", tmp_path / "containers.yaml")
    env = {**os.environ, **api, "PREFECT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO_ROOT),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # fmt: skip
    out = subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file",
         str(prefect_file)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]

    with get_client(sync_client=True) as client:
        deps = {d.name: d for d in client.read_deployments() if d.name.startswith("retrain-")}
        assert sorted(deps) == ["retrain-docker-cpu", "retrain-docker-gpu", "retrain-k8s-cpu", "retrain-k8s-gpu"]
        for name, dep in deps.items():
            flavour = "cuda" if name.endswith("gpu") else "cpu"
            assert dep.job_variables["image"] == f"localhost:5000/qaflow-{flavour}:{TAG}"
            assert dep.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/qaflow"}}]
            assert dep.parameters["overrides"]["backend"] == flavour
            (schedule,) = dep.schedules
            assert schedule.schedule.cron == "0 3 * * 1" and schedule.active is False
        gpu = deps["retrain-k8s-gpu"]
        assert (gpu.work_pool_name, gpu.work_queue_name, gpu.job_variables["gpu_count"]) == ("qaflow-k8s", "gpu", 1)
        assert deps["retrain-docker-gpu"].job_variables["container_create_kwargs"]["device_requests"] == [
            {"count": -1, "capabilities": [["gpu"]]}
        ]
        # the server checks job variables against the pool's schema: a GPU count as text is refused
        bad = {**gpu.job_variables, "gpu_count": "one"}
        with pytest.raises(PrefectHTTPStatusError, match="gpu_count"):
            client.create_deployment(flow_id=gpu.flow_id, name="bad-gpu", work_pool_name="qaflow-k8s",
                                     entrypoint=gpu.entrypoint, job_variables=bad)  # fmt: skip
