"""Scoring two versions on the same evaluation data: their logged metrics with the id of that data, a re-score
on the challenger's data where the two differ, and the comparison (`metric` improves by the margin, no guarded
metric regresses beyond the tolerance)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.data import load_dataset_file
from tasks.core.io import file_digest
from tasks.core.layout import promote_dir, snapshots_dir
from tasks.pipeline.evaluation import evaluate_model
from tasks.pipeline.promote.decision import PromotionError
from tasks.pipeline.standings import eval_data_of
from tasks.tracking.records import VersionRecord
from tasks.tracking.tracker import Tracker

DEFAULT_GUARDS = ("HasAns_f1", "NoAns_f1")


@dataclass
class Scored:
    """One model version's metrics on one evaluation data set."""

    version: str
    run_id: str | None
    metrics: dict[str, float]
    eval_data: str  # "sha256:<12 hex>" of the eval file, or "data:<data version>"
    eval_path: str | None = None
    source: str = "run"  # "run" (logged metrics) | "evaluated" (re-scored here)


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


def rescore(
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
