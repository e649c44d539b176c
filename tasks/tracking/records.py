"""What a tracker reads back, as plain records: a run and a registered model version (no tracking library types)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RunRecord:
    """One tracked run: its id, experiment, name, status (RUNNING | FINISHED | FAILED | KILLED) and its latest
    tags, params and metric values."""

    run_id: str
    experiment_id: str
    name: str
    status: str
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionRecord:
    """One version of a registered model: the run and artifact it came from, its tags and aliases."""

    model: str
    version: str
    run_id: str | None
    source: str
    tags: dict[str, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
