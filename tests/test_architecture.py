"""The house rules that code review alone would miss: the import contract, own imports at the top, DVC deps (exactly
each stage's imports), light commands (no torch, no transformers)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import grimp
import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

# Own-module imports inside functions, each with its reason. Nothing else may import our modules late.
LATE_OWN_IMPORTS = {
    "flows/cli.py": "a flow command imports Prefect only when it runs: `qaflow --help` / `score` start without it",
    **{
        f"flows/commands/{p.name}": "each subcommand imports its step when it runs: `qaflow --help` / `score` start "
        "without torch"
        for p in (REPO / "flows/commands").glob("*.py")
    },
    "tasks/pipeline/inspect.py": "`data inspect` needs transformers (and torch) only for a tokenizer lacking its .json",
    "tasks/tracking/tracker.py": "only training asks for the live-metrics Trainer callback; `compare` holds a Tracker",
}
# The module each DVC stage runs (its `cmd` is `python -m <module> ...`): its import closure is the stage's code.
STAGE_BODIES = {"prepare": "tasks.pipeline.stages", "featurize": "tasks.pipeline.featurize"}
# Code that changes no data output, and so must stay out of the data stages (their deps and the data version).
NOT_DATA_CODE = (*(f"tasks/core/postprocess/{p.name}" for p in (REPO / "tasks/core/postprocess").glob("*.py")),
                 "tasks/core/raw_logits.py", "tasks/core/packing.py",
                 "tasks/core/specs.py", "tasks/core/family.py", "tasks/families/extractive.py",
                 "tasks/families/beam.py", "tasks/families/seq2seq.py", "tasks/families/span_packing.py",
                 "tasks/families/registry.py", "flows/cli.py")  # fmt: skip


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


def _module_files(modules: set[str]) -> set[str]:
    """Repository paths of `modules`; a package whose `__init__.py` holds no code (empty, or a docstring only)
    is left out: it changes no output."""
    files = set()
    for name in modules:
        base = REPO / Path(*name.split("."))
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        body = ast.parse(path.read_text(encoding="utf-8")).body
        if path.name == "__init__.py" and all(
            isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body
        ):
            continue
        files.add(path.relative_to(REPO).as_posix())
    return files


def stage_code(stage: str) -> set[str]:
    """The files of every module the stage's command imports, directly or not (its import closure, by grimp)."""
    graph = grimp.build_graph("tasks", "flows")
    body = STAGE_BODIES[stage]
    return _module_files({body} | graph.find_upstream_modules(body))


@pytest.mark.parametrize("stage", sorted(STAGE_BODIES))
def test_dvc_stage_deps_are_exactly_the_code_the_stage_imports(stage: str) -> None:
    """A code change re-runs a stage if and only if the stage imports the changed module."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages[stage]["cmd"].split()[:3] == ["python", "-m", STAGE_BODIES[stage]]
    code = stage_code(stage)
    deps = set(stages[stage]["deps"])
    listed = {d for d in deps if d.endswith(".py")}
    assert not code - listed, f"dvc.yaml stage {stage!r} lacks deps on modules it imports: {sorted(code - listed)}"
    assert not listed - code, f"dvc.yaml stage {stage!r} lists code it does not import: {sorted(listed - code)}"
    assert not code & set(NOT_DATA_CODE), (
        f"stage {stage!r} imports code that changes no data: {code & set(NOT_DATA_CODE)}"
    )
    produced = {out for s in stages.values() for out in s.get("outs", [])}
    stale = [d for d in deps if not d.startswith("${") and d not in produced and not (REPO / d).exists()]
    assert not stale, f"dvc.yaml stage {stage!r} lists deps that do not exist: {stale}"


def test_the_stage_commands_import_no_more_than_their_deps(tmp_path: Path) -> None:
    """Run both stage commands as dvc.yaml does (on a tiny sample) and compare what they loaded with the deps."""
    sample = str(REPO / "data/sample/squad-v1.1-sample-dev.json")
    params = {"data": {"train_file": sample, "validation_file": sample, "max_train_samples": 4,
                       "max_eval_samples": 4}, "model": {"model_name_or_path": "minilm"},
              "features": {"max_seq_length": 64, "doc_stride": 16}}  # fmt: skip
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in ("prepare", "featurize"):
        module, *args = stages[stage]["cmd"].split()[2:]
        code = (
            "import atexit, json, runpy, sys; sys.argv = [sys.argv[0], *sys.argv[2:]]; "
            "atexit.register(lambda: print(json.dumps(sorted(sys.modules)), file=sys.stderr)); "
            f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
        done = subprocess.run([sys.executable, "-c", code, module, *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, env=env)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        loaded = set(json.loads(done.stderr.strip().splitlines()[-1]))
        ours = {m for m in loaded if m.split(".")[0] in ("tasks", "flows")} | {module}
        assert _module_files(ours) == stage_code(stage), stage
        assert {"prefect", "mlflow", "dvc"}.isdisjoint(loaded), stage
    assert (tmp_path / "data/features/train.npz").is_file()


def test_cli_parser_loads_no_heavy_library() -> None:
    """Why flows/commands/ may import late: building the parser (`qaflow --help`, `qaflow score`) stays light."""
    code = (
        "import sys; from flows.cli import build_parser; build_parser(); "
        "print(sorted(m for m in ('torch', 'transformers', 'prefect', 'mlflow', 'dvc') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


LIGHT = ("torch", "transformers")


def run_light(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`qaflow <argv>` in a subprocess that prints, last on stderr, which of LIGHT's libraries it loaded."""
    code = (
        "import atexit, json, sys; from flows.cli import main; "
        f"atexit.register(lambda: print(json.dumps([m for m in {LIGHT!r} if m in sys.modules]), file=sys.stderr)); "
        "sys.exit(main(sys.argv[1:]))"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=env)  # fmt: skip


def heavy_loaded(done: subprocess.CompletedProcess) -> list[str]:
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_light_commands_load_no_torch_or_transformers(tmp_path: Path) -> None:
    """score, postprocess, data inspect (feature count with the default tokenizer included) and compare never
    touch a model: they start without torch or transformers (~3 s of imports)."""
    from mlflow.tracking import MlflowClient  # only here: logs the two runs `compare` reads

    from tasks.core.data import load_dataset_file, to_squad_json
    from tasks.core.raw_logits import RawLogitsWriter, RawShard

    sample = REPO / "data/sample/squad-v1.1-sample-dev.json"
    dataset = load_dataset_file(sample, max_samples=3)
    examples = dataset.examples
    data = tmp_path / "dev.json"
    data.write_text(json.dumps(to_squad_json(dataset)))
    (tmp_path / "predictions.json").write_text(json.dumps({ex.id: ex.answers[0].text for ex in examples}))
    writer = RawLogitsWriter(tmp_path / "raw")
    offsets = np.stack([np.array([(-1, -1)] + [(i, i + 3) for i in range(0, 21, 3)], dtype=np.int32)] * 3)
    logits = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    writer.add(RawShard([ex.id for ex in examples], np.arange(3), offsets, np.zeros(3), logits, logits[::-1]))
    writer.commit()
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")  # no global MLflow state for later tests
    experiment = client.create_experiment("qaflow", artifact_location=(tmp_path / "mlruns" / "artifacts").as_uri())
    runs = []
    for f1 in (70.0, 80.0):
        run_id = client.create_run(experiment).info.run_id
        client.log_metric(run_id, "f1", f1)
        client.set_terminated(run_id)
        runs.append(run_id)
    (tmp_path / "params.yaml").write_text(
        "tracking:\n  tracking_uri: sqlite:///mlruns/mlflow.db\n  artifact_root: mlruns/artifacts\n"
    )
    commands = {
        "score": ["score", "--data", str(data), "--predictions", str(tmp_path / "predictions.json")],
        "postprocess": ["postprocess", "--raw", str(tmp_path / "raw"), "--data", str(data), "--output_dir",
                        str(tmp_path / "post")],
        "data inspect": ["data", "inspect", str(sample), "--max_seq_length", "128", "--doc_stride", "64"],
        "compare": ["compare", "--root", str(tmp_path), "--runs", *runs, "--output", str(tmp_path / "cmp"), "--no-log"],
    }  # fmt: skip
    for name, argv in commands.items():
        done = run_light(argv, tmp_path)
        assert heavy_loaded(done) == [], name
    assert "features" in run_light(commands["data inspect"], tmp_path).stdout
    assert (tmp_path / "post" / "nbest_predictions.json").is_file() and (tmp_path / "cmp" / "comparison.html").is_file()
