"""The house rules that code review alone would miss: the import contract, own imports at the top, DVC deps."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# Own-module imports inside functions, each with its reason. Nothing else may import our modules late.
LATE_OWN_IMPORTS = {
    "flows/cli.py": "each subcommand imports its step when it runs: `qaflow --help` / `score` start without torch",
    "flows/cli_ops.py": "same as flows/cli.py for the operations subcommands",
}
# The modules whose code runs in each DVC stage (the `cmd` is `python -m flows.cli stage <name>`).
STAGE_BODIES = {"prepare": "tasks.pipeline.stages", "featurize": "tasks.pipeline.stages"}


def _python_files() -> list[Path]:
    return sorted(p for top in ("tasks", "flows") for p in (REPO / top).rglob("*.py"))


def test_import_contract_holds() -> None:
    """`lint-imports` (layers + acyclic siblings from pyproject.toml) passes."""
    exe = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(exe)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_own_modules_are_imported_at_the_top() -> None:
    late: list[str] = []
    for path in _python_files():
        rel = path.relative_to(REPO).as_posix()
        if rel in LATE_OWN_IMPORTS:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom) and (sub.module or "").split(".")[0] in ("tasks", "flows"):
                    late.append(f"{rel}:{sub.lineno} from {sub.module}")
    assert not late, "own-module imports inside functions (move them to the top): " + "; ".join(late)


def test_no_import_cycles_among_our_modules() -> None:
    graph = grimp.build_graph("tasks", "flows")
    cycles = [
        f"{a} <-> {b}"
        for a in sorted(graph.modules)
        for b in graph.find_modules_directly_imported_by(a)
        if a != b and graph.chain_exists(importer=b, imported=a)
    ]
    assert not cycles, cycles


@pytest.mark.parametrize("stage", sorted(STAGE_BODIES))
def test_dvc_stage_deps_cover_every_module_the_stage_imports(stage: str) -> None:
    graph = grimp.build_graph("tasks", "flows")
    body = STAGE_BODIES[stage]
    modules = {body} | graph.find_upstream_modules(body)
    files = set()
    for name in modules:
        base = REPO / Path(*name.split("."))
        files.add((base / "__init__.py" if base.is_dir() else base.with_suffix(".py")).relative_to(REPO).as_posix())
    files = {f for f in files if (REPO / f).stat().st_size > 0 or not f.endswith("__init__.py")}
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    deps = set(stages[stage]["deps"])
    missing = sorted(files - deps)
    assert not missing, f"dvc.yaml stage {stage!r} lacks deps on modules its body imports: {missing}"
    produced = {out for s in stages.values() for out in s.get("outs", [])}
    stale = [d for d in deps if not d.startswith("${") and d not in produced and not (REPO / d).exists()]
    assert not stale, f"dvc.yaml stage {stage!r} lists deps that do not exist: {stale}"


def test_cli_parser_loads_no_heavy_library() -> None:
    """Why flows/cli.py may import late: building the parser (`qaflow --help`, `qaflow score`) stays light."""
    code = (
        "import sys; from flows.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'prefect', 'mlflow', 'dvc') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
