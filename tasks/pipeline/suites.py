"""Evaluation suites: a model scored on every member of a named suite (`evaluation.suites` in params.yaml).

* Members are resolved and checked before any model loads: the file must exist, load, and (where the suite pins
  `version`) have that content id; each member is named by its content id (`file_digest`) in the results, so
  two models' scores are known to come from the same data.
* A model predicts every member with its own stored inference recipe (`predict_dataset`: calibrated threshold,
  slices); the suite score is the weight-averaged F1 / EM.
* One MLflow run per suite evaluation (kind `suite`): per-member metrics `<member>/f1`, `<member>/exact`, the
  weighted `suite_f1` / `suite_exact`, the summary table (`suite/suite_table.json`, an MLflow table) and each
  member's slice table and plot.
* The promotion gate: `gate_table` compares challenger and champion member by member; a guarded member (one with
  a `margin`) whose F1 drops by more than its margin refuses the promotion.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tasks.core.data import QADataset
from tasks.core.specs import InferenceRecipe
from tasks.core.suites import ResolvedMember
from tasks.pipeline.error_slices import read_slices
from tasks.pipeline.prediction import PredictionSummary, Predictor, predict_dataset
from tasks.pipeline.serving import load_qa_model
from tasks.tracking import tags as tag
from tasks.tracking.tracker import Tracker

SUITE_TABLE = "suite/suite_table.json"


@dataclass
class MemberScore:
    name: str
    data: str
    sha256: str
    examples: int
    weight: float
    margin: float | None
    metrics: dict[str, float]
    files: dict[str, str] = field(default_factory=dict)

    @property
    def f1(self) -> float:
        return float(self.metrics["f1"])

    @property
    def exact(self) -> float:
        return float(self.metrics.get("exact_match", self.metrics.get("exact", 0.0)))


@dataclass
class SuiteResult:
    suite: str
    model: str
    members: list[MemberScore]

    def summary(self) -> dict[str, float]:
        total = sum(m.weight for m in self.members)
        return {
            "suite_f1": sum(m.weight * m.f1 for m in self.members) / total,
            "suite_exact": sum(m.weight * m.exact for m in self.members) / total,
        }

    def table(self) -> list[dict[str, Any]]:
        """member | data | sha256 | questions | weight | margin | EM | F1 (one row per member)."""
        return [
            {"member": m.name, "data": m.data, "sha256": m.sha256, "questions": m.examples, "weight": m.weight,
             "margin": m.margin, "EM": round(m.exact, 2), "F1": round(m.f1, 2)}
            for m in self.members
        ]  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "model": self.model,
            **self.summary(),
            "members": [asdict(m) for m in self.members],
        }


def score_suite(
    predictor: Predictor, recipe: InferenceRecipe, suite: str, members: list[ResolvedMember], out_dir: Path,
    model: str, known: tuple[QADataset, PredictionSummary] | None = None,
) -> SuiteResult:  # fmt: skip
    """Predict and score every member with the model's own recipe.

    `known`: a data set this model already predicted with this recipe and its scored summary (the retrain's dev
    score); a member holding exactly the same examples reuses it instead of predicting them again.
    """
    scores = []
    for r in members:
        if known is not None and known[1].metrics and _same_examples(r.dataset, known[0]):
            summary = known[1]
        else:
            summary = predict_dataset(predictor, r.dataset, recipe, Path(out_dir) / r.member.name, save_raw=False)
        metrics = {k: float(v) for k, v in (summary.metrics or {}).items() if isinstance(v, int | float)}
        scores.append(MemberScore(r.member.name, str(r.member.data), r.sha256, len(r.dataset), r.member.weight,
                                  r.member.margin, metrics, {k: str(v) for k, v in summary.files.items()}))  # fmt: skip
    return SuiteResult(suite, model, scores)


def _same_examples(a: QADataset, b: QADataset) -> bool:
    return a.version == b.version and a.examples == b.examples


def score_registered(
    tracker: Tracker, model_uri: str, suite: str, members: list[ResolvedMember], out_dir: Path
) -> SuiteResult:
    """`score_suite` for a model of the tracker's store (e.g. `models:/qaflow-qa@challenger`), loaded once."""
    qa = load_qa_model(tracker, model_uri)
    return score_suite(qa.predictor, qa.recipe, suite, members, out_dir, model_uri)


def log_suite(tracker: Tracker, result: SuiteResult, scored_run: str | None = None) -> str:
    """One run (kind `suite`): per-member and weighted metrics, the summary table, slices; its id."""
    metrics: dict[str, float] = dict(result.summary())
    for m in result.members:
        metrics.update({f"{m.name}/{k}": v for k, v in m.metrics.items()})
    tags = {tag.KIND: tag.KIND_SUITE, tag.SUITE: result.suite, tag.MODEL_URI: result.model}
    if scored_run:
        tags[tag.SCORED_RUN] = scored_run
    with tracker.run(f"suite {result.suite}: {result.model}") as rid:
        plots = [(m.files["slices_plot"], f"slices/{m.name}") for m in result.members if "slices_plot" in m.files]
        tracker.log_run(rid, metrics=metrics, tags=tags, artifacts=plots, environment=False)
        table = result.table()
        tracker.log_table(rid, {k: [row[k] for row in table] for k in table[0]}, SUITE_TABLE)
        for m in result.members:
            if "slices" in m.files:
                tracker.log_slice_table(rid, read_slices(Path(m.files["slices"])), f"slices/{m.name}/slices_table.json")
        tracker.log_dict(rid, result.to_json(), "suite/suite.json")
    return rid


# ------------------------------------------------------------------------------------------ the gate


@dataclass(frozen=True)
class GateRow:
    """One member in the promotion decision: both models' F1, the change and the verdict."""

    member: str
    sha256: str
    champion: float
    challenger: float
    delta: float
    margin: float | None
    verdict: str  # ok | regressed | unguarded


def gate_table(challenger: SuiteResult, champion: SuiteResult) -> list[GateRow]:
    """Member by member (same data: same content id), challenger vs champion F1 against each member's margin."""
    old = {m.name: m for m in champion.members}
    rows = []
    for new in challenger.members:
        before = old[new.name]
        if before.sha256 != new.sha256:
            raise ValueError(f"suite member {new.name}: scored on different data ({new.sha256} vs {before.sha256})")
        delta = new.f1 - before.f1
        verdict = "unguarded" if new.margin is None else "regressed" if delta < -new.margin else "ok"
        rows.append(GateRow(new.name, new.sha256, before.f1, new.f1, delta, new.margin, verdict))
    return rows


def regressed(rows: list[GateRow]) -> list[GateRow]:
    return [r for r in rows if r.verdict == "regressed"]


def format_gate(rows: list[GateRow]) -> str:
    """The decision table as fixed-width text (member, champion, challenger, delta, margin, verdict)."""
    head = f"{'member':<28} {'champion':>9} {'challenger':>10} {'delta':>7} {'margin':>7}  verdict"
    lines = [head]
    for r in rows:
        margin = "-" if r.margin is None else f"{r.margin:.2f}"
        lines.append(f"{r.member[:28]:<28} {r.champion:>9.2f} {r.challenger:>10.2f} {r.delta:>+7.2f} {margin:>7}"
                     f"  {r.verdict}")  # fmt: skip
    return "\n".join(lines)
