"""Where a run comes from: the git state of the code (commit, branch, dirty), qaflow's standard run tags, and the
environment (interpreter, library versions, hardware, `pip freeze`) logged with each run."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from tasks.tracking import tags as tag


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout


def git_commit(root: Path) -> str | None:
    """HEAD's commit hash in `root`, or None outside a git repository / before the first commit."""
    commit = (_git(root, "rev-parse", "HEAD") or "").strip()
    return commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None


def git_tags(root: Path) -> dict[str, str]:
    """The code a run ran: commit and branch (MLflow's own `mlflow.source.git.*` tags) and whether the working
    tree had uncommitted changes (`qaflow.git_dirty`: true | false). Empty outside a git repository."""
    commit = git_commit(root)
    if commit is None:
        return {}
    tags = {tag.GIT_COMMIT: commit}
    branch = (_git(root, "rev-parse", "--abbrev-ref", "HEAD") or "").strip()
    if branch and branch != "HEAD":  # "HEAD": detached, no branch
        tags[tag.GIT_BRANCH] = branch
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    if status is not None:
        tags[tag.GIT_DIRTY] = str(bool(status.strip())).lower()
    return tags


def run_tags(
    *,
    data_version: str | None = None,
    backend: str | None = None,
    device: str | None = None,
    run_key: str | None = None,
    root: Path | None = None,
) -> dict[str, str]:
    """Standard qaflow tags plus the git state of `root` (`git_tags`)."""
    tags = {
        tag.DATA_VERSION: data_version,
        tag.BACKEND: backend,
        tag.DEVICE: device,
        tag.RUN_KEY: run_key,
        **(git_tags(root) if root is not None else {}),
    }
    return {k: str(v)[:MAX_TAG_VAL_LENGTH] for k, v in tags.items() if v is not None}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def requirements_text() -> str:
    """`pip freeze` of this interpreter; falls back to the installed distributions if pip is unavailable."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True, timeout=60, check=True
        )
        return out.stdout
    except (OSError, subprocess.SubprocessError):
        dists = {f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions()}
        return "\n".join(sorted(dists, key=str.lower)) + "\n"


def environment_info(device: str | None = None) -> dict[str, Any]:
    """Interpreter, library versions and hardware of this process."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": _version("torch"),
        "transformers": _version("transformers"),
        "tokenizers": _version("tokenizers"),
        "mlflow": _version("mlflow"),
        "device": device,
        "cpu_count": cpus,
        "processor": platform.processor() or platform.machine(),
    }


def log_environment(client: MlflowClient, run_id: str, device: str | None = None) -> None:
    """`environment.json` and `requirements.txt` (pip freeze) under the run's `environment/` artifacts."""
    client.log_dict(run_id, environment_info(device), "environment/environment.json")
    client.log_text(run_id, requirements_text(), "environment/requirements.txt")
