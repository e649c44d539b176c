"""IPU backend: config translation, the environment check and the worker launch, for real, without an IPU."""

from __future__ import annotations

import ast
import json
import os
import py_compile
import sys
from pathlib import Path

import pytest

from tasks.core.config import QAFlowConfig
from tasks.train.ipu import (
    JOB_SPEC_NAME,
    WORKER_PATH,
    IPUJob,
    IPUJobError,
    IPUUnavailableError,
    IPUWorkerEnvironmentError,
    _report_from_probe,
    build_ipu_job,
    check_ipu_environment,
    device_allocation,
    global_batch_size,
    ipu_config_overrides,
    ipu_result,
    ipu_training_arguments,
    run_ipu_job,
)
from tasks.train.resources import BackendUnavailableError

REPO = Path(__file__).resolve().parents[1]
SAMPLE_TRAIN = REPO / "data" / "sample" / "squad-v1.1-sample-train.json"


def make_cfg(**ipu: object) -> QAFlowConfig:
    cfg = QAFlowConfig()
    for key, value in ipu.items():
        setattr(cfg.ipu, key, value)
    return cfg


@pytest.mark.parametrize(("pod", "replicas"), [("pod4", 1), ("pod8", 2), ("pod16", 4), ("POD32", 8), ("pod64", 16)])
def test_pod_type_to_replication(pod: str, replicas: int, tmp_path: Path) -> None:
    cfg = make_cfg(pod_type=pod, micro_batch_size=2, ipu_gradient_accumulation_steps=16)
    overrides = ipu_config_overrides(cfg, cache_dir=tmp_path / "exe")
    assert overrides == {
        "replication_factor": replicas,
        "gradient_accumulation_steps": 16,
        "executable_cache_dir": str(tmp_path / "exe"),
    }
    alloc = device_allocation(cfg)
    assert (alloc.ipus_per_replica, alloc.replication_factor, alloc.total_ipus) == (4, replicas, 4 * replicas)
    assert global_batch_size(cfg) == 2 * 16 * replicas


def test_layers_per_ipu_sets_the_pipeline_and_the_replicas() -> None:
    cfg = make_cfg(pod_type="pod16", layers_per_ipu=[3, 3], micro_batch_size=4, ipu_gradient_accumulation_steps=8)
    overrides = ipu_config_overrides(cfg)
    assert overrides["layers_per_ipu"] == [3, 3] and overrides["ipus_per_replica"] == 2
    assert overrides["replication_factor"] == 8  # a 2-IPU pipeline fills a Pod16 with 8 replicas
    assert Path(overrides["executable_cache_dir"]).is_absolute()
    assert device_allocation(cfg).total_ipus == 16
    assert global_batch_size(cfg) == 4 * 8 * 8
    with pytest.raises(ValueError, match="8 IPUs; pod4 has 4"):
        device_allocation(make_cfg(pod_type="pod4", layers_per_ipu=[1] * 8))
    with pytest.raises(ValueError, match=">= -1"):
        device_allocation(make_cfg(layers_per_ipu=[2, -3]))


@pytest.mark.parametrize("pod", ["pod5", "gpu", "", "pod 16"])
def test_invalid_pod_type(pod: str) -> None:
    with pytest.raises(ValueError, match=r"unknown ipu.pod_type .*pod4, pod8, pod16, pod32, pod64"):
        ipu_config_overrides(make_cfg(pod_type=pod))
    with pytest.raises(ValueError, match="unknown ipu.pod_type"):
        global_batch_size(make_cfg(pod_type=pod))


def test_training_arguments(tmp_path: Path) -> None:
    cfg = make_cfg(micro_batch_size=3, ipu_gradient_accumulation_steps=32, loss_scaling=512.0)
    cfg.train.fp16 = True
    args = ipu_training_arguments(cfg, tmp_path)
    assert args["per_device_train_batch_size"] == 3 and args["gradient_accumulation_steps"] == 32
    assert args["loss_scaling"] == 512.0 and args["fp32"] is False and args["dataloader_drop_last"] is True
    assert args["output_dir"] == str(tmp_path.resolve())
    assert "loss_scaling" not in ipu_training_arguments(make_cfg(), tmp_path)
    assert ipu_training_arguments(make_cfg(), tmp_path)["fp32"] is True
    bf16 = make_cfg()
    bf16.train.bf16 = True
    with pytest.raises(ValueError, match="bfloat16"):
        ipu_training_arguments(bf16, tmp_path)


def test_check_environment_without_poptorch_names_it() -> None:
    # the main venv's interpreter: a real Python without poptorch or optimum-graphcore
    with pytest.raises(IPUUnavailableError) as info:
        check_ipu_environment(sys.executable)
    message = str(info.value)
    assert "poptorch is not installed" in message and "optimum-graphcore is not installed" in message
    assert "requirements-ipu.txt" in message and "source <sdk>/enable" in message
    assert isinstance(info.value, BackendUnavailableError)


def test_check_environment_missing_interpreter_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "bin" / "python"
    with pytest.raises(IPUUnavailableError, match=f"interpreter not found: {missing}"):
        check_ipu_environment(str(missing))
    with pytest.raises(IPUUnavailableError, match="python -m venv .venv-ipu"):
        check_ipu_environment(str(missing))


def test_check_environment_broken_interpreter(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'libpoplar.so: cannot open shared object file' >&2\nexit 7\n")
    fake.chmod(0o755)
    with pytest.raises(IPUUnavailableError, match=r"(?s)exit 7.*libpoplar"):
        check_ipu_environment(str(fake))


def test_probe_report_interpretation() -> None:
    ok = {
        "python_version": "3.8.10", "poptorch": "3.3.0+1403", "optimum_graphcore": "0.7.1",
        "transformers": "4.29.2", "num_ipus": 16, "sdk_enabled": True, "missing": [], "broken": {},
    }  # fmt: skip
    report = _report_from_probe("/ipu/python", ok, require_hardware=True)
    assert (report.poptorch_version, report.num_ipus, report.warnings) == ("3.3.0+1403", 16, [])
    with pytest.raises(IPUUnavailableError, match="sees no IPU"):
        _report_from_probe("/ipu/python", {**ok, "num_ipus": 0}, require_hardware=True)
    assert _report_from_probe("/ipu/python", {**ok, "num_ipus": 0}, require_hardware=False).num_ipus == 0
    broken = {**ok, "broken": {"poptorch": "OSError: libpoplar.so"}}
    with pytest.raises(IPUUnavailableError, match="poptorch is installed but cannot be imported"):
        _report_from_probe("/ipu/python", broken, require_hardware=True)
    old = _report_from_probe("/ipu/python", {**ok, "transformers": "4.30.0"}, require_hardware=True)
    assert any("4.29.2" in w for w in old.warnings)


def _job(tmp_path: Path, **train: object) -> IPUJob:
    cfg = make_cfg(ipu_python=sys.executable, pod_type="pod16")
    cfg.data.max_train_samples = 12
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return build_ipu_job(cfg, SAMPLE_TRAIN, SAMPLE_TRAIN, tmp_path / "run")


def test_build_job_writes_the_spec_atomically(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / JOB_SPEC_NAME).write_text("stale")
    stale_inode = (out / JOB_SPEC_NAME).stat().st_ino
    job = _job(tmp_path, max_steps=5)
    assert job.spec_path == out / JOB_SPEC_NAME
    assert job.spec_path.stat().st_ino != stale_inode  # replaced by a rename, not rewritten in place
    assert not [p.name for p in out.rglob("*.tmp")]
    spec = json.loads(job.spec_path.read_text(encoding="utf-8"))
    assert spec == job.spec
    assert spec["ipu_config_overrides"]["replication_factor"] == 4
    assert spec["training_args"]["max_steps"] == 5 and spec["pod_ipus"] == 16
    assert spec["train_examples"] == 12 and Path(spec["model_name_or_path"]).is_dir()  # "minilm" resolved
    exported = json.loads(Path(spec["train_file"]).read_text(encoding="utf-8"))
    assert sum(len(p["qas"]) for a in exported["data"] for p in a["paragraphs"]) == 12
    assert Path(spec["eval_file"]).is_file()
    assert job.argv == [sys.executable, str(WORKER_PATH), str(job.spec_path)]


def test_run_job_without_poptorch_surfaces_exit_3(tmp_path: Path) -> None:
    job = _job(tmp_path)
    lines: list[str] = []
    with pytest.raises(IPUWorkerEnvironmentError) as info:
        run_ipu_job(job, echo=lines.append)
    err = info.value
    assert err.returncode == 3
    assert "exit code 3: poptorch missing" in str(err)
    assert "No module named 'poptorch'" in err.log_tail
    assert isinstance(err, IPUUnavailableError) and isinstance(err, IPUJobError)
    log_text = job.log_path.read_text(encoding="utf-8")
    assert log_text.count("\n") == 1 and log_text.startswith("qaflow-ipu-worker: poptorch missing")
    assert lines == [log_text.rstrip("\n")]


def _script_job(tmp_path: Path, code: str) -> IPUJob:
    script = tmp_path / "fake_worker.py"
    script.write_text(code)
    return IPUJob([sys.executable, str(script)], tmp_path / "spec.json", tmp_path / "w.log", tmp_path, {})


def test_run_job_streams_the_log_and_parses_the_final_metrics(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "print('compiling graph', flush=True)\n"
        "print('{not json', flush=True)\n"
        "print('warning on stderr', file=sys.stderr, flush=True)\n"
        "print(json.dumps({'train_runtime': 12.5, 'train_samples_per_second': 80.0,"
        " 'global_batch_size': 128, 'replication_factor': 4, 'ipus': 16, 'model_dir': '/m'}))\n"
    )
    job = _script_job(tmp_path, code)
    metrics = run_ipu_job(job)
    assert metrics["train_runtime"] == 12.5 and metrics["ipus"] == 16
    log_text = job.log_path.read_text(encoding="utf-8")
    assert "compiling graph" in log_text and "warning on stderr" in log_text
    result = ipu_result(make_cfg(pod_type="pod16"), metrics, tmp_path)
    assert result.device.backend == "ipu" and result.device.device_count == 16 and result.device.world_size == 4
    assert result.metrics["global_batch_size"] == 128.0 and "model_dir" not in result.metrics
    assert result.model_dir == Path("/m")


def test_run_job_failures(tmp_path: Path) -> None:
    job = _script_job(tmp_path, "import sys\nprint('step 1')\nprint('poplar error: OOM', flush=True)\nsys.exit(7)\n")
    with pytest.raises(IPUJobError, match=r"(?s)exit code 7.*poplar error: OOM") as info:
        run_ipu_job(job)
    assert info.value.returncode == 7 and not isinstance(info.value, IPUUnavailableError)
    silent = _script_job(tmp_path, "print('done')\n")
    with pytest.raises(IPUJobError, match="no final metrics line"):
        run_ipu_job(silent)
    slow = _script_job(tmp_path, "import time\nprint('compiling', flush=True)\ntime.sleep(30)\n")
    with pytest.raises(IPUJobError, match=r"(?s)timed out.*compiling"):
        run_ipu_job(slow, timeout=1.0)


def test_worker_compiles_and_stays_python38_compatible(tmp_path: Path) -> None:
    py_compile.compile(str(WORKER_PATH), cfile=str(tmp_path / "w.pyc"), doraise=True)
    source = WORKER_PATH.read_text(encoding="utf-8")
    ast.parse(source, feature_version=(3, 8))
    tree = ast.parse(source)
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert "tasks" not in imported and "flows" not in imported  # self-contained: no qaflow imports
    assert imported <= set(sys.stdlib_module_names) | {"poptorch", "torch", "optimum", "transformers"}


def test_worker_exits_3_without_poptorch(tmp_path: Path) -> None:
    import subprocess

    proc = subprocess.run(
        [sys.executable, str(WORKER_PATH), str(tmp_path / "job.json")],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": ""},
    )  # fmt: skip
    assert proc.returncode == 3
    assert proc.stdout == "" and proc.stderr.count("\n") == 1 and "poptorch missing" in proc.stderr


def _load_worker_with_sdk_stand_ins(monkeypatch: pytest.MonkeyPatch):
    """Import the worker here: only the IPU-only modules (poptorch, optimum.graphcore) are stand-ins."""
    import importlib.util
    import types

    optimum = types.ModuleType("optimum")
    graphcore = types.ModuleType("optimum.graphcore")
    graphcore.IPUConfig = graphcore.IPUTrainer = graphcore.IPUTrainingArguments = object  # type: ignore[attr-defined]
    optimum.graphcore = graphcore  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "poptorch", types.ModuleType("poptorch"))
    monkeypatch.setitem(sys.modules, "optimum", optimum)
    monkeypatch.setitem(sys.modules, "optimum.graphcore", graphcore)
    spec = importlib.util.spec_from_file_location("qaflow_ipu_worker_under_test", WORKER_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_worker_features_put_answers_on_the_right_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from tasks.core.model_spec import resolve_model_path

    worker = _load_worker_with_sdk_stand_ins(monkeypatch)
    job = _job(tmp_path)
    examples = worker.read_squad(job.spec["train_file"])
    assert len(examples) == 12 and all(e["answers"] for e in examples)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm"))
    cols = worker.prepare_features(tokenizer, examples, 96, 32)  # short windows: contexts overflow
    n = len(cols["input_ids"])
    assert n > len(examples) and all(len(ids) == 96 for ids in cols["input_ids"])
    assert set(cols) >= {"input_ids", "attention_mask", "start_positions", "end_positions"}
    found = 0
    for ids, s, e in zip(cols["input_ids"], cols["start_positions"], cols["end_positions"], strict=True):
        if s == 0 and e == 0:
            continue  # the answer is not (fully) inside this window
        found += 1
        assert 0 < s <= e < 96
        span = tokenizer.decode(ids[s : e + 1]).replace(" ", "")
        texts = {a["text"].lower().replace(" ", "") for ex in examples for a in ex["answers"]}
        assert span in texts
    assert found >= len(examples)  # every answer lands in at least one window
    ds = worker.FeatureDataset(cols)
    assert len(ds) == n and ds[0]["input_ids"].shape == (96,)
