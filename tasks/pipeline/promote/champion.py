"""The champion after the fact: `rollback` to the previous champion (tagged `qaflow.rollback.*`), and the skip
rule (the champion was trained on this data with these parameters)."""

from __future__ import annotations

from tasks.pipeline.promote.decision import (
    CHALLENGER,
    CHAMPION,
    PREVIOUS,
    Decision,
    PromotionError,
    alias_version,
    check_store,
    tag_version,
    who_when,
)
from tasks.tracking import tags as tag
from tasks.tracking.records import VersionRecord
from tasks.tracking.tracker import Tracker


def _run_tags(tracker: Tracker, version: VersionRecord) -> dict[str, str]:
    return tracker.get_run(version.run_id).tags if version.run_id else {}


def rollback(tracker: Tracker) -> Decision:
    """Point `champion` back at `previous-champion` (champion first), then drop the `previous-champion` alias."""
    check_store(tracker)
    name = tracker.model_name
    user, at = who_when()
    previous = tracker.version_by_alias(PREVIOUS)
    if previous is None:
        raise PromotionError(f"model '{name}' has no '{PREVIOUS}' version to roll back to")
    current = alias_version(tracker, CHAMPION)
    prev = previous.version
    tracker.set_alias(CHAMPION, prev)
    tracker.delete_alias(PREVIOUS)
    reason = f"rollback: champion v{current} replaced by previous champion v{prev}"
    decision = Decision(
        "rollback", True, model=name, challenger=alias_version(tracker, CHALLENGER), champion_before=current,
        champion_after=prev, previous_champion=None, metric="", margin=0.0, delta=None, reason=reason, user=user, at=at,
    )  # fmt: skip
    info = {"by": user, "at": at, "reason": reason}
    tag_version(tracker, prev, tag.ROLLBACK, {**info, "restored": "true"})
    if current is not None and current != prev:
        tag_version(tracker, current, tag.ROLLBACK, {**info, "demoted": "true"})
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
