"""Evaluation suites (tasks/pipeline/suites.py): typed config, early checks, suite runs and the promotion gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tasks.core.config import ConfigError, load_config
from tasks.core.data import DataError, load_dataset_file
from tasks.core.suites import ResolvedMember, resolve_suite
from tasks.pipeline.promote import CHAMPION, promote
from tasks.pipeline.suites import MemberScore, SuiteResult, format_gate, gate_table
from tasks.tracking.tracker import Tracker
from tests.conftest import REPO_ROOT, build_tiny_bert
from tests.test_promote import add_version, alias, tracker_of

DEV = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"


def write_params(root: Path, name: str, suites: dict, suite: str | None = "s") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    tracking = {"tracking_uri": "sqlite:///mlruns/mlflow.db", "artifact_root": "mlruns/artifacts",
                "registered_model_name": name}  # fmt: skip
    params = {"tracking": tracking, "evaluation": {"suite": suite, "suites": suites}}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root / "params.yaml"


@pytest.mark.parametrize(
    ("suites", "message"),
    [({"s": {"m": {"data": "x.json", "weight": -1}}}, "evaluation.suites.s.m.weight: -1.0 must be > 0"),
     ({"s": {"m": {"data": "x.json", "margin": -0.5}}}, "evaluation.suites.s.m.margin"),
     ({"s": {"m": {"weight": 1}}}, "evaluation.suites.s.m.data: missing"),
     ({"s": {"m": {"data": "x.json", "gaurd": 1}}}, "evaluation.suites.s.m.gaurd: unknown field"),
     ({"t": {"m": "x.json"}}, "evaluation.suite: 's' is not a suite")],
)  # fmt: skip
def test_bad_suite_config_is_one_line_naming_the_parameter(tmp_path: Path, suites: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")) as info:
        load_config(write_params(tmp_path, "x", suites))
    assert "\n" not in str(info.value)


def test_missing_or_changed_member_file_is_refused_before_any_model(tmp_path: Path) -> None:
    cfg = load_config(write_params(tmp_path, "x", {"s": {"dev": {"data": str(DEV)}, "gone": "nope.json"}}))
    with pytest.raises(DataError, match=r"evaluation\.suites\.s\.gone\.data: .*nope\.json is not a file"):
        resolve_suite(cfg, tmp_path)
    cfg = load_config(write_params(tmp_path, "x", {"s": {"dev": {"data": str(DEV), "version": "0" * 12}}}))
    with pytest.raises(DataError, match=r"evaluation\.suites\.s\.dev\.version: .* has content id"):
        resolve_suite(cfg, tmp_path)
    write_params(tmp_path, "x", {"s": {"gone": "nope.json"}})
    out = subprocess.run(
        [sys.executable, "-m", "flows.cli", "evaluate", "--suite", "s", "--root", str(tmp_path),
         "--model-uri", "models:/never-registered@champion"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("qaflow evaluate: error: evaluation.suites.s.gone.data")
    assert "never-registered" not in out.stderr  # no model was looked up


def _scores(suite: str, **f1: float) -> SuiteResult:
    margins = {"guarded": 1.0, "loose": None}
    members = [MemberScore(n, f"{n}.json", "abc", 10, 1.0, margins[n], {"f1": v, "exact_match": v})
               for n, v in f1.items()]  # fmt: skip
    return SuiteResult(suite, "m", members)


def test_gate_table_verdicts() -> None:
    rows = gate_table(_scores("s", guarded=79.5, loose=40.0), _scores("s", guarded=80.0, loose=60.0))
    assert [(r.member, r.verdict) for r in rows] == [("guarded", "ok"), ("loose", "unguarded")]
    rows = gate_table(_scores("s", guarded=78.9, loose=90.0), _scores("s", guarded=80.0, loose=60.0))
    assert rows[0].verdict == "regressed" and rows[0].delta == pytest.approx(-1.1)
    assert "regressed" in format_gate(rows) and _scores("s", guarded=80.0, loose=60.0).summary()["suite_f1"] == 70.0


def _member_from_predictions(tracker: Tracker, qa_uri: str, out: Path, n: int = 10) -> Path:
    """A v1.1 member whose gold answers are what the model at `qa_uri` answers: that model scores 100 on it."""
    dataset = load_dataset_file(DEV, max_samples=n)
    model = tracker.load_pyfunc(qa_uri)
    answers = model.predict([{"question": ex.question, "context": ex.context} for ex in dataset.examples])
    paragraphs = []
    for ex, (_, row) in zip(dataset.examples, answers.iterrows(), strict=True):
        if row["answer"]:
            qa = {
                "id": ex.id,
                "question": ex.question,
                "answers": [{"text": row["answer"], "answer_start": row["start"]}],
            }
            paragraphs.append({"context": ex.context, "qas": [qa]})
    out.write_text(json.dumps({"version": "1.1", "data": [{"title": "agree", "paragraphs": paragraphs}]}))
    return out


def test_challenger_better_on_the_main_set_but_regressing_a_guarded_member_is_refused(
    tmp_path: Path, tiny_bert_dir: Path
) -> None:
    root = tmp_path / "project"
    small = root / "dev-small.json"
    root.mkdir()
    first = json.loads(DEV.read_text())["data"][0]
    small.write_text(json.dumps({"version": "1.1", "data": [{**first, "paragraphs": first["paragraphs"][:3]}]}))
    suites = {"s": {"agree": {"data": "agree.json", "margin": 1.0}, "dev": {"data": "dev-small.json"}}}
    cfg = load_config(write_params(root, "qa-suite", suites, suite=None))  # the member is made from the champion
    v1 = add_version(cfg, root, tiny_bert_dir, {"exact_match": 60.0, "f1": 70.0}, "dv1")
    assert promote(tracker_of(cfg, root), cfg, root).action == "first-champion" and alias(cfg, root, CHAMPION) == v1
    _member_from_predictions(tracker_of(cfg, root), f"models:/qa-suite/{v1}", root / "agree.json")
    cfg = load_config(write_params(root, "qa-suite", suites))

    other = build_tiny_bert(tmp_path / "other", seed=1)
    v2 = add_version(cfg, root, other, {"exact_match": 65.0, "f1": 75.0}, "dv1")  # +5 F1 on the main set
    decision = promote(tracker_of(cfg, root), cfg, root, margin=0.5)
    assert decision.action == "refuse" and not decision.promoted and alias(cfg, root, CHAMPION) == v1
    table = {r["member"]: r for r in decision.suite_table}
    assert table["agree"]["champion"] == 100.0 and table["agree"]["challenger"] < 99.0
    assert table["agree"]["verdict"] == "regressed" and table["dev"]["verdict"] == "unguarded"
    assert "f1 75.00 vs 70.00" in decision.reason and "agree" in decision.reason and "kept v1" in decision.reason
    tags = tracker_of(cfg, root).client.get_model_version("qa-suite", v2).tags
    assert json.loads(tags["qaflow.promotion.suite"])["table"] == decision.suite_table


def test_a_member_equal_to_the_scored_dev_set_reuses_its_score(tmp_path: Path) -> None:
    from tasks.core.config import SuiteMember
    from tasks.core.specs import InferenceRecipe
    from tasks.pipeline.prediction import PredictionSummary
    from tasks.pipeline.suites import score_suite

    class NoModel:
        def predict(self, *args: object, **kwargs: object) -> None:
            raise RuntimeError("predicted")

    dev = load_dataset_file(DEV, max_samples=5)
    known = PredictionSummary(5, "1.1", "extractive", {}, {}, metrics={"exact_match": 40.0, "f1": 55.0})
    recipe = InferenceRecipe("extractive")
    member = ResolvedMember(SuiteMember("dev", str(DEV)), DEV, "abc", load_dataset_file(DEV, max_samples=5))
    result = score_suite(NoModel(), recipe, "s", [member], tmp_path, "m", known=(dev, known))  # type: ignore[arg-type]
    assert result.members[0].f1 == 55.0 and result.summary()["suite_exact"] == 40.0
    other = ResolvedMember(SuiteMember("dev", str(DEV)), DEV, "abc", load_dataset_file(DEV, max_samples=4))
    with pytest.raises(RuntimeError, match="predicted"):  # other questions: predicted, never reused
        score_suite(NoModel(), recipe, "s", [other], tmp_path, "m", known=(dev, known))  # type: ignore[arg-type]
