"""The `qaflow` command as users run it: JSON on stdout, one-line errors with a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.data import load_dataset_file
from tasks.core.metrics import score
from tests.conftest import REPO_ROOT

SHARED = REPO_ROOT.parent / "shared" / "data"
V1_SAMPLE = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-dev.json"
V2_SAMPLE = REPO_ROOT / "data" / "sample" / "squad-v2.0-sample-dev.json"


def qaflow(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "flows.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def first_answers(path: Path, *, every: int = 3) -> dict[str, str]:
    """A prediction set with some right, some partial and some empty answers."""
    out = {}
    for i, ex in enumerate(load_dataset_file(path).examples):
        gold = ex.answers[0].text if ex.answers else ""
        out[ex.id] = gold if i % every == 0 else (gold.split(" ")[0] if i % every == 1 else ex.context[:12])
    return out


@pytest.mark.parametrize("data", [V1_SAMPLE, V2_SAMPLE], ids=["v1.1", "v2.0"])
def test_score_prints_the_official_keys(tmp_path: Path, data: Path) -> None:
    preds = first_answers(data)
    (tmp_path / "p.json").write_text(json.dumps(preds))
    proc = qaflow("score", "--data", str(data), "--predictions", str(tmp_path / "p.json"))
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == score(json.loads(data.read_text()), preds)
    expected_keys = ["exact_match", "f1"] if "v1.1" in data.name else ["exact", "f1", "total", "HasAns_exact"]
    assert list(printed)[: len(expected_keys)] == expected_keys


def test_score_v2_with_na_probs_adds_best_thresholds(tmp_path: Path) -> None:
    preds = first_answers(V2_SAMPLE)
    na = {qid: (0.9 if i % 2 else 0.1) for i, qid in enumerate(preds)}
    (tmp_path / "p.json").write_text(json.dumps(preds))
    (tmp_path / "na.json").write_text(json.dumps(na))
    proc = qaflow(
        "score", "--data", str(V2_SAMPLE), "--predictions", str(tmp_path / "p.json"),
        "--na-probs", str(tmp_path / "na.json"), "--na-prob-thresh", "0.5",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert {"best_exact", "best_exact_thresh", "best_f1", "best_f1_thresh"} <= set(printed)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b'{"a": ', "invalid JSON"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b'["not", "a", "dict"]', "predictions"),
    ],
    ids=["missing", "truncated", "non-utf8", "wrong-shape"],
)
def test_score_bad_input_is_one_line(tmp_path: Path, content: bytes | None, message: str) -> None:
    pred = tmp_path / "pred.json"
    if content is not None:
        pred.write_bytes(content)
    proc = qaflow("score", "--data", str(V1_SAMPLE), "--predictions", str(pred))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_bad_data_record_names_file_record_and_field(tmp_path: Path) -> None:
    data = json.loads(V1_SAMPLE.read_text())
    qa = data["data"][0]["paragraphs"][0]["qas"][0]
    qa["answers"][0]["answer_start"] += 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    proc = qaflow("data", "inspect", str(bad))
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and qa["id"] in proc.stderr and "answer_start" in proc.stderr


def test_data_inspect_counts_and_table() -> None:
    proc = qaflow("data", "inspect", str(V2_SAMPLE), "--examples", "2", "--max_seq_length", "128", "--doc_stride", "64")
    assert proc.returncode == 0, proc.stderr
    assert "unanswerable" in proc.stdout and "477" in proc.stdout and "128/64" in proc.stdout
    assert "random examples" in proc.stdout


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data absent")
@pytest.mark.parametrize("name", ["squad-v1.1/dev-v1.1.json", "squad-v2.0/dev-v2.0.json"])
def test_score_full_shared_dev_sets(tmp_path: Path, name: str) -> None:
    data = SHARED / name
    preds = first_answers(data, every=4)
    (tmp_path / "p.json").write_text(json.dumps(preds))
    proc = qaflow("score", "--data", str(data), "--predictions", str(tmp_path / "p.json"))
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed == score(json.loads(data.read_text()), preds)
    assert 20 < printed["f1"] < 80  # a mix of right, partial and wrong answers
