"""Console hygiene: transformers' LOAD REPORT reaches a non-terminal console (a pipe) without ANSI codes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

LOAD = """
import sys
if sys.argv[2] == "plain":
    from tasks.core.console import plain_log_records
    assert plain_log_records()
from transformers import AutoModelForQuestionAnswering
AutoModelForQuestionAnswering.from_pretrained(sys.argv[1])
"""


@pytest.fixture(scope="module")
def encoder_only(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's encoder without its QA head: loading it as a QA model prints a LOAD REPORT (MISSING)."""
    from transformers import AutoModelForQuestionAnswering

    out = tmp_path_factory.mktemp("encoder") / "model"
    shutil.copytree(tiny_bert_dir, out)
    for weights in out.glob("*.safetensors"):
        weights.unlink()
    AutoModelForQuestionAnswering.from_pretrained(tiny_bert_dir).base_model.save_pretrained(out)
    return out


def load_report(model: Path, mode: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop("NO_COLOR", None)
    done = subprocess.run([sys.executable, "-c", LOAD, str(model), mode], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "LOAD REPORT" in done.stderr and "MISSING" in done.stderr, done.stderr[-3000:]
    return done.stderr


def test_load_report_has_no_ansi_codes_in_a_pipe(encoder_only: Path) -> None:
    assert "\x1b[" in load_report(encoder_only, "raw")  # transformers styles the title whatever the output is
    assert "\x1b[" not in load_report(encoder_only, "plain")
