"""SIGKILL in the middle of `qaflow predict`: the previous good outputs survive whole, and a clean re-run gives
exactly the result of an uninterrupted run (the raw logits are written beside and swapped in at the end)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.reliability

TRAIN = REPO_ROOT / "data" / "sample" / "squad-v1.1-sample-train.json"


def predict_argv(model: Path, out: Path, data: Path = TRAIN) -> list[str]:
    return [sys.executable, "-m", "flows.cli", "predict", "--model_dir", str(model), "--data", str(data),
            "--output_dir", str(out), "--max_seq_length", "96", "--doc_stride", "32", "--backend", "cpu"]  # fmt: skip


def digests(directory: Path) -> dict[str, str]:
    files = (p for p in sorted(directory.rglob("*")) if p.is_file())
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_killed_predict_keeps_the_previous_outputs_and_reruns_identically(tiny_bert_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "pred"
    first = subprocess.run(predict_argv(tiny_bert_dir, out), env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    before = digests(out)
    assert any(name.startswith("raw_predictions/part-") for name in before)

    victim = subprocess.Popen(predict_argv(tiny_bert_dir, out), env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("pred/.raw_predictions.pid*.tmp/part-00001.npz")):  # killed mid-way, shards written
        assert victim.poll() is None and time.monotonic() < deadline, "predict ended before it could be killed"
        time.sleep(0.05)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    after_kill = {k: v for k, v in digests(out).items() if not k.startswith(".")}
    assert after_kill == before, "the killed run replaced or damaged the previous outputs"

    post = subprocess.run(
        [sys.executable, "-m", "flows.cli", "postprocess", "--raw", str(out / "raw_predictions"), "--data",
         str(TRAIN), "--output_dir", str(tmp_path / "post")], env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert post.returncode == 0, post.stderr[-3000:]
    assert (tmp_path / "post" / "predictions.json").read_bytes() == (out / "predictions.json").read_bytes()

    again = subprocess.run(predict_argv(tiny_bert_dir, out), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {k: v for k, v in digests(out).items() if not k.startswith(".")} == before
    assert not list(out.glob(".*")), "the re-run swept what the killed run left behind"
