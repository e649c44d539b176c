"""The registered versions side by side: their logged scores, evaluation data and aliases.

Registration labels each version (`label_version`): its EM/F1 (and v2 HasAns/NoAns) and data version as version
tags, and a one-line description, so the registry page shows which version is better. Promotion reads the same
standings (`standings`) to refuse a challenger that another registered version beats on the same evaluation data,
and prints them (`format_standings`) when it refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from tasks.core.io import file_digest
from tasks.core.layout import snapshot_dir
from tasks.tracking import tags as tag
from tasks.tracking.records import VersionRecord
from tasks.tracking.tracker import Tracker

LABELLED_SCORES = ("exact_match", "exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1")


@dataclass(frozen=True)
class Standing:
    """One registered version: its aliases, data version, the id of its evaluation data, its logged scores, and
    whether a rollback demoted it (then it is shown, but no longer held against a challenger)."""

    version: str
    aliases: tuple[str, ...]
    data_version: str | None
    eval_data: str
    metrics: dict[str, float] = field(default_factory=dict)
    demoted: bool = False

    @property
    def exact_match(self) -> float | None:
        return self.metrics.get("exact_match", self.metrics.get("exact"))


def _run_tags(tracker: Tracker, version: VersionRecord) -> dict[str, str]:
    return tracker.get_run(version.run_id).tags if version.run_id else {}


def eval_data_of(tracker: Tracker, version: VersionRecord, root: Path) -> tuple[str, Path | None]:
    """The id of the data a version's logged metrics were computed on, and that file where it is here.

    The sha256 (12 hex) of the retrain flow's `outputs/data/<data version>/eval.json` where that file is on this
    machine, else the data version itself; a version with no data version is comparable to no other."""
    data_version = version.tags.get(tag.DATA_VERSION) or _run_tags(tracker, version).get(tag.DATA_VERSION)
    if not data_version:
        return f"version:{version.version}", None  # unknown data: never equal to another version's
    snapshot = snapshot_dir(Path(root), data_version) / "eval.json"
    if snapshot.is_file():
        return f"sha256:{file_digest(snapshot)}", snapshot
    return f"data:{data_version}", None


def _scores(tracker: Tracker, version: VersionRecord) -> dict[str, float]:
    """The version's logged run metrics; its score tags where it has no run."""
    if version.run_id:
        return tracker.get_run(version.run_id).metrics
    prefix = f"{tag.SCORE}."
    return {k[len(prefix) :]: float(v) for k, v in version.tags.items() if k.startswith(prefix)}


def standings(tracker: Tracker, root: Path) -> list[Standing]:
    """Every registered version of the tracker's model, oldest first."""
    rows = []
    for version in tracker.versions():
        eval_data, _ = eval_data_of(tracker, version, root)
        data_version = version.tags.get(tag.DATA_VERSION) or _run_tags(tracker, version).get(tag.DATA_VERSION)
        demoted = version.tags.get(f"{tag.ROLLBACK}.demoted") == "true"
        rows.append(Standing(version.version, version.aliases, data_version, eval_data, _scores(tracker, version),
                             demoted))  # fmt: skip
    return rows


def better_versions(rows: list[Standing], version: str, eval_data: str, score: float, metric: str,
                    exclude: tuple[str, ...] = ()) -> list[Standing]:  # fmt: skip
    """The versions (other than `version`, `exclude` and those a rollback demoted) scored on `eval_data` whose
    `metric` beats `score`, best first."""
    better = [
        r for r in rows
        if r.version != version and r.version not in exclude and not r.demoted and r.eval_data == eval_data
        and metric in r.metrics and r.metrics[metric] > score
    ]  # fmt: skip
    return sorted(better, key=lambda r: r.metrics[metric], reverse=True)


def format_standings(rows: list[Standing]) -> str:
    """A plain-text table: version, aliases, data version, EM, F1."""

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    header = ("version", "aliases", "data version", "EM", "F1")
    body = [(f"v{r.version}", ", ".join((*r.aliases, *(["rolled back"] if r.demoted else []))) or "-",
             r.data_version or "-", number(r.exact_match), number(r.metrics.get("f1"))) for r in rows]  # fmt: skip
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    right = {3, 4}

    def line(row: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join([line(header), *(line(row) for row in body)]).rstrip()


def describe(model: str | None, family: str | None, data_version: str | None, scores: dict[str, float],
             day: str) -> str:  # fmt: skip
    """One line: `minilm extractive, data 3f2a..., EM 34.00 F1 43.35, trained 2025-05-01`."""
    what = " ".join(p for p in (Path(model).name if model else None, family) if p) or "model"
    em = scores.get("exact_match", scores.get("exact"))
    figures = " ".join(f"{name} {value:.2f}" for name, value in (("EM", em), ("F1", scores.get("f1")))
                       if value is not None)  # fmt: skip
    parts = [what, f"data {data_version}" if data_version else "data unknown", figures or "not scored"]
    return ", ".join([*parts, f"trained {day}"])


def label_version(tracker: Tracker, version: str, run_id: str) -> str:
    """Tag a freshly registered version with its run's scores and data version, describe it in one line; the
    description. Labelling again (a restarted flow) writes the same tags."""
    run = tracker.get_run(run_id)
    scores = {k: float(run.metrics[k]) for k in LABELLED_SCORES if k in run.metrics}
    data_version = run.tags.get(tag.DATA_VERSION)
    tags = {f"{tag.SCORE}.{k}": f"{v:.4f}" for k, v in scores.items()}
    if data_version:
        tags[tag.DATA_VERSION] = data_version
    tracker.tag_version(version, tags)
    day = datetime.now(UTC).date().isoformat()
    text = describe(run.tags.get(tag.MODEL), run.tags.get(tag.FAMILY), data_version, scores, day)
    tracker.describe_version(version, text)
    return text


ALIAS_HINTS = {"champion": "run `qaflow promote` first", "challenger": "run `qaflow retrain` first"}


def require_model(tracker: Tracker, model_uri: str) -> None:
    """A `models:/name@alias` URI whose store or alias is missing fails here, in one line that says what to run
    (checked before any model or flow starts); other URIs are left to the loader."""
    if not model_uri.startswith("models:/") or "@" not in model_uri:
        return
    name, alias = model_uri[len("models:/") :].split("@", 1)
    hint = ALIAS_HINTS.get(alias, f"point it at a version with `mlflow` or `qaflow promote` (model {name})")
    if not tracker.store_exists():
        raise ValueError(f"{model_uri}: no tracking store at {tracker.uri}: run `qaflow retrain` first")
    named = Tracker(tracker.uri, tracker.experiment_name, name, tracker.artifacts)
    if named.version_by_alias(alias) is None:
        raise ValueError(f"alias '{alias}' of model '{name}' not found: {hint}")
