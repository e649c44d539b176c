"""`qaflow tune` for real: 4 trials of a tiny model on a slice of the bundled sample, Prefect (ephemeral API), sqlite
MLflow. The search is SIGKILLed while its third trial trains and run again: it resumes its stored study, fails and
re-queues the interrupted trial, ends with 4 finished trials (not 6) and registers the best one as `challenger`.
"""

from __future__ import annotations

import json
import os
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

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

TRAIN = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"
DEV = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"
MODEL_NAME = "qaflow-tune-test"
STUDY = "tiny"


def make_project(root: Path, model_dir: Path) -> Path:
    root.mkdir(parents=True)
    params = {
        "data": {"train_file": str(TRAIN), "validation_file": str(DEV), "max_train_samples": 24,
                 "max_eval_samples": 12},
        "model": {"model_name_or_path": str(model_dir)},
        "train": {"backend": "cpu", "save_steps": 1000, "logging_steps": 2, "bf16": False},
        "tracking": {"tracking_uri": "sqlite:///mlruns/mlflow.db", "registered_model_name": MODEL_NAME},
        "tune": {"study_name": STUDY, "n_trials": 4, "learning_rate_range": [1e-4, 1e-3], "batch_size_choices": [4, 8],
                 "epochs_range": [1, 2], "warmup_ratio_range": [0.0, 0.2], "window_choices": [[96, 32], [64, 24]],
                 "pruner_startup_trials": 1, "pruning_eval_samples": 6},
    }  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def env_for(root: Path, api_url: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PREFECT_HOME": str(root / ".prefect"),
            "PREFECT_API_URL": api_url, "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip


def tune_argv(root: Path) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "tune", "--root", str(root)]


def query(db: Path, sql: str) -> list[tuple]:
    """Rows from Optuna's sqlite schema, read straight from the file (no lock taken)."""
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return list(conn.execute(sql))
    except sqlite3.OperationalError:  # the schema is still being created
        return []


def trial_states(db: Path) -> list[str]:
    return [row[0] for row in query(db, "SELECT state FROM trials ORDER BY number")]


def training_trials(db: Path) -> int:
    """RUNNING trials past their suggestions and MLflow run (the run id is stored once the params are)."""
    sql = ("SELECT count(*) FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
           "WHERE t.state = 'RUNNING' AND a.key = 'mlflow_run_id'")  # fmt: skip
    rows = query(db, sql)
    return rows[0][0] if rows else 0


def summary_of(stdout: str) -> dict:
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    return json.loads("\n".join(lines[start:]))


def test_tune_registers_the_best_trial_and_resumes_after_a_kill(tmp_path: Path, tiny_bert_dir: Path) -> None:
    import mlflow
    import optuna

    root = make_project(tmp_path / "project", tiny_bert_dir)
    db = root / "outputs" / "tune" / STUDY / "study.db"
    with prefect_server(tmp_path / "prefect-home") as api_url:  # one Prefect API for both invocations
        env = env_for(root, api_url)
        victim = subprocess.Popen(tune_argv(root), cwd=root, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + 300
        while not ((states := trial_states(db)).count("COMPLETE") >= 2 and training_trials(db)):
            assert victim.poll() is None and time.monotonic() < deadline, f"tune ended before the kill: {states}"
            time.sleep(0.1)
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait()
        assert trial_states(db) == ["COMPLETE", "COMPLETE", "RUNNING"]

        again = subprocess.run(tune_argv(root), cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    summary = summary_of(again.stdout)
    assert summary["recovered"] == [2]

    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{db}")
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    finished = [t for t in study.trials if t.state in done]
    assert len(finished) == 4, [t.state for t in study.trials]  # the interrupted trial did not count: 4, not 6
    assert study.trials[2].state == optuna.trial.TrialState.FAIL
    retry = next(t for t in study.trials if t.user_attrs.get("retry_of") == 2)
    assert retry.params == study.trials[2].params  # the interrupted trial ran again with its parameters

    client = mlflow.MlflowClient(f"sqlite:///{root}/mlruns/mlflow.db")  # no process-global URI for later tests
    parent = client.get_run(summary["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["qaflow.kind"] == "tune"
    trial_runs = {int(r.data.tags["qaflow.tune_trial"]): r for r in client.search_runs(
        [parent.info.experiment_id], filter_string="tags.`qaflow.kind` = 'tune-trial'")}  # fmt: skip
    assert sorted(trial_runs) == [t.number for t in study.trials]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in trial_runs.values())
    assert trial_runs[2].info.status == "KILLED" and trial_runs[2].data.tags["qaflow.tune_state"] == "interrupted"
    complete = {n: r for n, r in trial_runs.items() if r.data.tags.get("qaflow.tune_state") == "complete"}
    assert all({"f1", "exact_match", "train_runtime"} <= set(r.data.metrics) for r in complete.values())
    assert all(r.data.params["train.learning_rate"] == str(study.trials[n].params["learning_rate"])
               for n, r in complete.items())  # fmt: skip

    versions = client.search_model_versions(f"name = '{MODEL_NAME}'")
    assert len(versions) == 1
    challenger = client.get_model_version_by_alias(MODEL_NAME, "challenger")
    best_f1 = max(r.data.metrics["f1"] for r in complete.values())
    assert challenger.run_id == study.best_trial.user_attrs["mlflow_run_id"] == summary["best"]["run_id"]
    assert client.get_run(challenger.run_id).data.metrics["f1"] == pytest.approx(best_f1)
    assert summary["best"]["value"] == pytest.approx(best_f1)
    kept = sorted(p.parent.name for p in (db.parent).glob("trial-*/model.safetensors"))
    assert kept == [f"trial-{study.best_trial.number:03d}"]  # only the best trial's model stays on disk
