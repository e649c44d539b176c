"""Promotion on a real sqlite MLflow registry with pyfunc versions of the tiny model (`log_qa_model`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml

from tasks.core.config import QAFlowConfig, load_config
from tasks.pipeline.promote import (
    CHAMPION,
    PREVIOUS,
    PromotionError,
    Scored,
    champion_unchanged,
    compare_scores,
    promote,
    rollback,
)
from tasks.pipeline.runplan import run_key
from tasks.pipeline.serving import log_qa_model
from tasks.tracking.tracker import Tracker
from tests.conftest import REPO_ROOT
from tests.tiny_models import model_with_recipe

DEV = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"


def make_project(root: Path, name: str) -> QAFlowConfig:
    root.mkdir(parents=True, exist_ok=True)
    params = {"tracking": {"tracking_uri": "sqlite:///mlruns/mlflow.db", "artifact_root": "mlruns/artifacts",
                           "registered_model_name": name}}  # fmt: skip
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return load_config(root / "params.yaml")


def tracker_of(cfg: QAFlowConfig, root: Path) -> Tracker:
    return Tracker.from_config(cfg.tracking, root)


def add_version(cfg: QAFlowConfig, root: Path, model_dir: Path, metrics: dict[str, float], data_version: str,
                key: str | None = None) -> str:  # fmt: skip
    """A finished run with `metrics`, registered as a new version with alias `challenger` (as retrain does)."""
    tracker = tracker_of(cfg, root)
    with tracker.run("version") as run_id:
        tracker.set_tags(run_id, {"qaflow.data_version": data_version, **({"qaflow.run_key": key} if key else {})})
        tracker.log_metrics(run_id, metrics)
        served = model_with_recipe(model_dir, root / "models" / run_id, max_seq_length=96, doc_stride=32)
        log_qa_model(tracker, run_id, served)
    tracker.register(run_id, "model", run_key=key)
    versions = tracker.client.search_model_versions(f"name = '{cfg.tracking.registered_model_name}' and run_id = "
                                                    f"'{run_id}'")  # fmt: skip
    return str(versions[0].version)


def alias(cfg: QAFlowConfig, root: Path, name: str) -> str | None:
    client = tracker_of(cfg, root).client
    try:
        return str(client.get_model_version_by_alias(cfg.tracking.registered_model_name, name).version)
    except mlflow.exceptions.MlflowException:
        return None


def scored(version: str, **metrics: float) -> Scored:
    return Scored(version, None, metrics, "sha256:x")


def test_compare_scores_margin_and_guards() -> None:
    champ = scored("1", f1=80.0, HasAns_f1=85.0, NoAns_f1=75.0)
    ok, delta, reason, _ = compare_scores(scored("2", f1=80.6, HasAns_f1=86.0, NoAns_f1=75.0), champ, margin=0.5)
    assert ok and delta == pytest.approx(0.6) and "80.60 vs 80.00" in reason and "+0.60" in reason
    ok, _, reason, _ = compare_scores(scored("2", f1=80.4, HasAns_f1=86.0, NoAns_f1=75.0), champ, margin=0.5)
    assert not ok and "< margin 0.50" in reason
    ok, _, reason, report = compare_scores(scored("2", f1=83.0, HasAns_f1=90.0, NoAns_f1=74.0), champ, margin=0.5)
    assert not ok and "NoAns_f1 -1.00" in reason and report["NoAns_f1"]["ok"] is False
    ok, _, _, _ = compare_scores(scored("2", f1=83.0, HasAns_f1=90.0, NoAns_f1=74.0), champ, tolerance=1.5)
    assert ok  # the drop is within the tolerance
    ok, _, _, report = compare_scores(scored("2", f1=81.0), scored("1", f1=80.0), margin=0.5)  # v1: no guards
    assert ok and report["HasAns_f1"]["skipped"]
    with pytest.raises(PromotionError, match="no 'f1'"):
        compare_scores(scored("2", exact=1.0), champ)


def test_promote_refuse_rollback_and_answer(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "project"
    cfg = make_project(root, "qa-promote")
    with pytest.raises(PromotionError, match="nothing is registered yet"):
        promote(tracker_of(cfg, root), cfg, root)

    v1 = add_version(cfg, root, tiny_bert_dir, {"exact_match": 60.0, "f1": 70.0}, "dv1")
    first = promote(tracker_of(cfg, root), cfg, root)
    assert first.action == "first-champion" and first.promoted and alias(cfg, root, CHAMPION) == v1

    v2 = add_version(cfg, root, tiny_bert_dir, {"exact_match": 62.0, "f1": 71.0}, "dv1")
    better = promote(tracker_of(cfg, root), cfg, root, margin=0.5)
    assert better.action == "promote" and better.champion_before == v1 and better.champion_after == v2
    assert (alias(cfg, root, CHAMPION), alias(cfg, root, PREVIOUS)) == (v2, v1)
    assert not better.reevaluated and better.delta == pytest.approx(1.0)
    tags = tracker_of(cfg, root).client.get_model_version(cfg.tracking.registered_model_name, v2).tags
    assert tags["qaflow.promotion.decision"] == "promote" and tags["qaflow.promotion.by"]
    assert "f1 71.00 vs 70.00" in tags["qaflow.promotion.reason"] and tags["qaflow.promotion.at"].endswith("+00:00")
    assert json.loads(better.dumps())["promoted"] is True

    v3 = add_version(cfg, root, tiny_bert_dir, {"exact_match": 50.0, "f1": 69.0}, "dv1")
    worse = promote(tracker_of(cfg, root), cfg, root, margin=0.5)
    assert worse.action == "refuse" and not worse.promoted and alias(cfg, root, CHAMPION) == v2
    assert "kept v2" in worse.reason and alias(cfg, root, PREVIOUS) == v1
    assert tracker_of(cfg, root).client.get_model_version(cfg.tracking.registered_model_name, v3).tags[
        "qaflow.promotion.decision"] == "refuse"  # fmt: skip

    back = rollback(tracker_of(cfg, root))
    assert back.action == "rollback" and back.champion_before == v2 and back.champion_after == v1
    assert alias(cfg, root, CHAMPION) == v1 and alias(cfg, root, PREVIOUS) is None
    with pytest.raises(PromotionError, match="previous-champion"):
        rollback(tracker_of(cfg, root))
    assert not mlflow.is_tracking_uri_set()  # the steps bound no process-global store

    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "answer", "--root", str(root), "--question", "Where is the tower?",
         "--context", "The Eiffel Tower is in Paris, France."],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    answer = json.loads(out.stdout)
    assert answer["model"] == "models:/qa-promote@champion"
    assert {"answer", "score", "start", "end"} <= set(answer) and 0.0 <= answer["score"] <= 1.0
    context = "The Eiffel Tower is in Paris, France."
    assert answer["start"] == -1 or context[answer["start"] : answer["end"]] == answer["answer"]


def test_different_eval_data_rescored_on_challengers(tmp_path: Path, tiny_bert_dir: Path) -> None:
    from tasks.core.data import load_dataset_file, to_squad_json
    from tasks.pipeline.evaluation import evaluate_model

    root = tmp_path / "project"
    cfg = make_project(root, "qa-rescore")
    dataset = load_dataset_file(DEV, max_samples=6)
    for dv, n in (("dv-old", 4), ("dv-new", 6)):  # the retrain flow's eval snapshots of two data versions
        snap = root / "outputs" / "data" / dv
        snap.mkdir(parents=True)
        part = load_dataset_file(DEV, max_samples=n)
        (snap / "eval.json").write_text(json.dumps(to_squad_json(part)))
    champion = add_version(cfg, root, tiny_bert_dir, {"f1": 99.0}, "dv-old")
    promote(tracker_of(cfg, root), cfg, root)
    challenger = add_version(cfg, root, tiny_bert_dir, {"f1": 1.0}, "dv-new")  # logged numbers are not comparable

    decision = promote(tracker_of(cfg, root), cfg, root, margin=0.5)
    assert decision.reevaluated and decision.eval_data.startswith("sha256:")
    expected, _, _ = evaluate_model(tracker_of(cfg, root), f"models:/qa-rescore/{challenger}", dataset,
                                    tmp_path / "check")  # fmt: skip
    assert decision.scores["challenger"]["f1"] == pytest.approx(expected["f1"])
    assert decision.scores["champion"]["f1"] == pytest.approx(expected["f1"])  # same weights, same data
    assert decision.action == "refuse" and alias(cfg, root, CHAMPION) == champion  # +0.00 < margin
    assert "re-scored" in decision.reason


def test_champion_unchanged_skip_rule(tmp_path: Path, tiny_bert_dir: Path) -> None:
    root = tmp_path / "project"
    cfg = make_project(root, "qa-skip")
    assert champion_unchanged(tracker_of(cfg, root), "dv1", run_key(cfg, "dv1")) is None  # no champion yet
    add_version(cfg, root, tiny_bert_dir, {"f1": 50.0}, "dv1", key=run_key(cfg, "dv1"))
    promote(tracker_of(cfg, root), cfg, root)
    reason = champion_unchanged(tracker_of(cfg, root), "dv1", run_key(cfg, "dv1"))
    assert reason and "dv1" in reason and "champion v1" in reason
    assert champion_unchanged(tracker_of(cfg, root), "dv2", run_key(cfg, "dv2")) is None  # new data
    changed = load_config(root / "params.yaml", {"learning_rate": 1e-3})
    assert champion_unchanged(tracker_of(changed, root), "dv1", run_key(changed, "dv1")) is None  # new parameters
