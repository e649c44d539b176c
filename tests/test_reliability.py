"""The reliability matrix: bad data and bad parameters across the `qaflow` commands.

Every case runs through the real entry point (`flows.cli.main`, in-process for speed) in a scratch workspace and
must end with exit code 2, exactly one `qaflow <command>: error: ...` line on stderr naming the culprit (the file,
or the parameter), no traceback, and the workspace unchanged byte for byte (inputs, params.yaml, previous outputs).
The terminal summary prints "reliability: N cases, N clean" (tests/conftest.py). Fault cases with real kills live
in tests/integration (training, prediction, retrain).
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.cli import main
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.reliability

DEV = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"
GOOD = json.loads(DEV.read_text(encoding="utf-8"))


def _qa(doc: dict[str, Any], n: int = 0) -> dict[str, Any]:
    return doc["data"][0]["paragraphs"][0]["qas"][n]


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
