"""`promote`: the challenger against the champion (re-scored on one evaluation data set where needed), every
other registered version on that data (the best known wins), the evaluation suite's gate, and `force`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from tasks.core.config import QAFlowConfig
from tasks.core.layout import promote_dir
from tasks.core.suites import ResolvedMember, resolve_suite
from tasks.pipeline.promote.decision import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    Decision,
    PromotionError,
    alias_version,
    check_store,
    record_decision,
    switch_champion,
    who_when,
)
from tasks.pipeline.promote.scores import DEFAULT_GUARDS, Scored, compare_scores, eval_metrics, logged_scores, rescore
from tasks.pipeline.standings import Standing, better_versions, standings
from tasks.pipeline.suites import GateRow, gate_table, regressed, score_registered
from tasks.tracking.records import VersionRecord
from tasks.tracking.tracker import Tracker


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
    force: bool = False,
) -> Decision:
    """Compare `challenger` with `champion` (and every other registered version on its evaluation data) and move
    `champion` if the challenger is better enough; `force` moves it whatever the comparison says.

    With an evaluation suite (`suite`, else `evaluation.suite`), both are also scored on every member with their
    own recipes; a guarded member whose F1 drops by more than its margin refuses the promotion.
    """
    suite = suite or cfg.evaluation.suite
    check_store(tracker)
    name = tracker.model_name
    user, at = who_when()
    challenger = tracker.version_by_alias(CHALLENGER)
    if challenger is None:
        raise PromotionError(f"model '{name}' has no '{CHALLENGER}' version: run `qaflow retrain` first")
    members = resolve_suite(cfg, Path(root), suite) if suite else None  # bad suite files: before any model loads
    champion = tracker.version_by_alias(CHAMPION)
    known = standings(tracker, Path(root))
    base = {"model": name, "challenger": challenger.version, "metric": metric, "margin": margin,
            "user": user, "at": at, "standings": [_standing_row(r, metric) for r in known]}  # fmt: skip
    if champion is not None and champion.version == challenger.version:
        reason = f"challenger v{challenger.version} already is the champion"
        current = champion.version
        return Decision("noop", False, champion_before=current, champion_after=current,
                        previous_champion=alias_version(tracker, PREVIOUS), delta=None, reason=reason,
                        **base)  # fmt: skip
    new = logged_scores(tracker, challenger, Path(root))
    if champion is None and metric not in new.metrics:
        raise PromotionError(f"challenger v{challenger.version} has no '{metric}' metric: it was never scored")
    beaten_by = _beaten_by(known, new, metric, champion) if metric in new.metrics else None
    if champion is None:
        return _first_champion(tracker, new, metric, beaten_by, force, base)
    old = logged_scores(tracker, champion, Path(root))
    reevaluated = False
    if new.eval_data != old.eval_data or eval_data is not None:
        new, old = rescore(tracker, root, challenger, champion, new, eval_data)
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
    if beaten_by:
        ok = False
        reason += f"; {beaten_by}" + ("" if "kept v" in reason else f"; kept v{champion.version}")
    forced = None
    if not ok and force:
        ok, forced, reason = True, reason, f"promoted with --force although refused: {reason}"
    if ok:
        switch_champion(tracker, new.version, old.version)
    decision = Decision(
        "promote" if ok else "refuse", ok, champion_before=old.version,
        champion_after=new.version if ok else old.version, previous_champion=old.version if ok else
        alias_version(tracker, PREVIOUS), delta=delta, reason=reason, reevaluated=reevaluated,
        eval_data=new.eval_data, scores={"challenger": eval_metrics(new.metrics, metric, *guards),
                                     "champion": eval_metrics(old.metrics, metric, *guards)}, guards=report,
        suite=suite, suite_table=[asdict(r) for r in gate], forced=forced, **base,
    )  # fmt: skip
    record_decision(tracker, new.version, decision)
    return decision


def _standing_row(row: Standing, metric: str) -> dict[str, Any]:
    return {**asdict(row), "metrics": eval_metrics(row.metrics, metric)}


def _beaten_by(known: list[Standing], new: Scored, metric: str, champion: VersionRecord | None) -> str | None:
    """Why the challenger is not the best known: the best other version (not the champion, which the margin rule
    compares) with a higher logged `metric` on the same evaluation data; None when there is none."""
    exclude = (champion.version,) if champion is not None else ()
    score = new.metrics[metric]
    better = better_versions(known, new.version, new.eval_data, score, metric, exclude)
    if not better:
        return None
    best = better[0]
    others = f" (and {len(better) - 1} more)" if len(better) > 1 else ""
    return (f"v{best.version} scores {metric} {best.metrics[metric]:.2f} > {score:.2f} (challenger "
            f"v{new.version}) on the same evaluation data ({new.eval_data}){others}")  # fmt: skip


def _first_champion(
    tracker: Tracker, new: Scored, metric: str, beaten_by: str | None, force: bool, base: dict[str, Any]
) -> Decision:
    """No champion yet: the challenger becomes the first one if no registered version beats it (or `force`)."""
    score = f"{metric} {new.metrics[metric]:.2f}"
    scores = {"challenger": eval_metrics(new.metrics, metric)}
    if beaten_by and not force:
        reason = f"no champion yet, but {beaten_by}; challenger v{new.version} not promoted (--force promotes it)"
        decision = Decision("refuse", False, champion_before=None, champion_after=None, previous_champion=None,
                            delta=None, reason=reason, eval_data=new.eval_data, scores=scores, **base)  # fmt: skip
        record_decision(tracker, new.version, decision)
        return decision
    if beaten_by:
        reason = f"no champion yet: challenger v{new.version} ({score}) promoted with --force although {beaten_by}"
    else:
        reason = (f"no champion yet: challenger v{new.version} ({score}) is the best registered version on its "
                  "evaluation data")  # fmt: skip
    switch_champion(tracker, new.version, None)
    decision = Decision("first-champion", True, champion_before=None, champion_after=new.version,
                        previous_champion=None, delta=None, reason=reason, eval_data=new.eval_data, scores=scores,
                        forced=beaten_by, **base)  # fmt: skip
    record_decision(tracker, new.version, decision)
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
