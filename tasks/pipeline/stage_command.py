"""The command line of the DVC stages (dvc.yaml `cmd`): `python -m tasks.pipeline.stages` (prepare) and
`python -m tasks.pipeline.featurize`.

A stage module's `main` hands its body to `run_stage`: parameters from params.yaml (what DVC tracks; `qaflow stage`
takes flag overrides too), the report as JSON on stdout, bad input as one line on stderr with exit 2 (QAFLOW_DEBUG=1:
the traceback). It imports nothing of ours but the config, so a stage imports its body's closure and no more: the
code deps dvc.yaml lists for it (tests/test_architecture.py checks both).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from tasks.core.config import ConfigError, QAFlowConfig, load_config

USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, ValueError, FileNotFoundError, RuntimeError, KeyError)
StageBody = Callable[[QAFlowConfig, argparse.Namespace], dict[str, Any]]


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = f"missing key {text}"
    return " ".join(text.split())


def run_stage(name: str, body: StageBody, argv: Sequence[str] | None = None, *, reads_prepared: bool = False) -> int:
    """Parse `--params`, `--out` (and `--prepared`), run `body(cfg, args)`, print its report; 2 on bad input."""
    parser = _OneLineParser(prog=f"qaflow stage {name}", description=f"the DVC stage `{name}` (dvc.yaml)")
    parser.add_argument("--params", default="params.yaml", help="parameter file (default: params.yaml)")
    parser.add_argument("--out", required=True, type=Path, help="output directory of the stage")
    if reads_prepared:
        parser.add_argument("--prepared", default="data/prepared", type=Path, help="the prepare stage's output")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        report = body(load_config(args.params), args)
    except USER_ERRORS as exc:
        if os.environ.get("QAFLOW_DEBUG", "") not in ("", "0"):
            raise
        print(f"{parser.prog}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(json.dumps(report, indent=2))
    return 0
