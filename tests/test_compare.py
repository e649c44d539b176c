"""`tasks.pipeline.compare` on a real sqlite MLflow store: runs logged as the retrain / benchmark flows log them."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from tasks.pipeline.compare import (
    PNG_MAGIC,
    benchmark_table,
    compare,
    rich_tables,
    table_cells,
)
from tasks.tracking.tags import run_mode_of
from tasks.tracking.tracker import Tracker
from tests.conftest import REPO_ROOT

H100 = "NVIDIA H100 80GB HBM3"


def _retrain_run(client: MlflowClient, exp: str, *, f1: float, lr: str, compile_mode: str | None, v2: bool) -> str:
    run = client.create_run(exp, run_name=f"retrain-{lr}", tags={
        "qaflow.run_key": f"key-{lr}", "qaflow.data_version": "dv-123", "qaflow.backend": "cuda",
        "qaflow.device": H100, "qaflow.model": "/models/bert-base-uncased",
    })  # fmt: skip
    rid = run.info.run_id
    params = {"model.model_name_or_path": "/models/bert-base-uncased", "model.model_family": "extractive",
              "train.learning_rate": lr, "train.torch_compile": str(compile_mode is not None),
              "train.torch_compile_mode": str(compile_mode)}  # fmt: skip
    for k, v in params.items():
        client.log_param(rid, k, v)
    metrics = {"f1": f1, "train_steps_per_second": 10.0 + f1 / 10, "train_samples_per_second": 120.0}
    metrics.update({"exact": f1 - 5, "HasAns_f1": f1 + 3, "NoAns_f1": f1 - 3, "HasAns_exact": f1, "NoAns_exact": f1 - 3}
                   if v2 else {"exact_match": f1 - 5})  # fmt: skip
    ms = [Metric(k, v, 0, 0) for k, v in metrics.items()]
    ms += [Metric("loss", 5.0 - 0.2 * step + (0.1 if v2 else 0.0), 0, step) for step in range(0, 20, 2)]
    client.log_batch(rid, metrics=ms)
    client.set_terminated(rid, "FINISHED")
    return rid


def _benchmark_run(client: MlflowClient, exp: str, mode: str, steps: float) -> str:
    run = client.create_run(exp, run_name=f"benchmark-{mode}", tags={
        "qaflow.kind": "benchmark", "qaflow.run_mode": mode, "qaflow.backend": "cuda", "qaflow.device": H100,
        "qaflow.model": "bert-base-uncased",
    })  # fmt: skip
    client.log_batch(run.info.run_id, metrics=[
        Metric("train_steps_per_second", steps, 0, 0), Metric("train_samples_per_second", steps * 12, 0, 0),
        Metric("steady_train_steps_per_second", steps * 1.1, 0, 0),
    ])  # fmt: skip
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


@pytest.fixture
def store(tmp_path: Path) -> dict:
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(uri)
    exp = client.create_experiment("qaflow", artifact_location=(tmp_path / "mlruns" / "artifacts").as_uri())
    ids = {
        "v1_eager": _retrain_run(client, exp, f1=80.0, lr="3e-5", compile_mode=None, v2=False),
        "v1_autotune": _retrain_run(client, exp, f1=82.5, lr="5e-5", compile_mode="max-autotune", v2=False),
        "v2": _retrain_run(client, exp, f1=70.0, lr="1e-4", compile_mode="default", v2=True),
        **{
            m: _benchmark_run(client, exp, m, s)
            for m, s in (("compile-max-autotune", 14.0), ("eager", 9.0), ("compile", 12.5))
        },  # fmt: skip
    }
    tracker = Tracker(uri, "qaflow", "qaflow-qa")  # the experiment made above
    return {"client": client, "tracker": tracker, "exp": exp, "ids": ids, "root": tmp_path, "uri": uri}


def test_run_mode_from_tags_and_params() -> None:
    assert run_mode_of({"qaflow.run_mode": "compile"}, {}) == "compile"
    # a compile mode alone turns compilation on in training (training_arguments), so the run is compiled
    assert run_mode_of({}, {"train.torch_compile": "False", "train.torch_compile_mode": "max-autotune"}) == (
        "compile-max-autotune"
    )
    assert run_mode_of({}, {"train.torch_compile": "False", "train.torch_compile_mode": "None"}) == "eager"
    assert run_mode_of({}, {"train.torch_compile": "True", "train.torch_compile_mode": "None"}) == "compile"
    assert run_mode_of({}, {"train.torch_compile": "True", "train.torch_compile_mode": "max-autotune"}) == (
        "compile-max-autotune"
    )


def test_compare_table_plots_report_and_comparison_run(store: dict, tmp_path: Path) -> None:
    client, ids = store["client"], store["ids"]
    out = tmp_path / "report"
    result = compare(store["tracker"], output_dir=out, log=True)
    assert store["tracker"].experiment_id == store["exp"]

    assert [r.run_id for r in result.rows[:3]] == [ids["v1_autotune"], ids["v1_eager"], ids["v2"]]  # best F1 first
    best = result.rows[0]
    assert (best.model, best.family, best.backend, best.run_mode, best.data_version) == (
        "bert-base-uncased", "extractive", "cuda", "compile-max-autotune", "dv-123")  # fmt: skip
    assert best.exact == pytest.approx(77.5) and best.train_samples_per_second == pytest.approx(120.0)
    v2 = next(r for r in result.rows if r.run_id == ids["v2"])
    assert v2.exact == pytest.approx(65.0) and v2.has_ans_f1 == pytest.approx(73.0) and v2.no_ans_f1 == 67.0
    assert [s for s, _ in v2.loss] == list(range(0, 20, 2))

    header, body = table_cells(result.rows)
    assert header[:3] == ["run", "kind", "model"]
    assert {"compile mode", "data version", "train steps/s", "EM", "F1", "HasAns F1", "NoAns F1"} <= set(header)
    assert body[0][header.index("F1")] == "82.50"

    bench = benchmark_table(result.rows)  # the seeds' layout, eager -> compile -> autotune
    assert [(b["GPU"], b["Run Mode"], b["train_steps_per_second"]) for b in bench] == [
        (H100, "eager", 9.0), (H100, "compile", 12.5), (H100, "compile-max-autotune", 14.0)]  # fmt: skip
    assert len(rich_tables(result.rows)) == 2

    pngs = [result.files[k] for k in ("throughput_by_mode", "f1_by_run", "loss_curves")]
    for png in pngs:
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    page = result.files["report"].read_text(encoding="utf-8")
    assert page.count('<img src="data:image/png;base64,') == 3
    assert '<table class="runs">' in page and '<table class="benchmark">' in page
    assert ids["v1_autotune"][:8] in page and "compile-max-autotune" in page and "HasAns F1" in page
    embedded = re.search(r'data:image/png;base64,([A-Za-z0-9+/=]+)"', page).group(1)
    assert base64.b64decode(embedded)[:8] == PNG_MAGIC
    assert 'src="http' not in page and "<script" not in page  # self-contained
    assert len(json.loads(result.files["table"].read_text())) == 6

    run = client.get_run(result.mlflow_run_id)
    assert run.data.tags["qaflow.kind"] == "comparison" and run.info.status == "FINISHED"
    assert set(run.data.tags["qaflow.compared_runs"].split(",")) == set(ids.values())
    logged = {a.path for a in client.list_artifacts(result.mlflow_run_id, "comparison")}
    assert {"comparison/comparison.html", "comparison/throughput_by_mode.png", "comparison/loss_curves.png"} <= logged

    again = compare(store["tracker"], output_dir=tmp_path / "again")
    assert result.mlflow_run_id not in {r.run_id for r in again.rows}  # comparison runs are not compared


def test_compare_selected_v1_runs_has_no_v2_columns(store: dict, tmp_path: Path) -> None:
    ids = store["ids"]
    result = compare(store["tracker"], run_ids=[ids["v1_eager"], ids["eager"]], metric="train_steps_per_second",
                     output_dir=tmp_path / "sel")  # fmt: skip
    assert [r.run_id for r in result.rows] == [ids["v1_eager"], ids["eager"]]  # 18.0 vs 9.0 steps/s
    header, _ = table_cells(result.rows)
    assert not any(h.startswith(("HasAns", "NoAns")) for h in header)
    assert result.files["train_steps_per_second_by_run"].read_bytes()[:8] == PNG_MAGIC
    assert result.mlflow_run_id is None


def test_compare_cli_prints_both_tables(store: dict, tmp_path: Path) -> None:
    root = store["root"]
    (root / "params.yaml").write_text(yaml.safe_dump({"tracking": {"tracking_uri": "sqlite:///mlruns/mlflow.db",
                                                                   "artifact_root": "mlruns/artifacts"}}))  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "compare", "--root", str(root), "--output", str(tmp_path / "cli")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert "GPU" in out.stdout and "Run Mode" in out.stdout and "train_steps_per_second" in out.stdout
    assert store["ids"]["v1_autotune"][:8] in out.stdout and "82.50" in out.stdout
    assert (tmp_path / "cli" / "comparison.html").is_file()
