"""The decision record and the registry aliases it moves: `Decision` (what was decided and why), who and when,
the `qaflow.promotion.*` version tags, and the champion switch that never leaves the model without one."""

from __future__ import annotations

import getpass
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from tasks.tracking import tags as tag
from tasks.tracking.tracker import Tracker

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous-champion"


class PromotionError(ValueError):
    """Promotion cannot be decided or carried out; the message says what is missing."""


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
    forced: str | None = None  # the refusal `force` overrode
    standings: list[dict[str, Any]] = field(default_factory=list)  # every registered version: aliases, data, scores

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, default=str)


def who_when() -> tuple[str, str]:
    return getpass.getuser(), datetime.now(UTC).isoformat(timespec="seconds")


def check_store(tracker: Tracker) -> None:
    """A PromotionError (nothing created) when there is no tracking store yet."""
    if not tracker.store_exists():
        raise PromotionError(
            f"no tracking store at {tracker.uri}: nothing is registered yet; run `qaflow retrain` first"
        )


def tag_version(tracker: Tracker, version: str, prefix: str, values: dict[str, Any]) -> None:
    tracker.tag_version(version, {f"{prefix}.{key}": str(value)[:4900] for key, value in values.items()})


def switch_champion(tracker: Tracker, new: str, old: str | None) -> None:
    """`champion` → `new` first (never a moment without one), then `previous-champion` → `old`."""
    tracker.set_alias(CHAMPION, new)
    if old is not None and old != new:
        tracker.set_alias(PREVIOUS, old)


def alias_version(tracker: Tracker, alias: str) -> str | None:
    found = tracker.version_by_alias(alias)
    return found.version if found is not None else None


def record_decision(tracker: Tracker, version: str, decision: Decision) -> None:
    values = {"decision": decision.action, "by": decision.user, "at": decision.at, "reason": decision.reason}
    if decision.forced:
        values["forced"] = decision.forced
    if decision.suite_table:
        values["suite"] = json.dumps({"suite": decision.suite, "table": decision.suite_table})
    tag_version(tracker, version, tag.PROMOTION, values)
