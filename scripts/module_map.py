"""Write docs/modules.md, the module table generated from the code: each module of `tasks/` and `flows/`, its size,
its job (its docstring's first sentence) and the modules of ours it imports.

    .venv/bin/python scripts/module_map.py          # rewrite docs/modules.md
    .venv/bin/python scripts/module_map.py --check  # exit 1 if docs/modules.md is stale (tests/test_docs.py does this)

No hand-kept import lists: a docstring or an import that changes changes the table.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "docs" / "modules.md"
PACKAGES = ("flows", "tasks")
HEADER = """# Module map

Generated from the code by `scripts/module_map.py` (do not edit; `tests/test_docs.py` fails when it is stale).
"Job" is the module docstring's first sentence; "imports" are the modules of ours it imports (late imports in
*italics*), without the `tasks.` prefix. ARCHITECTURE.md explains the layers and seams this table sits in.
"""


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def first_sentence(tree: ast.Module) -> str:
    doc = " ".join((ast.get_docstring(tree) or "").split())
    end = doc.find(". ")
    sentence = doc if end < 0 else doc[: end + 1]
    return sentence.replace("|", "\\|")


def own_imports(tree: ast.Module, package: str) -> tuple[list[str], list[str]]:
    """(top-level, inside functions) imports of our packages, as module names."""
    top: set[str] = set()
    late: set[str] = set()
    functions = {id(sub) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                 for sub in ast.walk(node)}  # fmt: skip
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [base]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name.split(".")[0] in PACKAGES:
                (late if id(node) in functions else top).add(name)
    return sorted(top), sorted(late - top)


def short(name: str) -> str:
    return name.removeprefix("tasks.")


def render() -> str:
    lines = [HEADER]
    files = sorted(p for top in PACKAGES for p in (REPO / top).rglob("*.py") if "__pycache__" not in p.parts)
    current = None
    for path in files:
        folder = path.parent.relative_to(REPO).as_posix()
        if folder != current:
            current = folder
            lines += ["", f"## {folder}/", "", "| module | job | imports |", "|---|---|---|"]
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        top, late = own_imports(tree, package)
        imports = ", ".join([short(m) for m in top] + [f"*{short(m)}*" for m in late])
        lines.append(f"| `{path.name}` | {first_sentence(tree)} | {imports} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if the file differs from the code")
    a = ap.parse_args()
    table = render()
    if a.check:
        stale = not TABLE.exists() or TABLE.read_text(encoding="utf-8") != table
        if stale:
            print(f"{TABLE.relative_to(REPO)} is stale: run .venv/bin/python scripts/module_map.py", file=sys.stderr)
        return int(stale)
    TABLE.parent.mkdir(exist_ok=True)
    TABLE.write_text(table, encoding="utf-8")
    print(f"wrote {TABLE.relative_to(REPO)} ({len(table)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
