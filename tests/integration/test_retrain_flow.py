"""The retrain flow for real: a DVC repo with a local remote, Prefect (ephemeral API), sqlite MLflow, a tiny model.

Covers: a first run trains, scores, tracks and registers `challenger`; a second run with nothing changed skips
training; a retrain killed during training resumes without duplicate runs or versions; two retrains started at
once against the same store both finish with separate, correct runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT
from tests.servers import prefect_server

TRAIN = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"
DEV = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"
MODEL_NAME = "qaflow-test"


def make_repo(root: Path, model_dir: Path, **train_overrides) -> Path:
    """A self-contained qaflow project directory: dvc.yaml, params.yaml, raw data, DVC with a local remote."""
    from tasks.versioning import ensure_dvc_repo

    (root / "data" / "sample").mkdir(parents=True)
    shutil.copy(TRAIN, root / "data" / "sample" / TRAIN.name)
    shutil.copy(DEV, root / "data" / "sample" / DEV.name)
    for name in ("dvc.yaml", ".dvcignore"):
        if (REPO_ROOT / name).exists():
            shutil.copy(REPO_ROOT / name, root / name)
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    code_deps = {d for stage in stages.values() for d in stage["deps"] if d.endswith(".py")}
    for dep in sorted(code_deps):  # the code deps named in dvc.yaml
        (root / dep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / dep, root / dep)
    params = {
        "data": {"train_file": f"data/sample/{TRAIN.name}", "validation_file": f"data/sample/{DEV.name}",
                 "max_train_samples": 48, "max_eval_samples": 24},
        "model": {"model_name_or_path": str(model_dir)},
        "features": {"max_seq_length": 96, "doc_stride": 32},
        "train": {"backend": "cpu", "max_steps": 16, "save_steps": 4, "per_device_train_batch_size": 4,
                  "learning_rate": 1e-3, "logging_steps": 2, **train_overrides},
        "tracking": {"tracking_uri": "sqlite:///mlruns/mlflow.db", "registered_model_name": MODEL_NAME},
    }  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    ensure_dvc_repo(root, remote_dir=root / ".dvcstore")
    return root


def env_for(root: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PREFECT_HOME": str(root / ".prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": "",
        "TOKENIZERS_PARALLELISM": "false",
        "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL": "0.5",  # a tiny model trains for seconds, not minutes
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }


def retrain_argv(root: Path, *extra: str, json_summary: bool = True) -> list[str]:
    """`qaflow retrain` as a subprocess; `--json` (the summary `summary_of` reads) unless `json_summary` is False."""
    flags = ["--json"] if json_summary else []
    return [sys.executable, "-m", "flows.cli", "retrain", "--root", str(root), "--params", "params.yaml", *flags,
            *extra]  # fmt: skip


def summary_of(stdout: str) -> dict:
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


def tracking_uri(root: Path) -> str:
    return f"sqlite:///{root}/mlruns/mlflow.db"


def mlflow_client(root: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri(root))  # no process-global URI for later tests


PREFECT_QUERY = """
import json, sys
from uuid import UUID
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, LogFilter, LogFilterFlowRunId
run = UUID(sys.argv[1])
with get_client(sync_client=True) as client:
    artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run])))
    logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run])))
print(json.dumps({"artifacts": [{"key": a.key, "type": a.type, "data": a.data} for a in artifacts],
                  "loggers": sorted({log.name for log in logs})}))
"""


def prefect_records(root: Path, flow_run_id: str) -> dict:
    """The artifacts and the logger names of one flow run, read back from the run's Prefect (ephemeral) database."""
    done = subprocess.run(
        [sys.executable, "-c", PREFECT_QUERY, flow_run_id], cwd=root, env=env_for(root),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def git_commit_all(root: Path) -> None:
    ident = ["-c", "user.name=qaflow-test", "-c", "user.email=test@example.com"]
    for argv in (["init", "-q", "-b", "main"], ["add", "-A"], [*ident, "commit", "-qm", "project"]):
        subprocess.run(["git", *argv], cwd=root, check=True, capture_output=True, timeout=60)


@pytest.fixture
def repo(tmp_path: Path, tiny_bert_dir: Path) -> Path:
    return make_repo(tmp_path / "project", tiny_bert_dir)


def test_retrain_trains_registers_then_skips(repo: Path) -> None:
    git_commit_all(repo)
    first = subprocess.run(retrain_argv(repo), cwd=repo, env=env_for(repo), capture_output=True, text=True, timeout=900)
    assert first.returncode == 0, first.stderr[-4000:]
    s1 = summary_of(first.stdout)
    assert s1["action"] == "new" and s1["version"] == "1"
    console = first.stdout + first.stderr  # a pipe: no colour codes, one line per event, named Prefect task lines
    assert "\x1b[" not in console
    finished = [line for line in console.splitlines() if "prefect.task_runs:" in line and "Finished in state" in line]
    assert finished and all("task run '" in line for line in finished), finished
    stages = [line for line in console.splitlines() if "Running stage '" in line]
    assert len(stages) == len(set(stages)), stages  # each DVC line once
    assert "Some of the cache files" not in console
    assert {"exact_match", "f1"} <= set(s1["metrics"])
    client = mlflow_client(repo)
    run = client.get_run(s1["run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["qaflow.data_version"] == s1["data_version"]
    assert run.data.metrics["f1"] == pytest.approx(s1["metrics"]["f1"])
    assert "train_steps_per_second" in run.data.metrics and run.data.params["train.max_steps"] == "16"
    artifacts = {a.path for a in client.list_artifacts(s1["run_id"])}
    assert {"predictions", "params.yaml", "data", "evaluation"} <= artifacts
    # live history: each loss once, at logging_first_step and every logging_steps (2) up to max_steps (16)
    assert [m.step for m in client.get_metric_history(s1["run_id"], "loss")] == [1, *range(2, 17, 2)]
    assert any(k.startswith("system/") for k in run.data.metrics)
    assert run.data.tags["mlflow.source.git.branch"] == "main" and run.data.tags["qaflow.git_dirty"] == "false"
    assert len(run.data.tags["mlflow.source.git.commit"]) == 40
    inputs = {i.tags[0].value: i.dataset.digest for i in run.inputs.dataset_inputs}
    assert inputs == {"training": s1["data_version"], "evaluation": s1["data_version"]}
    table = json.loads(Path(client.download_artifacts(s1["run_id"], "evaluation/questions.json")).read_text())
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    assert len(rows) == 24 and {"id", "question", "gold_answers", "prediction", "exact", "f1"} <= set(rows[0])
    assert 100 * sum(r["f1"] for r in rows) / len(rows) == pytest.approx(s1["metrics"]["f1"])
    assert s1["mlflow_run_url"].endswith(f"/#/experiments/{run.info.experiment_id}/runs/{s1['run_id']}")
    prefect = prefect_records(repo, s1["flow_run_id"])
    kinds = {a["key"]: a for a in prefect["artifacts"]}
    assert {"qaflow-retrain", "qaflow-retrain-report"} <= set(kinds)
    fields = {row["field"]: row["value"] for row in json.loads(kinds["qaflow-retrain"]["data"])}  # stored as JSON
    assert fields["data version"] == s1["data_version"] and fields["model version"] == "1"
    assert fields["MLflow run"] == s1["run_id"] and fields["MLflow run page"] == s1["mlflow_run_url"]
    ui = f"mlflow ui --backend-store-uri sqlite:///{repo.resolve()}/mlruns/mlflow.db"  # a local store: what serves it
    assert fields["MLflow UI (a local store: start it first)"] == ui
    assert float(fields["f1"]) == pytest.approx(s1["metrics"]["f1"], rel=1e-3)
    markdown = kinds["qaflow-retrain-report"]
    assert markdown["type"] == "markdown" and s1["mlflow_run_url"] in markdown["data"]
    assert any(name.startswith("tasks.") for name in prefect["loggers"]), prefect["loggers"]
    dvc_metrics = subprocess.run(
        [sys.executable, "-m", "dvc", "metrics", "show", "--json"], cwd=repo, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert dvc_metrics.returncode == 0, dvc_metrics.stderr[-2000:]
    (workspace,) = json.loads(dvc_metrics.stdout).values()  # one revision: the workspace
    shown = workspace["data"]["metrics/retrain.json"]["data"]
    assert shown["f1"] == pytest.approx(s1["metrics"]["f1"]) and shown["data_version"] == s1["data_version"]
    assert shown["train_samples_per_second"] > 0 and shown["run_key"] == s1["run_key"]
    assert "mlflow_run_id" not in shown  # a run id exists in this store only; the file travels with every clone
    assert (repo / "metrics" / "train_history.csv").read_text().splitlines()[0].startswith("step,loss")
    assert str(client.get_model_version_by_alias(MODEL_NAME, "challenger").version) == "1"
    assert (repo / ".dvcstore").exists() and any((repo / ".dvcstore").rglob("*"))

    second = subprocess.run(
        retrain_argv(repo, json_summary=False), cwd=repo, env=env_for(repo), capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr[-4000:]
    assert "retrain skipped" in second.stdout + second.stderr
    tables = second.stdout  # the demo's tables, not the JSON summary
    assert "Nothing changed" in tables and "qaflow retrain (skip" in tables and s1["run_id"] in tables
    assert f"{s1['metrics']['f1']:.2f}" in tables and not any(line == "{" for line in tables.splitlines())
    assert len(client.search_model_versions(f"name = '{MODEL_NAME}'")) == 1


@pytest.mark.reliability
def test_killed_retrain_resumes_without_duplicates(repo: Path) -> None:
    victim = subprocess.Popen(
        retrain_argv(repo), cwd=repo, env=env_for(repo),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 600
    while not list((repo / "outputs" / "runs").glob("*/train/checkpoints/checkpoint-8/trainer_state.json")):
        assert victim.poll() is None, "retrain ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()

    again = subprocess.run(retrain_argv(repo), cwd=repo, env=env_for(repo), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    summary = summary_of(again.stdout)
    assert summary["action"] == "resume"
    client = mlflow_client(repo)
    experiment = client.get_experiment_by_name("qaflow")
    runs = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`qaflow.run_key` = '{summary['run_key']}'"
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert len(client.search_model_versions(f"name = '{MODEL_NAME}'")) == 1
    result = json.loads((Path(summary["run_dir"]) / "train" / "train_record.json").read_text())
    assert result["resumed_from"] and int(result["resumed_from"].rsplit("-", 1)[1]) >= 8


def test_two_concurrent_retrains_both_finish(repo: Path, tmp_path: Path) -> None:
    (tmp_path / "prefect-home").mkdir()
    with prefect_server(tmp_path / "prefect-home") as api_url:  # one real Prefect API shared by both runs
        procs = [
            subprocess.Popen(
                retrain_argv(repo, "--learning_rate", lr), cwd=repo, env={**env_for(repo), "PREFECT_API_URL": api_url},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for lr in ("1e-3", "5e-4")
        ]  # fmt: skip
        outs = [p.communicate(timeout=1200) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-4000:]
    summaries = [summary_of(out) for out, _ in outs]
    assert summaries[0]["run_id"] != summaries[1]["run_id"]
    assert summaries[0]["data_version"] == summaries[1]["data_version"]
    client = mlflow_client(repo)
    lrs = {client.get_run(s["run_id"]).data.params["train.learning_rate"] for s in summaries}
    assert lrs == {"0.001", "0.0005"}
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert sorted(str(v.version) for v in versions) == ["1", "2"]
    for s in summaries:
        assert client.get_run(s["run_id"]).info.status == "FINISHED"
        assert json.loads((Path(s["run_dir"]) / "predict" / "metrics.json").read_text()) == s["metrics"]


@pytest.mark.reliability
def test_retrain_on_bad_data_fails_once_and_changes_nothing(repo: Path) -> None:
    """A deterministic data error: one line, exit 2, no retries, params.yaml and data/ untouched."""
    bad = repo / "data" / "sample" / "bad.json"
    data = json.loads((repo / "data" / "sample" / TRAIN.name).read_text())
    data["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = 10**6
    bad.write_text(json.dumps(data))
    params_before = (repo / "params.yaml").read_bytes()
    done = subprocess.run(
        retrain_argv(repo, "--train_file", "data/sample/bad.json"), cwd=repo, env=env_for(repo),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("qaflow retrain: error:")]
    assert len(errors) == 1 and "bad.json" in errors[0] and "answer_start" in errors[0], done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "Retrying" not in done.stderr + done.stdout
    assert (repo / "params.yaml").read_bytes() == params_before
    assert not (repo / "data" / "prepared").exists() and not (repo / "outputs").exists()


def test_two_retrains_of_the_same_key_train_once(repo: Path, tmp_path: Path) -> None:
    """Started together with the same data and parameters: one trains, the other waits for it and skips."""
    (tmp_path / "prefect-home").mkdir()
    with prefect_server(tmp_path / "prefect-home") as api_url:
        procs = [
            subprocess.Popen(
                retrain_argv(repo), cwd=repo, env={**env_for(repo), "PREFECT_API_URL": api_url},
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for _ in range(2)
        ]  # fmt: skip
        outs = [p.communicate(timeout=1200) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-4000:]
    actions = sorted(summary_of(out)["action"] for out, _ in outs)
    assert actions == ["new", "skip"]
    assert len({summary_of(out)["run_id"] for out, _ in outs}) == 1
    client = mlflow_client(repo)
    assert [str(v.version) for v in client.search_model_versions(f"name = '{MODEL_NAME}'")] == ["1"]
    assert len(list((repo / "outputs" / "runs").iterdir())) == 1


def _logged_model_rows(repo: Path) -> int:
    db = repo / "mlruns" / "mlflow.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.05) as conn:
            return conn.execute("SELECT COUNT(*) FROM logged_models").fetchone()[0]
    except sqlite3.Error:  # schema not created yet, or the writer holds the lock
        return 0


@pytest.mark.reliability
def test_retrain_killed_while_logging_to_mlflow_resumes_to_one_complete_model(repo: Path) -> None:
    """SIGKILL as soon as the model starts being logged (its LoggedModel row exists, PENDING); the re-run resumes
    the run: one FINISHED run, one version whose source is a complete (READY) logged model, the same scores."""
    from mlflow.entities import LoggedModelStatus

    victim = subprocess.Popen(retrain_argv(repo), cwd=repo, env=env_for(repo), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 600
    while _logged_model_rows(repo) == 0:
        assert victim.poll() is None, "retrain ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    scored = [json.loads(p.read_text()) for p in (repo / "outputs" / "runs").glob("*/predict/metrics.json")]
    assert len(scored) == 1, "killed after predicting, while logging"

    again = subprocess.run(retrain_argv(repo), cwd=repo, env=env_for(repo), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    summary = summary_of(again.stdout)
    assert summary["action"] == "resume" and summary["metrics"] == scored[0]
    client = mlflow_client(repo)
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED" and run.data.metrics["f1"] == pytest.approx(scored[0]["f1"])
    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert len(versions) == 1 and versions[0].source.startswith("models:/")
    model = client.get_logged_model(versions[0].source.removeprefix("models:/"))
    assert model.status == LoggedModelStatus.READY and model.source_run_id == summary["run_id"]
    statuses = sorted(str(m.status) for m in client.search_logged_models([run.info.experiment_id]))
    assert statuses.count("READY") == 1 and "PENDING" not in statuses, statuses  # a half log is marked FAILED
    import mlflow.pyfunc

    mlflow.set_tracking_uri(tracking_uri(repo))  # `models:/` URIs resolve against the global store (reset after)
    served = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}/1")  # the registered model loads and answers
    assert served.metadata.run_id == summary["run_id"]


def test_retrain_calibrates_scores_the_suite_and_logs_slices(repo: Path) -> None:
    """postprocess.calibration_file: the threshold lands in the registered recipe; evaluation.suite: one suite run."""
    v2 = json.loads((REPO_ROOT / "data" / "sample" / "squad-v2.0-sample-dev.json").read_text())
    article = v2["data"][0]
    small_v2 = {"version": "v2.0", "data": [{**article, "paragraphs": article["paragraphs"][:3]}]}
    (repo / "calib.json").write_text(json.dumps(small_v2))
    first = json.loads(DEV.read_text())["data"][0]
    member = {"version": "1.1", "data": [{**first, "paragraphs": first["paragraphs"][:2]}]}
    (repo / "member.json").write_text(json.dumps(member))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["postprocess"] = {"calibration_file": "calib.json"}
    params["evaluation"] = {"suite": "s", "suites": {"s": {"dev-part": {"data": "member.json", "margin": 1.0}}}}
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    done = subprocess.run(retrain_argv(repo), cwd=repo, env=env_for(repo), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = summary_of(done.stdout)
    assert "calibration_null_threshold" in summary["metrics"]
    assert [row["member"] for row in summary["suite"]["table"]] == ["dev-part"]
    client = mlflow_client(repo)
    suite_run = client.get_run(summary["suite"]["run_id"])
    assert (
        suite_run.data.tags["qaflow.kind"] == "suite" and suite_run.data.tags["qaflow.scored_run"] == summary["run_id"]
    )
    assert suite_run.data.metrics["dev-part/f1"] == pytest.approx(summary["suite"]["summary"]["suite_f1"])
    assert "slices" in {a.path for a in client.list_artifacts(summary["run_id"])}
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(repo))  # `models:/` URIs resolve against the global store (reset after)
    qa = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@challenger").unwrap_python_model()
    assert qa.recipe.null_threshold == summary["metrics"]["calibration_null_threshold"]


def test_retrain_evaluates_during_training_live_into_mlflow(tmp_path: Path, tiny_bert_dir: Path) -> None:
    """eval_strategy in the retrain flow: official scores on the DVC eval split at each evaluation, logged live."""
    repo = make_repo(tmp_path / "project", tiny_bert_dir, eval_strategy="steps", eval_steps=4,
                     load_best_model_at_end=True)  # fmt: skip
    done = subprocess.run(retrain_argv(repo), cwd=repo, env=env_for(repo), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    summary = summary_of(done.stdout)
    client = mlflow_client(repo)
    history = client.get_metric_history(summary["run_id"], "eval_f1")
    assert [m.step for m in history] == [4, 8, 12, 16] and {"eval_exact_match", "eval_runtime"} <= set(
        client.get_run(summary["run_id"]).data.metrics
    )
    last_loss = client.get_metric_history(summary["run_id"], "loss")[-1]
    assert history[0].timestamp < last_loss.timestamp, "logged while training ran (LiveMetrics), not afterwards"
    train_dir = Path(summary["run_dir"]) / "train"
    state = json.loads((train_dir / "trainer_state.json").read_text())
    scores = {e["step"]: e["eval_f1"] for e in state["log_history"] if "eval_f1" in e}
    assert state["best_metric"] == max(scores.values()) == pytest.approx(max(m.value for m in history))
    assert state["best_model_checkpoint"].startswith(str(train_dir / "checkpoints"))
    assert (train_dir / "eval_predictions.json").is_file() and (train_dir / "model.safetensors").is_file()
    # the flow's own score is the final (best) model's on the same eval split (24 questions)
    assert summary["metrics"]["f1"] == pytest.approx(state["best_metric"])
