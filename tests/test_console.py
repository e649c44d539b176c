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


FLOW = """
import logging
from tasks.core.console import console_logging
console_logging(logging.INFO)  # as `qaflow` sets up its console, before any command imports Prefect
logging.getLogger("httpx").setLevel(logging.WARNING)
from prefect import flow, task

@task
def tokenize_things(x):
    return x + 1

@flow(name="console-check")
def check():
    return tokenize_things(1)

check()
"""


def test_prefect_task_lines_name_their_task(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PREFECT_HOME": str(tmp_path / ".prefect"),
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": ""}  # fmt: skip
    done = subprocess.run([sys.executable, "-c", FLOW], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    finished = [line for line in done.stderr.splitlines() if "Finished in state Completed()" in line]
    assert len(finished) == 2, done.stderr[-3000:]  # the task and the flow, once each
    assert "prefect.task_runs: task run 'tokenize_things-" in finished[0], finished
    assert "prefect.flow_runs: flow run '" in finished[1], finished


PIPE_CHECK = """
import logging, sys
{first_import}  # before the console is set up
from tasks.core.console import console_logging
console_logging(logging.INFO)
from transformers.utils import logging as hf_logging
from tasks.core.config import TrainConfig
from tasks.train.backends.cpu import CPUBackend
from tasks.train.trainer import training_arguments
args = training_arguments(TrainConfig(), CPUBackend(), __import__("pathlib").Path(sys.argv[1]))
print(hf_logging.is_progress_bar_enabled(), args.disable_tqdm)
"""


FIRST_IMPORTS = {
    "transformers first": "from transformers import HfArgumentParser",  # as the CLI's flag parser does
    "hub alone first": "import huggingface_hub",  # its utils not loaded yet
}


@pytest.mark.parametrize("first", sorted(FIRST_IMPORTS))
@pytest.mark.parametrize(("progress", "expected"), [("", "False True"), ("bar", "True False")])
def test_no_carriage_return_bars_where_output_is_not_a_terminal(
    progress: str, expected: str, first: str, tmp_path: Path
) -> None:
    """In a pipe (a log file, CI, a Prefect worker) the Trainer prints one line per log event and the Hugging Face
    libraries draw no bars, whichever of them was imported before the console was set up; QAFLOW_PROGRESS=bar keeps
    them."""
    env = {k: v for k, v in os.environ.items() if k not in ("QAFLOW_PROGRESS", "HF_HUB_DISABLE_PROGRESS_BARS")}
    env.update({"PYTHONPATH": str(REPO_ROOT), **({"QAFLOW_PROGRESS": progress} if progress else {})})
    script = PIPE_CHECK.format(first_import=FIRST_IMPORTS[first])
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == expected.split()
