"""The `qaflow` command: one console script, one subcommand per job.

Hyperparameters come from `params.yaml` (one source of truth) with run_qa.py-style flag overrides
(`--max_seq_length 256 --learning_rate 5e-5`). Bad input ends with a non-zero exit and one line on stderr.

This module is the entry point only: the top-level parser, the error path (flows.errors) and logging. The
subcommands live in `flows.commands`, one module per group (`add_parsers` + handlers; see flows.commands.common).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from flows.commands import data, deploy, flow_runs, predict, registry, train
from flows.commands.common import DEFAULT_PARAMS
from flows.errors import (
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USER_ERROR,
    debugging,
    error_line,
    is_termination,
    is_user_error,
    quiet_console_tracebacks,
)
from tasks.core.config import ConfigError
from tasks.core.console import console_logging
from tasks.core.io import check_output_dir, check_output_file
from tasks.core.layout import outputs_dir

# the subcommand groups, in `qaflow --help` order: each module's `add_parsers(sub, command)` registers its commands
COMMAND_GROUPS = (flow_runs, data, train, predict, registry, deploy)


class UsageError(ValueError):
    """A bad command line (unknown flag, wrong type, bad choice): one line, exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line raises UsageError (one stderr line from `main`) instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `qaflow` parser; typed config flags are built only for `command` (the subcommand being run)."""
    p = OneLineParser(prog="qaflow", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks (or QAFLOW_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.add_parsers(sub, command)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # slow 2-core machines
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _command_of(argv)
    try:
        args = build_parser(command).parse_args(argv)
    except UsageError as exc:
        prog = f"qaflow {command}" if command else "qaflow"
        print(f"{prog}: error: {error_line(exc)}", file=sys.stderr)
        return 2
    # one console handler: Prefect's task lines name their task; no ANSI codes where stderr is not a terminal
    console_logging(logging.DEBUG if args.verbose else logging.INFO)
    for noisy in ("httpx", "httpcore", "alembic", "mlflow.store.db.utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        check_params_file(args)
        check_output_paths(args)
        if getattr(args, "runs_flows", False):  # Prefect is imported by flow commands only
            import prefect.main  # noqa: F401 - Prefect sets its logging up on import; ours is adjusted below

            from flows.ephemeral import shield_ephemeral_server

            shield_ephemeral_server()  # Ctrl-C stops the flow, not the API it reports its end to
        if not debugging(args.verbose):
            quiet_console_tracebacks()  # a user error's traceback, logged on the way out, is shown with -v only
        return int(args.handler(args))
    except KeyboardInterrupt:
        if debugging(args.verbose):
            raise
        print(f"qaflow {args.command}: interrupted (Ctrl-C); nothing half-written was kept", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BaseException as exc:
        if debugging(args.verbose) or not (is_user_error(exc) or is_termination(exc)):
            raise
        if is_termination(exc):
            print(f"qaflow {args.command}: terminated (SIGTERM)", file=sys.stderr)
            return EXIT_TERMINATED
        print(f"qaflow {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return EXIT_USER_ERROR


def _command_of(argv: Sequence[str]) -> str | None:
    """The subcommand named in `argv` (the first word that is not an option of `qaflow` itself)."""
    return next((word for word in argv if not word.startswith("-")), None)


def check_params_file(args: argparse.Namespace) -> None:
    """A `--params` file named on the command line must exist (the default params.yaml may be absent)."""
    given = getattr(args, "params", None)
    if given is None or given == DEFAULT_PARAMS:
        return
    root = Path(getattr(args, "root", "."))
    if not Path(given).exists() and not (root / given).exists():
        raise ConfigError(f"{given}: parameter file not found")


def check_output_paths(args: argparse.Namespace) -> None:
    """Every output path the command line names (a subcommand's `checked_output`) and a project's `outputs/` (its
    `project_outputs`) can be written: checked before any data or model work, so a misplaced path costs a line,
    not a run."""
    flag, kind = getattr(args, "checked_output", (None, None))
    value = getattr(args, flag.lstrip("-").replace("-", "_")) if flag else None
    if value:
        (check_output_dir if kind == "dir" else check_output_file)(value, flag)
    elif getattr(args, "project_outputs", False):
        check_output_dir(outputs_dir(Path(getattr(args, "root", "."))), "--root")


if __name__ == "__main__":
    raise SystemExit(main())
