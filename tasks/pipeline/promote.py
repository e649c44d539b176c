"""Model promotion: `challenger` vs `champion` on the same evaluation data, alias switch, rollback, skip rule.

Rules:

* Both versions are compared on the same evaluation data. A version's evaluation data is identified by the
  sha256 (12 hex) of the `eval.json` snapshot of its run's data version (`outputs/data/<version>/eval.json`,
  written by the retrain flow); where that file is not on this machine, by the data version itself. When the
  two differ, both versions are re-scored on the challenger's evaluation data with
  `tasks.pipeline.evaluation.evaluate_model` (logged run metrics are used otherwise).
* Promote only if `metric` (F1, 0-100) improves by at least `margin` points and no guarded metric (v2
  `HasAns_f1`, `NoAns_f1` by default; ignored where either side lacks it) drops by more than `tolerance`.
* No champion yet: the first scored challenger becomes champion.
* The alias switch never leaves the model without a champion: `champion` is moved to the new version first,
  then `previous-champion` is pointed at the old one. Rollback moves `champion` back to `previous-champion`,
  then removes that alias (a second rollback needs a new promotion in between).
* Who (`getpass.getuser()`), when (UTC ISO time) and why (the reason with the numbers) are recorded as
  model-version tags `qaflow.promotion.*` (the challenger, promoted or not) and `qaflow.rollback.*`.
"""

from __future__ import annotations

import getpass
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.core.config import QAFlowConfig
from tasks.core.data import load_dataset_file
from tasks.core.io import file_digest
from tasks.core.layout import promote_dir, snapshot_dir, snapshots_dir
from tasks.core.suites import ResolvedMember, resolve_suite
from tasks.pipeline.evaluation import evaluate_model
from tasks.pipeline.suites import GateRow, gate_table, regressed, score_registered
from tasks.tracking import tags as tag
from tasks.tracking.records import VersionRecord
from tasks.tracking.tracker import Tracker

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous-champion"
DEFAULT_GUARDS = ("HasAns_f1", "NoAns_f1")


class PromotionError(ValueError):
    """Promotion cannot be decided or carried out; the message says what is missing."""


@dataclass
class Scored:
    """One model version's metrics on one evaluation data set."""

    version: str
    run_id: str | None
    metrics: dict[str, float]
    eval_data: str  # "sha256:<12 hex>" of the eval file, or "data:<data version>"
    eval_path: str | None = None
    source: str = "run"  # "run" (logged metrics) | "evaluated" (re-scored here)


@dataclass
class Decision:
    """What `promote` / `rollback` decided and did; `to_json()` is printed by the CLI."""

    action: str  # promote | refuse | first-champion | noop | rollback
    promoted: bool
    model: str
    challenger: str | None
    champion_before: str | None
    champion_after: str | None
    previous_champion: str | None
    metric: str
    margin: float
    delta: float | None
    reason: str
    user: str
    at: str
    reevaluated: bool = False
    eval_data: str | None = None
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    guards: dict[str, dict[str, Any]] = field(default_factory=dict)
    suite: str | None = None  # the evaluation suite the promotion was gated on
    suite_table: list[dict[str, Any]] = field(default_factory=list)  # member, champion, challenger, delta, verdict

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, default=str)


# ----------------------------------------------------------------------------------------- helpers


def _who_when() -> tuple[str, str]:
    return getpass.getuser(), datetime.now(UTC).isoformat(timespec="seconds")


def _check_store(tracker: Tracker) -> None:
    """A PromotionError (nothing created) when there is no tracking store yet."""
    if not tracker.store_exists():
        raise PromotionError(
            f"no tracking store at {tracker.uri}: nothing is registered yet; run `qaflow retrain` first"
        )


def _run_tags(tracker: Tracker, version: VersionRecord) -> dict[str, str]:
    return tracker.get_run(version.run_id).tags if version.run_id else {}


def eval_data_of(tracker: Tracker, version: VersionRecord, root: Path) -> tuple[str, Path | None]:
    """The id of the data a version's logged metrics were computed on, and that file where it is here."""

    data_version = version.tags.get(tag.DATA_VERSION) or _run_tags(tracker, version).get(tag.DATA_VERSION)
    if not data_version:
        return f"version:{version.version}", None  # unknown data: never equal to another version's
    snapshot = snapshot_dir(Path(root), data_version) / "eval.json"
    if snapshot.is_file():
        return f"sha256:{file_digest(snapshot)}", snapshot
    return f"data:{data_version}", None


def logged_scores(tracker: Tracker, version: VersionRecord, root: Path) -> Scored:
    """The metrics logged on a version's training run, with the id of their evaluation data."""
    metrics = tracker.get_run(version.run_id).metrics if version.run_id else {}
    eval_id, path = eval_data_of(tracker, version, root)
    return Scored(version.version, version.run_id, metrics, eval_id, str(path) if path else None)


def evaluated_scores(tracker: Tracker, version: VersionRecord, eval_path: Path, eval_id: str, out_dir: Path) -> Scored:
    """Re-score a registered version on `eval_path` (official EM/F1 via `evaluate_model`)."""

    dataset = load_dataset_file(eval_path)
    uri = f"models:/{version.model}/{version.version}"
    scores, _, _ = evaluate_model(tracker, uri, dataset, out_dir / f"v{version.version}")
    metrics = {k: float(v) for k, v in scores.items() if isinstance(v, int | float)}
    return Scored(version.version, version.run_id, metrics, eval_id, str(eval_path), source="evaluated")


def compare_scores(
    challenger: Scored, champion: Scored, *, metric: str = "f1", margin: float = 0.5,
    guards: tuple[str, ...] = DEFAULT_GUARDS, tolerance: float = 0.0,
) -> tuple[bool, float, str, dict[str, dict[str, Any]]]:  # fmt: skip
    """(promote?, delta, reason, guard report): `metric` must improve by >= margin, no guard may regress."""
    for side, scored in (("challenger", challenger), ("champion", champion)):
        if metric not in scored.metrics:
            raise PromotionError(f"{side} v{scored.version} has no '{metric}' metric to compare")
    new, old = challenger.metrics[metric], champion.metrics[metric]
    delta = new - old
    report: dict[str, dict[str, Any]] = {}
    for g in guards:
        if g in challenger.metrics and g in champion.metrics:
            change = challenger.metrics[g] - champion.metrics[g]
            report[g] = {"challenger": challenger.metrics[g], "champion": champion.metrics[g],
                         "change": change, "ok": change >= -tolerance}  # fmt: skip
        else:
            report[g] = {"ok": True, "skipped": "not reported by both versions"}
    head = f"{metric} {new:.2f} vs {old:.2f} (champion v{champion.version}): {delta:+.2f}"
    regressed = [f"{g} {r['change']:+.2f}" for g, r in report.items() if not r["ok"]]
    if delta < margin:
        return False, delta, f"{head} < margin {margin:.2f}; kept v{champion.version}", report
    if regressed:
        why = f"guarded metric(s) regressed beyond tolerance {tolerance:.2f}: {', '.join(regressed)}"
        return False, delta, f"{head} >= margin {margin:.2f} but {why}; kept v{champion.version}", report
    checked = [f"{g} {r['change']:+.2f}" for g, r in report.items() if "change" in r]
    guard_text = f"; guards ok ({', '.join(checked)})" if checked else ""
    return True, delta, f"{head} >= margin {margin:.2f}{guard_text}", report


def eval_metrics(metrics: dict[str, float], *keep: str) -> dict[str, float]:
    """The evaluation figures of a metrics dict (EM/F1, v2 HasAns/NoAns/best), plus `keep`."""
    wanted = {"exact_match", "exact", "f1", "total", *keep}
    return {k: v for k, v in metrics.items() if k in wanted or k.startswith(("HasAns_", "NoAns_", "best_"))}


def _tag_version(tracker: Tracker, version: str, prefix: str, values: dict[str, Any]) -> None:
    tracker.tag_version(version, {f"{prefix}.{key}": str(value)[:4900] for key, value in values.items()})


def switch_champion(tracker: Tracker, new: str, old: str | None) -> None:
    """`champion` → `new` first (never a moment without one), then `previous-champion` → `old`."""
    tracker.set_alias(CHAMPION, new)
    if old is not None and old != new:
        tracker.set_alias(PREVIOUS, old)


# ---------------------------------------------------------------------------------------- promotion


def promote(
    tracker: Tracker,
    cfg: QAFlowConfig,
    root: Path,
    *,
    margin: float = 0.5,
    guards: tuple[str, ...] = DEFAULT_GUARDS,
    tolerance: float = 0.0,
    metric: str = "f1",
    eval_data: Path | None = None,
    suite: str | None = None,
) -> Decision:
    """Compare `challenger` with `champion` and move `champion` if the challenger is better enough.

    With an evaluation suite (`suite`, else `evaluation.suite`), both are also scored on every member with their
    own recipes; a guarded member whose F1 drops by more than its margin refuses the promotion.
    """
    suite = suite or cfg.evaluation.suite
    _check_store(tracker)
    name = tracker.model_name
    user, at = _who_when()
    challenger = tracker.version_by_alias(CHALLENGER)
    if challenger is None:
        raise PromotionError(f"model '{name}' has no '{CHALLENGER}' version: run `qaflow retrain` first")
    members = resolve_suite(cfg, Path(root), suite) if suite else None  # bad suite files: before any model loads
    champion = tracker.version_by_alias(CHAMPION)
    base = {"model": name, "challenger": challenger.version, "metric": metric, "margin": margin,
            "user": user, "at": at}  # fmt: skip
    if champion is not None and champion.version == challenger.version:
        reason = f"challenger v{challenger.version} already is the champion"
        current = champion.version
        return Decision("noop", False, champion_before=current, champion_after=current,
                        previous_champion=_alias_version(tracker, PREVIOUS), delta=None, reason=reason,
                        **base)  # fmt: skip
    new = logged_scores(tracker, challenger, Path(root))
    if champion is None:
        if metric not in new.metrics:
            raise PromotionError(f"challenger v{challenger.version} has no '{metric}' metric: it was never scored")
        reason = f"no champion yet: first scored challenger v{new.version} ({metric} {new.metrics[metric]:.2f})"
        switch_champion(tracker, new.version, None)
        decision = Decision("first-champion", True, champion_before=None, champion_after=new.version,
                            previous_champion=None, delta=None, reason=reason, eval_data=new.eval_data,
                            scores={"challenger": eval_metrics(new.metrics, metric)}, **base)  # fmt: skip
        _record(tracker, new.version, decision)
        return decision
    old = logged_scores(tracker, champion, Path(root))
    reevaluated = False
    if new.eval_data != old.eval_data or eval_data is not None:
        new, old = _rescore(tracker, root, challenger, champion, new, eval_data)
        reevaluated = True
    ok, delta, reason, report = compare_scores(
        new, old, metric=metric, margin=margin, guards=guards, tolerance=tolerance
    )
    if reevaluated:
        reason += f" (both re-scored on {new.eval_data})"
    gate: list[GateRow] = []
    if members is not None:
        gate = _suite_gate(tracker, root, challenger, champion, *members)
        bad = regressed(gate)
        if bad:
            ok = False
            worst = ", ".join(f"{r.member} {r.delta:+.2f} (margin {r.margin:.2f})" for r in bad)
            reason += f"; suite {members[0]}: guarded member(s) regressed beyond their margin: {worst}"
            reason += "" if "kept v" in reason else f"; kept v{champion.version}"
        else:
            reason += f"; suite {members[0]}: no guarded member regressed"
    if ok:
        switch_champion(tracker, new.version, old.version)
    decision = Decision(
        "promote" if ok else "refuse", ok, champion_before=old.version,
        champion_after=new.version if ok else old.version, previous_champion=old.version if ok else
        _alias_version(tracker, PREVIOUS), delta=delta, reason=reason, reevaluated=reevaluated,
        eval_data=new.eval_data, scores={"challenger": eval_metrics(new.metrics, metric, *guards),
                                     "champion": eval_metrics(old.metrics, metric, *guards)}, guards=report,
        suite=suite, suite_table=[asdict(r) for r in gate], **base,
    )  # fmt: skip
    _record(tracker, new.version, decision)
    return decision


def _suite_gate(
    tracker: Tracker, root: Path, challenger: VersionRecord, champion: VersionRecord, suite: str,
    members: list[ResolvedMember],
) -> list[GateRow]:  # fmt: skip
    """Both versions scored on every suite member with their own recipes, compared member by member."""
    out = promote_dir(Path(root), f"suite-{suite}")
    scored = [
        score_registered(tracker, f"models:/{v.model}/{v.version}", suite, members, out / f"v{v.version}")
        for v in (challenger, champion)
    ]
    return gate_table(*scored)


def _rescore(
    tracker: Tracker, root: Path, challenger: VersionRecord, champion: VersionRecord, logged: Scored,
    eval_data: Path | None,
) -> tuple[Scored, Scored]:  # fmt: skip

    path = Path(eval_data) if eval_data is not None else (Path(logged.eval_path) if logged.eval_path else None)
    if path is None or not path.is_file():
        raise PromotionError(
            f"challenger v{challenger.version} and champion v{champion.version} were scored on different "
            f"evaluation data ({logged.eval_data} vs the champion's) and the challenger's eval file is not here "
            f"(expected {snapshots_dir(Path(root))}/<data version>/eval.json); pass --eval-data FILE"
        )
    eval_id = f"sha256:{file_digest(path)}"
    out = promote_dir(Path(root), eval_id.split(":")[1])
    return (
        evaluated_scores(tracker, challenger, path, eval_id, out),
        evaluated_scores(tracker, champion, path, eval_id, out),
    )


def _alias_version(tracker: Tracker, alias: str) -> str | None:
    found = tracker.version_by_alias(alias)
    return found.version if found is not None else None


def _record(tracker: Tracker, version: str, decision: Decision) -> None:
    values = {"decision": decision.action, "by": decision.user, "at": decision.at, "reason": decision.reason}
    if decision.suite_table:
        values["suite"] = json.dumps({"suite": decision.suite, "table": decision.suite_table})
    _tag_version(tracker, version, tag.PROMOTION, values)


def rollback(tracker: Tracker) -> Decision:
    """Point `champion` back at `previous-champion` (champion first), then drop the `previous-champion` alias."""
    _check_store(tracker)
    name = tracker.model_name
    user, at = _who_when()
    previous = tracker.version_by_alias(PREVIOUS)
    if previous is None:
        raise PromotionError(f"model '{name}' has no '{PREVIOUS}' version to roll back to")
    current = _alias_version(tracker, CHAMPION)
    prev = previous.version
    tracker.set_alias(CHAMPION, prev)
    tracker.delete_alias(PREVIOUS)
    reason = f"rollback: champion v{current} replaced by previous champion v{prev}"
    decision = Decision(
        "rollback", True, model=name, challenger=_alias_version(tracker, CHALLENGER), champion_before=current,
        champion_after=prev, previous_champion=None, metric="", margin=0.0, delta=None, reason=reason, user=user, at=at,
    )  # fmt: skip
    info = {"by": user, "at": at, "reason": reason}
    _tag_version(tracker, prev, tag.ROLLBACK, {**info, "restored": "true"})
    if current is not None and current != prev:
        _tag_version(tracker, current, tag.ROLLBACK, {**info, "demoted": "true"})
    return decision


# ---------------------------------------------------------------------------------------- skip rule


def champion_unchanged(tracker: Tracker, data_version: str, key: str) -> str | None:
    """The reason to skip a (scheduled) retrain when the champion was trained on this data with these params.

    Compares `key`, the run key of (`data_version`, the model parameters), with the champion's run key
    (model-version tag, else its run's tag). None when there is no champion or anything differs.
    """

    if not tracker.store_exists():
        return None  # nothing tracked yet: no champion
    champion = tracker.version_by_alias(CHAMPION)
    if champion is None:
        return None
    champion_key = champion.tags.get(tag.RUN_KEY) or _run_tags(tracker, champion).get(tag.RUN_KEY)
    if champion_key != key:
        return None
    return (
        f"data version {data_version} and parameters unchanged since champion v{champion.version} was trained "
        f"(run {champion.run_id}, key {key})"
    )
