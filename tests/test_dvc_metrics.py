"""pipeline.dvc_metrics with the real dvc.yaml in a temp git + DVC repo: `dvc metrics diff` between two retrains
shows EM/F1 and throughput; `dvc plots show` finds the training curves."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.pipeline.dvc_metrics import history_rows, write_dvc_metrics

REPO = Path(__file__).resolve().parents[1]
GIT = ["git", "-c", "user.name=qaflow-test", "-c", "user.email=test@example.com"]


def _run(root: Path, *argv: str) -> str:
    done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _history(losses: list[float], seconds_per_step: float) -> list[dict]:
    entries = [{"loss": loss, "learning_rate": 1e-4 / (i + 1), "grad_norm": 1.0, "step": 2 * (i + 1),
                "elapsed_seconds": 2 * (i + 1) * seconds_per_step} for i, loss in enumerate(losses)]  # fmt: skip
    return [*entries, {"train_runtime": 9.0, "train_loss": 1.0, "step": 2 * len(losses)}]


def _retrain(root: Path, f1: float, samples_per_s: float, losses: list[float]) -> None:
    write_dvc_metrics(
        root, data_version="dv1", run_key=f"key-{f1}", scores={"exact_match": f1 - 10, "f1": f1},
        figures={"train_samples_per_second": samples_per_s, "train_loss": 1.0, "predict_samples_per_second": 50.0},
        log_history=_history(losses, 0.5),
    )  # fmt: skip


def test_metrics_diff_and_plots_between_two_retrains(tmp_path: Path) -> None:
    root = tmp_path / "project"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, root / name)
    _run(root, "git", "init", "-q")
    _run(root, sys.executable, "-m", "dvc", "init", "-q")
    _retrain(root, f1=40.0, samples_per_s=10.0, losses=[3.0, 2.5, 2.0])
    _run(root, "git", "add", "-A")
    _run(root, *GIT, "commit", "-qm", "first retrain")
    _retrain(root, f1=45.5, samples_per_s=12.0, losses=[3.0, 2.0, 1.5])

    diff = json.loads(_run(root, sys.executable, "-m", "dvc", "metrics", "diff", "--json"))["metrics/retrain.json"]
    assert diff["f1"] == {"old": 40.0, "new": 45.5, "diff": 5.5}
    assert diff["exact_match"] == {"old": 30.0, "new": 35.5, "diff": 5.5}
    assert diff["train_samples_per_second"]["diff"] == pytest.approx(2.0)
    assert diff["run_key"] == {"old": "key-40.0", "new": "key-45.5"}
    assert "mlflow_run_id" not in json.loads((root / "metrics" / "retrain.json").read_text())  # no foreign run ids
    assert "train_loss" not in diff and "predict_samples_per_second" not in diff  # unchanged: not in the diff

    plots = json.loads(_run(root, sys.executable, "-m", "dvc", "plots", "show", "--json"))["data"]
    assert {"loss", "learning_rate", "steps_per_second"} <= set(plots)
    values = plots["loss"][0]["content"]["data"]["values"]
    assert [(int(v["step"]), float(v["loss"])) for v in values] == [(2, 3.0), (4, 2.0), (6, 1.5)]


def test_history_rows_steps_per_second() -> None:
    rows = history_rows(_history([3.0, 2.0], seconds_per_step=0.25))
    assert [r["step"] for r in rows] == [2, 4]  # the final summary entry has no loss
    assert rows[0]["steps_per_second"] == "" and rows[1]["steps_per_second"] == pytest.approx(4.0)
