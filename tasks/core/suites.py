"""Evaluation-suite members resolved and checked (`evaluation.suites` in params.yaml): cheap, before any model.

Each member's file must exist and load; where the suite pins `version`, the file must have that content id
(`tasks.core.io.file_digest`). Errors are one `DataError` line naming the parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tasks.core.config import QAFlowConfig, SuiteMember
from tasks.core.data import DataError, QADataset, load_dataset_file
from tasks.core.io import file_digest


@dataclass(frozen=True)
class ResolvedMember:
    """A suite member with its file, content id and loaded data."""

    member: SuiteMember
    path: Path
    sha256: str
    dataset: QADataset


def resolve_suite(cfg: QAFlowConfig, root: Path, name: str | None = None) -> tuple[str, list[ResolvedMember]]:
    """The suite's members, each file checked and loaded (DataError naming the parameter); no model is touched."""
    name = name or cfg.evaluation.suite
    if not name:
        raise DataError("evaluation.suite: no suite named (set evaluation.suite or pass --suite NAME)")
    if name not in cfg.evaluation.suites:
        known = ", ".join(cfg.evaluation.suites) or "none defined"
        raise DataError(f"--suite {name}: not a suite in evaluation.suites ({known})")
    resolved = []
    for member in cfg.evaluation.suites[name]:
        where = f"evaluation.suites.{name}.{member.name}"
        path = Path(member.data) if Path(member.data).is_absolute() else Path(root) / member.data
        if not path.is_file():
            raise DataError(f"{where}.data: {path} is not a file")
        digest = file_digest(path)
        if member.version is not None and digest != member.version:
            raise DataError(f"{where}.version: {path} has content id {digest}, not {member.version}")
        resolved.append(ResolvedMember(member, path, digest, load_dataset_file(path)))
    return name, resolved
