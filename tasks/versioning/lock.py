"""The data version, read from `dvc.lock` alone (no DVC import): per-stage output and dependency hashes, params,
and one short id over the output hashes."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.safe_yaml import YAMLInputError, read_yaml
from tasks.versioning.errors import VersioningError

LOCK_FILE = "dvc.lock"


@dataclass(frozen=True)
class StageVersion:
    """One stage in `dvc.lock`: output and dependency hashes (md5, `.dir` for directories) and its params."""

    name: str
    outs: dict[str, str]
    deps: dict[str, str]
    params: dict[str, Any]  # flattened: "features.doc_stride" -> 128


@dataclass(frozen=True)
class DataVersion:
    """The data version of a reproduced pipeline: per-stage hashes and params plus one short combined id."""

    id: str
    stages: dict[str, StageVersion]

    @property
    def outs(self) -> dict[str, str]:
        return {path: md5 for stage in self.stages.values() for path, md5 in stage.outs.items()}

    def as_tags(self) -> dict[str, str]:
        """Flat string tags for a tracking run: `data_version` plus `dvc.<out path>` -> md5."""
        return {"data_version": self.id, **{f"dvc.{path}": md5 for path, md5 in sorted(self.outs.items())}}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def read_lock_stages(root: Path) -> dict[str, Any]:
    path = root / LOCK_FILE
    if not path.exists():
        raise VersioningError(f"{path} not found: run the pipeline first (`dvc repro` or `qaflow` data stages)")
    try:
        lock = read_yaml(path) or {}
    except YAMLInputError as exc:
        raise VersioningError(str(exc)) from None
    stages = lock.get("stages") if isinstance(lock, dict) else None
    if not isinstance(stages, dict) or not stages:
        raise VersioningError(f"{path}: no stages recorded: run the pipeline first")
    return stages


def lock_or_empty(root: Path) -> dict[str, Any]:
    try:
        return read_lock_stages(root)
    except VersioningError:
        return {}


def _hashes(entries: list[dict[str, Any]] | None) -> dict[str, str]:
    return {str(e["path"]): str(e.get("md5") or e.get("hash") or "") for e in entries or []}


def combined_id(outs: dict[str, str]) -> str:
    """First 12 hex digits of sha256 over the sorted `path md5` lines of the outputs."""
    text = "".join(f"{path} {md5}\n" for path, md5 in sorted(outs.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def data_version(root: Path) -> DataVersion:
    """The data version recorded in `root/dvc.lock` (no DVC needed): per-stage hashes, params and a combined id."""
    root = Path(root)
    stages: dict[str, StageVersion] = {}
    for name, entry in read_lock_stages(root).items():
        params = {k: v for f in (entry.get("params") or {}).values() for k, v in flatten(f).items()}
        stages[name] = StageVersion(name, _hashes(entry.get("outs")), _hashes(entry.get("deps")), params)
    outs = {path: md5 for stage in stages.values() for path, md5 in stage.outs.items()}
    if not outs:
        raise VersioningError(f"{root / LOCK_FILE}: no stage outputs recorded: run the pipeline first")
    missing = [path for path, md5 in outs.items() if not md5]
    if missing:
        raise VersioningError(f"{root / LOCK_FILE}: outputs without a hash {missing}: run the pipeline again")
    return DataVersion(combined_id(outs), stages)
