"""The reliability matrix: bad data and bad parameters across the `qaflow` commands.

Every case runs through the real entry point (`flows.cli.main`, in-process for speed) in a scratch workspace and
must end with exit code 2, exactly one `qaflow <command>: error: ...` line on stderr naming the culprit (the file,
or the parameter), no traceback, and the workspace unchanged byte for byte (inputs, params.yaml, previous outputs).
The terminal summary prints "reliability: N cases, N clean" (tests/conftest.py). Fault cases with real kills live
in tests/integration (training, prediction, retrain).
"""

from __future__ import annotations

import contextlib
import copy
import gzip
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.cli import main
from tests import faultkit
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.reliability

DEV = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"
GOOD = json.loads(DEV.read_text(encoding="utf-8"))


def _qa(doc: dict[str, Any], n: int = 0) -> dict[str, Any]:
    return doc["data"][0]["paragraphs"][0]["qas"][n]


def _ctx(doc: dict[str, Any]) -> str:
    return doc["data"][0]["paragraphs"][0]["context"]


def _mutated(change: Callable[[dict[str, Any]], Any]) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        doc = copy.deepcopy(GOOD)
        change(doc)
        path.write_text(json.dumps(doc), encoding="utf-8")

    return write


def _raw(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


# name -> (writer, expected text in the error line, also refused by `score`?)
# `score` reads only what the official metric reads (ids, answer texts, structure), as the official script does.
BAD_DATA: dict[str, tuple[Callable[[Path], None], str, bool]] = {
    "empty file": (_raw(b""), "empty", True),
    "truncated json": (_raw(DEV.read_bytes()[:5000]), "json", True),
    "not utf-8": (_raw(b'{"data": ["caf\xe9"]}'), "utf-8", True),
    "a json list of numbers": (_raw(b"[1, 2, 3]"), "bad.json", True),
    "data not a list": (_mutated(lambda d: d.update(data={"x": 1})), "bad.json", True),
    # an article without paragraphs reads as a flat record (flat JSON is a supported format): its id is missing
    "paragraphs missing": (_mutated(lambda d: d["data"][0].pop("paragraphs")), "record", True),
    "qas not a list": (_mutated(lambda d: d["data"][0]["paragraphs"][0].update(qas=5)), "qas", True),
    "id missing": (_mutated(lambda d: _qa(d).pop("id")), "id", True),
    "id not a string": (_mutated(lambda d: _qa(d).update(id=7)), "id", True),
    "duplicate id": (_mutated(lambda d: _qa(d, 1).update(id=_qa(d)["id"])), "id", True),
    "answers missing": (_mutated(lambda d: _qa(d).pop("answers")), "answers", True),
    "answers a string": (_mutated(lambda d: _qa(d).update(answers="x")), "answers", True),
    "answer text missing": (_mutated(lambda d: _qa(d)["answers"][0].pop("text")), "text", True),
    "answer text a number": (_mutated(lambda d: _qa(d)["answers"][0].update(text=3)), "text", True),
    "misaligned answer_start": (
        _mutated(lambda d: _qa(d)["answers"][0].update(answer_start=_qa(d)["answers"][0]["answer_start"] + 1)),
        "answer_start",
        False,
    ),  # fmt: skip
    "negative answer_start": (_mutated(lambda d: _qa(d)["answers"][0].update(answer_start=-1)), "answer_start", False),
    "answer_start past the end": (
        _mutated(lambda d: _qa(d)["answers"][0].update(answer_start=10**6)),
        "answer_start",
        False,
    ),  # fmt: skip
    "question missing": (_mutated(lambda d: _qa(d).pop("question")), "question", False),
    "question empty": (_mutated(lambda d: _qa(d).update(question=" ")), "question", False),
    "context missing": (_mutated(lambda d: d["data"][0]["paragraphs"][0].pop("context")), "context", False),
    "context empty": (_mutated(lambda d: d["data"][0]["paragraphs"][0].update(context="")), "context", False),
    "title not a string": (_mutated(lambda d: d["data"][0].update(title=["x"])), "title", False),
    "v1.1 question without answers": (_mutated(lambda d: _qa(d).update(answers=[])), "answers", False),
    "no questions at all": (_mutated(lambda d: d.update(data=[])), "bad.json", False),
    # text that shows nothing, or is not Unicode text: refused where it enters, never answered with confidence
    "question zero-width": (_mutated(lambda d: _qa(d).update(question="\u200b\u2060\ufeff")), "question", False),
    "question control-only": (_mutated(lambda d: _qa(d).update(question="\x00\x07\x1b")), "empty question", False),
    "question lone surrogate": (_mutated(lambda d: _qa(d).update(question="Who won \ud800?")), "surrogate", False),
    "context lone surrogate": (
        _mutated(lambda d: d["data"][0]["paragraphs"][0].update(context="\udfff" + _ctx(d))),
        "surrogate",
        False,
    ),  # fmt: skip
    "answer only whitespace": (
        _mutated(lambda d: _qa(d)["answers"][0].update(text=" ", answer_start=5)),
        "text",
        False,
    ),  # fmt: skip
    "a 5000-digit number": (_raw(b'{"version": "1.1", "n": ' + b"9" * 5000 + b', "data": []}'), "digits", True),
}

# command -> argv for a data file at bad.json (train/predict fail on the data before any tokenizer or model work)
DATA_COMMANDS: dict[str, list[str]] = {
    "data inspect": ["data", "inspect", "bad.json"],
    "featurize": ["featurize", "--data", "bad.json", "--output", "out/f.npz"],
    "train": ["train", "--train_file", "bad.json", "--output_dir", "out/train"],
    "predict": ["predict", "--model_dir", "model", "--data", "bad.json", "--output_dir", "out/pred"],
    "score": ["score", "--data", "bad.json", "--predictions", "pred.json"],
    "evaluate": ["evaluate", "--model-uri", "models:/qaflow-qa@challenger", "--data", "bad.json"],
}
DATA_CASES = [
    pytest.param(command, fault, id=f"{command}|{fault}")
    for fault, (_, _, score_refuses) in BAD_DATA.items()
    for command in DATA_COMMANDS
    if command != "score" or score_refuses
]

# (name, flags) for `qaflow train`: refused while the configuration is read, before any data or model work
BAD_PARAMS: list[tuple[str, list[str], str]] = [
    ("epochs negative", ["--num_train_epochs", "-1"], "num_train_epochs"),
    ("epochs zero", ["--num_train_epochs", "0"], "num_train_epochs"),
    ("lr negative", ["--learning_rate", "-1"], "learning_rate"),
    ("lr zero", ["--learning_rate", "0"], "learning_rate"),
    ("lr not a number", ["--learning_rate", "fast"], "learning_rate"),
    ("batch zero", ["--per_device_train_batch_size", "0"], "per_device_train_batch_size"),
    ("eval batch zero", ["--per_device_eval_batch_size", "0"], "per_device_eval_batch_size"),
    ("accumulation zero", ["--gradient_accumulation_steps", "0"], "gradient_accumulation_steps"),
    ("max_steps zero", ["--max_steps", "0"], "max_steps"),
    ("max_steps -5", ["--max_steps", "-5"], "max_steps"),
    ("warmup 1", ["--warmup_ratio", "1"], "warmup_ratio"),
    ("weight decay negative", ["--weight_decay", "-0.1"], "weight_decay"),
    ("save_steps zero", ["--save_steps", "0"], "save_steps"),
    ("logging_steps zero", ["--logging_steps", "0"], "logging_steps"),
    ("seq tiny", ["--max_seq_length", "4"], "max_seq_length"),
    ("seq not an int", ["--max_seq_length", "1.5"], "max_seq_length"),
    ("stride >= seq", ["--doc_stride", "128", "--max_seq_length", "128"], "doc_stride"),
    ("stride negative", ["--doc_stride", "-1"], "doc_stride"),
    ("n_best zero", ["--n_best_size", "0"], "n_best_size"),
    ("answer length zero", ["--max_answer_length", "0"], "max_answer_length"),
    ("beams zero", ["--num_beams", "0"], "num_beams"),
    ("bf16 and fp16", ["--bf16", "true", "--fp16", "true"], "mutually exclusive"),
    ("bool not a bool", ["--bf16", "maybe"], "bf16"),
    ("backend unknown", ["--backend", "tpu"], "backend"),
    ("policy unknown", ["--bad_record_policy", "ignore"], "bad_record_policy"),
    ("question policy unknown", ["--question_policy", "drop"], "question_policy"),
    ("eval_strategy unknown", ["--eval_strategy", "always"], "eval_strategy"),
    ("compile mode unknown", ["--torch_compile_mode", "fastest"], "torch_compile_mode"),
    ("family unknown", ["--model_family", "generative"], "model_family"),
    ("max samples zero", ["--max_train_samples", "0"], "max_train_samples"),
    ("split fraction 1", ["--split_eval_fraction", "1"], "split_eval_fraction"),
    ("params file missing", ["--params", "nope.yaml"], "nope.yaml"),
]
PARAMS_FILES: dict[str, tuple[str, str]] = {
    "section a list": ("train:\n  - 1\n", "section 'train'"),
    "section a number": ("train: 5\n", "section 'train'"),
    "unknown section": ("trainer:\n  seed: 1\n", "unknown section 'trainer'"),
    "unknown key": ("train:\n  learnin_rate: 1\n", "train.learnin_rate"),
    "not yaml": ("train: [1,\n", "not valid YAML"),
    "top level a list": ("- 1\n- 2\n", "top level"),
    "bad type in file": ("features:\n  max_seq_length: long\n", "features.max_seq_length"),
    # YAML read strictly: no silently stringified lists, no last-value-wins, no alias bombs, no deep nesting
    "a list where a string belongs": (
        "model:\n  model_name_or_path: [minilm]\n",
        "model.model_name_or_path: expected a string, got a list",
    ),  # fmt: skip
    "a boolean where a string belongs": ("train:\n  report_to: no\n", "train.report_to: expected a string"),
    "a mapping where a list belongs": ("tune:\n  batch_size_choices: {a: 8}\n", "tune.batch_size_choices"),
    "duplicate key": ("train:\n  learning_rate: 1.0e-4\n  learning_rate: 2.0e-4\n", "duplicate key 'learning_rate'"),
    "duplicate section": ("train:\n  seed: 1\ntrain:\n  seed: 2\n", "duplicate key 'train'"),
    "alias bomb": (
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcde", "bcdef", strict=True))
        + "model:\n  tokenizer_name: *f\n",
        "expands to more than",
    ),  # fmt: skip
    "deep nesting": ("train:\n  seed: " + "[" * 200 + "]" * 200 + "\n", "nested deeper"),
}
# other commands, with what they must say (each fails on input it can check before any work)
OTHER_CASES: list[tuple[str, list[str], str]] = [
    (
        "postprocess: no raw dir",
        ["postprocess", "--raw", "nowhere", "--data", "dev.json", "--output_dir", "pp"],
        "nowhere",
    ),
    (
        "postprocess: not a raw dir",
        ["postprocess", "--raw", "out", "--data", "dev.json", "--output_dir", "pp"],
        "not a raw-predictions directory",
    ),
    (
        "predict: missing model",
        ["predict", "--model_dir", "nomodel/", "--data", "dev.json", "--output_dir", "p"],
        "model directory not found",
    ),
    (
        "predict: hub id offline",
        ["predict", "--model_dir", "org/model", "--data", "dev.json", "--output_dir", "p"],
        "unreachable",
    ),
    (
        "train: missing model",
        ["train", "--model_name_or_path", "./nomodel", "--train_file", "dev.json", "--output_dir", "t"],
        "model directory not found",
    ),
    (
        "featurize: truncated weights",
        ["featurize", "--data", "dev.json", "--output", "f.npz", "--model_name_or_path", "broken-model"],
        "unreadable weights",
    ),
    ("score: missing predictions", ["score", "--data", "dev.json", "--predictions", "none.json"], "none.json"),
    ("score: predictions not json", ["score", "--data", "dev.json", "--predictions", "params.yaml"], "params.yaml"),
    ("answer: @dir context", ["answer", "--question", "q", "--context", "@out"], "is not a file"),
    ("answer: @missing context", ["answer", "--question", "q", "--context", "@nofile.txt"], "is not a file"),
    ("push-to-hub: no repo id", ["push-to-hub"], "--repo-id"),
    ("push-to-hub: dry run onto a file", ["push-to-hub", "--dry-run", "dev.json"], "not a directory"),
    ("push-to-hub: token file missing", ["push-to-hub", "--repo-id", "a/b", "--token-file", "nofile"], "nofile"),
    ("promote: nothing registered", ["promote"], "nothing is registered yet"),
    ("retrain: bad data", ["retrain", "--train_file", "bad.json"], "bad.json"),
    ("retrain: bad parameter", ["retrain", "--learning_rate", "-1"], "learning_rate"),
    ("evaluate: data missing", ["evaluate", "--model-uri", "models:/x@y", "--data", "none.json"], "none.json"),
    (
        "evaluate: no store yet",
        ["evaluate", "--model-uri", "models:/x@champion", "--data", "dev.json"],
        "run `qaflow retrain` first",
    ),
    ("answer: no store yet", ["answer", "--question", "q", "--context", "c"], "run `qaflow retrain` first"),
]


def fingerprint(root: Path) -> dict[str, str]:
    files = (p for p in sorted(root.rglob("*")) if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_bert_dir: Path) -> Path:
    """A scratch project: params.yaml, the dev sample, a tiny model, a broken model, predictions, a previous output."""
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copy(DEV, tmp_path / "dev.json")
    (tmp_path / "model").symlink_to(tiny_bert_dir, target_is_directory=True)
    shutil.copytree(tiny_bert_dir, tmp_path / "broken-model")
    weights = tmp_path / "broken-model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:64])
    (tmp_path / "pred.json").write_text(json.dumps({qa["id"]: "x" for a in GOOD["data"] for p in a["paragraphs"]
                                                    for qa in p["qas"]}))  # fmt: skip
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "previous.json").write_text('{"kept": true}')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the hub is unreachable, at once
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return tmp_path


def refused(capsys: pytest.CaptureFixture[str], root: Path, argv: list[str]) -> str:
    """Run `qaflow ARGV`; assert exit 2, one error line, no traceback, workspace unchanged; return the line."""
    before = fingerprint(root)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"qaflow {argv[0]}")]
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert fingerprint(root) == before, "the failed command changed the workspace"
    return lines[0]


@pytest.mark.parametrize(("command", "fault"), DATA_CASES)
def test_bad_data(capsys, workspace: Path, command: str, fault: str) -> None:
    write, expect, _ = BAD_DATA[fault]
    write(workspace / "bad.json")
    line = refused(capsys, workspace, DATA_COMMANDS[command])
    assert "bad.json" in line and expect.lower() in line.lower(), line


@pytest.mark.parametrize(("name", "flags", "expect"), BAD_PARAMS, ids=[c[0] for c in BAD_PARAMS])
def test_bad_parameter(capsys, workspace: Path, name: str, flags: list[str], expect: str) -> None:
    line = refused(capsys, workspace, ["train", *flags, "--output_dir", "out/train"])
    assert expect in line, line


@pytest.mark.parametrize("name", sorted(PARAMS_FILES))
def test_bad_params_file(capsys, workspace: Path, name: str) -> None:
    text, expect = PARAMS_FILES[name]
    (workspace / "bad.yaml").write_text(text)
    line = refused(capsys, workspace, ["train", "--params", "bad.yaml", "--output_dir", "out/train"])
    assert "bad.yaml" in line and expect in line, line


@pytest.mark.parametrize(("name", "argv", "expect"), OTHER_CASES, ids=[c[0] for c in OTHER_CASES])
def test_bad_input_to_other_commands(capsys, workspace: Path, name: str, argv: list[str], expect: str) -> None:
    if name.startswith("retrain"):
        shutil.copy(DEV, workspace / "dev-copy.json")
        BAD_DATA["id missing"][0](workspace / "bad.json")
    line = refused(capsys, workspace, argv)
    assert expect in line, line


def test_gzip_that_is_not_gzip(capsys, workspace: Path) -> None:
    (workspace / "bad.json.gz").write_bytes(b"plain text, not gzip")
    line = refused(capsys, workspace, ["data", "inspect", "bad.json.gz"])
    assert "bad.json.gz" in line


def test_good_data_passes_the_same_gate(capsys, workspace: Path) -> None:
    """The control case: the unmodified sample is accepted by the same command (the matrix tests the faults)."""
    with gzip.open(workspace / "good.json.gz", "wt", encoding="utf-8") as handle:
        handle.write(DEV.read_text(encoding="utf-8"))
    assert main(["score", "--data", "good.json.gz", "--predictions", "pred.json"]) == 0
    assert json.loads(capsys.readouterr().out)["exact_match"] >= 0
    assert yaml.safe_load((workspace / "params.yaml").read_text())["features"]["max_seq_length"] == 128


# ------------------------------------------------------------------------------------ secrets in YAML errors


def test_a_yaml_syntax_error_names_line_and_column_but_never_the_line(capsys, workspace: Path) -> None:
    (workspace / "bad.yaml").write_text('train:\n  seed: 1\ntracking:\n  tracking_uri: "postgresql://qa:hunter2@db/x\n')
    line = refused(capsys, workspace, ["train", "--params", "bad.yaml", "--output_dir", "out/train"])
    assert "bad.yaml" in line and "line 4" in line and "not valid YAML" in line, line
    assert "hunter2" not in line and "postgresql" not in line, line


# ------------------------------------------------------------------------------------ OS errors and output paths

# (name, argv, expected in the line): each output path is refused before any data, tokenizer or model work
OUTPUT_PATHS: list[tuple[str, list[str], str]] = [
    ("predict: --output_dir is a file", ["predict", "--model_dir", "model", "--data", "dev.json", "--output_dir",
                                         "pred.json"], "--output_dir pred.json: exists and is not a directory"),
    ("predict: --output_dir under a file", ["predict", "--model_dir", "model", "--data", "dev.json", "--output_dir",
                                            "pred.json/p"], "pred.json is not a directory"),
    ("train: --output_dir is a file", ["train", "--train_file", "dev.json", "--output_dir", "pred.json"],
     "train.output_dir pred.json"),
    ("featurize: --output is a directory", ["featurize", "--data", "dev.json", "--output", "out"],
     "--output out: is a directory"),
    ("postprocess: --output_dir is a file", ["postprocess", "--raw", "out", "--data", "dev.json", "--output_dir",
                                             "pred.json"], "--output_dir pred.json"),
    ("stage: --out is a file", ["stage", "prepare", "--out", "pred.json"], "--out pred.json"),
    ("compare: --output is a file", ["compare", "--output", "pred.json"], "--output pred.json"),
    ("params: a directory", ["train", "--params", "out", "--output_dir", "out/train"], "out: Is a directory"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "argv", "expect"), OUTPUT_PATHS, ids=[c[0] for c in OUTPUT_PATHS])
def test_misplaced_paths_are_one_line_before_any_work(capsys, workspace: Path, name: str, argv: list, expect: str):
    line = refused(capsys, workspace, argv)
    assert expect in line, line


def test_a_read_only_output_mount_is_refused_before_the_model_loads(capsys, workspace: Path) -> None:
    with faultkit.tmpfs(read_only=True) as mount:
        for argv in (["predict", "--model_dir", "model", "--data", "dev.json", "--output_dir", str(mount / "p")],
                     ["featurize", "--data", "dev.json", "--output", str(mount / "f.npz")]):  # fmt: skip
            line = refused(capsys, workspace, argv)
            assert str(mount) in line and "read-only file system" in line, line


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(capsys, workspace: Path) -> None:
    with faultkit.tmpfs("1m") as mount:
        faultkit.fill(mount)
        line = refused(capsys, workspace, ["featurize", "--data", "dev.json", "--output", str(mount / "f.npz")])
        assert f"{mount / 'f.npz'}: No space left on device" in line, line
        assert [p.name for p in mount.iterdir()] == [".ballast"], "a partial file was left on the full disk"


def _cli(argv: list[str], cwd: Path, **popen: Any) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_ENDPOINT": "http://127.0.0.1:9"}
    return subprocess.run([sys.executable, "-m", "flows.cli", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, **{"timeout": 300, **popen})  # fmt: skip


def _one_line(done: subprocess.CompletedProcess, command: str) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith(f"qaflow {command}")]
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    return lines[0]


def test_a_file_too_large_is_one_line(workspace: Path) -> None:
    """RLIMIT_FSIZE (any user): the write fails with EFBIG, as on a file system with a size limit."""
    done = _cli(["featurize", "--data", "dev.json", "--output", "f.npz"], workspace,
                preexec_fn=faultkit.file_size_limit(64 * 1024))  # fmt: skip
    assert "f.npz: File too large" in _one_line(done, "featurize")
    assert not (workspace / "f.npz").exists() and not list(workspace.glob(".f.npz*"))


@pytest.mark.parametrize("what", ["params", "context"])
def test_an_unreadable_file_is_one_line_naming_it(workspace: Path, what: str) -> None:
    secret = workspace / ("locked.yaml" if what == "params" else "locked.txt")
    secret.write_text("train:\n  seed: 1\n" if what == "params" else "The passage.")
    secret.chmod(0)
    argv = (["train", "--params", secret.name, "--output_dir", "out/train"] if what == "params"
            else ["answer", "--question", "q", "--context", f"@{secret.name}"])  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_ENDPOINT": "http://127.0.0.1:9"}
    done = subprocess.run(faultkit.unprivileged([sys.executable, "-m", "flows.cli", *argv]), cwd=workspace, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    line = _one_line(done, argv[0])
    assert secret.name in line and "Permission denied" in line, line


# ------------------------------------------------------------------------------------ the tracking store


def _store_params(workspace: Path, uri: str) -> None:
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["tracking"]["tracking_uri"] = uri
    (workspace / "params.yaml").write_text(yaml.safe_dump(params))


def _garbled_sqlite(path: Path) -> None:
    """A real SQLite file whose pages after the header were overwritten (a disk error, a bad copy)."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (a)")
        conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,)] * 100)
        conn.commit()
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)
    path.write_bytes(bytes(data))


STORES: dict[str, tuple[Callable[[Path], None], str]] = {
    "empty (0 bytes)": (lambda p: p.write_bytes(b""), "empty file (0 bytes)"),
    "not sqlite": (lambda p: p.write_bytes(b"\x13\x37" * 512), "not an SQLite database"),
    "corrupt sqlite": (_garbled_sqlite, "corrupt"),
}


@pytest.mark.parametrize("command", ["promote", "compare", "answer"])
@pytest.mark.parametrize("store", sorted(STORES))
def test_a_damaged_tracking_store_is_one_line_and_never_reinitialised(capsys, workspace: Path, command, store):
    (workspace / "mlruns").mkdir()
    STORES[store][0](workspace / "mlruns" / "mlflow.db")
    argv = {"promote": ["promote"], "compare": ["compare", "--no-log"],
            "answer": ["answer", "--question", "Who won?", "--context", "Denver won."]}[command]  # fmt: skip
    line = refused(capsys, workspace, argv)
    assert "mlflow.db" in line and STORES[store][1] in line, line


@pytest.mark.parametrize("server", ["closed port", "never answers"])
@pytest.mark.parametrize("command", ["answer", "promote", "compare"])
def test_an_unreachable_tracking_server_fails_within_about_30_s(workspace: Path, command: str, server: str) -> None:
    argv = {"promote": ["promote"], "compare": ["compare", "--no-log"],
            "answer": ["answer", "--question", "Who won?", "--context", "Denver won."]}[command]  # fmt: skip
    with contextlib.ExitStack() as stack:
        url = (f"http://127.0.0.1:{faultkit.closed_port()}" if server == "closed port"
               else stack.enter_context(faultkit.silent_server()))  # fmt: skip
        _store_params(workspace, url)
        started = time.monotonic()
        try:
            done = _cli(argv, workspace, timeout=150)
        except subprocess.TimeoutExpired:
            pytest.fail(f"qaflow {command} still waiting on {url} after 150 s")
        elapsed = time.monotonic() - started
    line = _one_line(done, command)
    assert url.split("//")[1] in line, line
    assert elapsed < 90, f"{elapsed:.0f} s (imports included) before giving up on the server"


# ------------------------------------------------------------------------------------ stale outputs


def test_an_unlabeled_prediction_removes_the_previous_slices(capsys, workspace: Path) -> None:
    """The slices of a labeled prediction never sit beside an unlabeled one's answers (one output set)."""
    base = ["predict", "--model_dir", "model", "--output_dir", "out/pred", "--max_seq_length", "64",
            "--doc_stride", "16", "--max_predict_samples", "6", "--backend", "cpu"]  # fmt: skip
    assert main([*base, "--data", "dev.json"]) == 0
    assert (workspace / "out/pred/slices.json").exists() and (workspace / "out/pred/slices.png").exists()
    unlabeled = copy.deepcopy(GOOD)
    for article in unlabeled["data"]:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                qa.pop("answers")
    (workspace / "unlabeled.json").write_text(json.dumps(unlabeled))
    assert main([*base, "--data", "unlabeled.json"]) == 0
    capsys.readouterr()
    left = sorted(p.name for p in (workspace / "out/pred").iterdir())
    assert "slices.json" not in left and "slices.png" not in left and "metrics.json" not in left, left


# ------------------------------------------------------------------------------------ text where it enters


@pytest.mark.parametrize(
    ("question", "context", "expect"),
    [
        ("\u200b\u200d", "Denver won.", "--question: empty question"),
        ("\x00\x1b\x7f", "Denver won.", "--question: empty question"),
        ("   \t", "Denver won.", "--question: empty question"),
        ("Who \ud83d?", "Denver won.", "--question: lone surrogate U+D83D"),
        ("Who won?", "\u2800\u3164", "--context \u2800\u3164: empty context"),
    ],
    ids=["zero-width", "control-only", "whitespace", "lone surrogate", "blank context"],
)
def test_answer_refuses_text_that_shows_nothing(capsys, workspace: Path, question: str, context: str, expect: str):
    line = refused(capsys, workspace, ["answer", "--question", question, "--context", context])
    assert expect in line, line


def test_answers_with_surrounding_whitespace_are_trimmed_and_counted(capsys, workspace: Path) -> None:
    """run_qa would label " Denver Broncos " with the neighbouring words; the legacy processor trimmed it."""
    doc = copy.deepcopy(GOOD)
    answer = _qa(doc)["answers"][0]
    answer.update(text=f" {answer['text']} ", answer_start=answer["answer_start"] - 1)
    (workspace / "train.json").write_text(json.dumps(doc))
    argv = ["stage", "prepare", "--out", "prepared", "--train_file", "train.json", "--validation_file", "dev.json"]
    assert main(argv) == 0
    capsys.readouterr()
    report = json.loads((workspace / "prepared" / "report.json").read_text())
    assert report["train"]["answers_trimmed"] == 1 and report["eval"]["answers_trimmed"] == 0
    prepared = json.loads((workspace / "prepared" / "train.json").read_text())
    first = _qa(prepared)["answers"][0]
    assert first == _qa(GOOD)["answers"][0], first


@pytest.mark.parametrize(
    ("name", "content", "expect"),
    [("deeply nested", b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
     ("a 5000-digit number", b'{"56be4db0acb8001400a502ec": ' + b"7" * 5000 + b"}", "4300 digits")],
)  # fmt: skip
def test_predictions_beyond_the_json_bounds_are_one_line_naming_the_file(capsys, workspace, name, content, expect):
    (workspace / "huge.json").write_bytes(content)
    line = refused(capsys, workspace, ["score", "--data", "dev.json", "--predictions", "huge.json"])
    assert "huge.json" in line and expect in line, line
