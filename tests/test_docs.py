"""The docs stay true: the generated module table matches the code, ARCHITECTURE.md stays short, and every file or
folder the docs name exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "ARCHITECTURE.md", REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# A repository path in backticks: `tasks/core/data.py`, `flows/`, `dvc.yaml`, `benchmarks/gpu_suite.sh`.
TOP = "tasks|flows|tests|benchmarks|scripts|docs|deploy|data"
PATH_IN_TICKS = re.compile(rf"`((?:{TOP})/[\w./-]*|[\w-]+\.(?:yaml|toml))`")


def test_the_module_table_is_generated_from_the_current_code() -> None:
    check = [sys.executable, "scripts/module_map.py", "--check"]
    done = subprocess.run(check, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


MAX_MODULE_LINES = 400


def test_no_module_outgrows_one_sitting() -> None:
    """Issue 22's bound: a module over 400 lines is split along its seams, not left to grow."""
    sources = [p for top in ("flows", "tasks") for p in (REPO / top).rglob("*.py")]
    sizes = {p.relative_to(REPO).as_posix(): len(p.read_text(encoding="utf-8").splitlines()) for p in sources}
    long = {path: n for path, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_architecture_stays_a_short_read() -> None:
    size = len((REPO / "ARCHITECTURE.md").read_bytes())
    assert size <= 12 * 1024, f"ARCHITECTURE.md is {size} bytes: move detail to docs/ or the generated table"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_path_a_doc_names_exists(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    named = {m.group(1).rstrip(".") for m in PATH_IN_TICKS.finditer(text)}
    exists = [p for p in named if (REPO / p).exists() or (REPO / f"{p}.py").exists()]  # a module may drop `.py`
    missing = sorted(p for p in named - set(exists) if "*" not in p and "<" not in p)
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"
