"""What the subcommand groups share: `--params` and the typed config flags, torchrun's flags, the project's config
and tracker.

The convention every group module of `flows.commands` follows: `add_parsers(sub, command)` registers its
subcommands on `sub` (`command` is the one being run: only it gets the typed config flags, which import
transformers), each with `set_defaults(handler=cmd_<name>)`, the handler in the same module. A handler imports its
steps inside the function, so that `qaflow --help` and the light commands (score, postprocess, data inspect,
compare) start without torch or transformers. A subcommand may also declare, for `flows.cli` to act on before its
handler runs:

- `checked_output=(FLAG, "dir" | "file")`: the output path that FLAG names is checked writable before any work;
- `project_outputs=True`: it writes under `<root>/outputs` (tasks.core.layout), checked writable first;
- `runs_flows=True`: it runs Prefect flows (Prefect is imported, Ctrl-C spares the ephemeral API).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from flows.cli_flags import add_config_flags, config_overrides
from tasks.core.config import RUN_SECTIONS, QAFlowConfig, load_config

if TYPE_CHECKING:
    from tasks.tracking.tracker import Tracker
    from tasks.train.hardware import Launch

Subparsers = argparse._SubParsersAction
DEFAULT_PARAMS = "params.yaml"
# config sections offered as flags; evaluation suites are declared in params.yaml (`--suite NAME` picks one)
FLAG_SECTIONS = [s for s in RUN_SECTIONS if s != "evaluation"]


def config_flags(
    parser: argparse.ArgumentParser, sections: list[str], command: str | None, *, steps: bool = False
) -> None:
    """`--params`, and the typed flags of the config `sections` when `parser` is the subcommand being run."""
    parser.add_argument("--params", default=DEFAULT_PARAMS, help="parameter file (default: params.yaml)")
    if parser.prog.split()[-1] == command:
        add_config_flags(parser, sections, steps=steps)


def config_from_args(args: argparse.Namespace) -> QAFlowConfig:
    return load_config(args.params, config_overrides(args))


def add_launch_flags(parser: argparse.ArgumentParser) -> None:
    """torchrun's flags for data-parallel training or prediction, one node or several (tasks.train.hardware.Launch)."""
    group = parser.add_argument_group("data-parallel launch (torchrun's flags)")
    group.add_argument("--nproc_per_node", type=int, default=1, help="workers on this node (default: 1)")
    group.add_argument("--nnodes", default="1", help="nodes: N, or MIN:MAX (elastic) (default: 1)")
    group.add_argument("--node_rank", type=int, default=None, help="this node's rank (static rendezvous only)")
    group.add_argument("--rdzv_backend", default="c10d", choices=["c10d", "static", "etcd", "etcd-v2"])
    group.add_argument("--rdzv_endpoint", default=None, help="HOST:PORT of the rendezvous (several nodes)")
    group.add_argument("--rdzv_id", default="qaflow", help="job id, the same on every node (default: qaflow)")
    group.add_argument("--max_restarts", type=int, default=0, help="restarts of a failed worker group (default: 0)")


def launch_from_args(args: argparse.Namespace) -> Launch:
    from tasks.train.hardware import Launch

    return Launch(
        nproc_per_node=args.nproc_per_node, nnodes=args.nnodes, node_rank=args.node_rank,
        rdzv_backend=args.rdzv_backend, rdzv_endpoint=args.rdzv_endpoint, rdzv_id=args.rdzv_id,
        max_restarts=args.max_restarts,
    )  # fmt: skip


def add_project_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=".", help="the qaflow project (params.yaml, mlruns/) (default: .)")
    p.add_argument("--params", default="params.yaml", help="parameter file, relative to --root (default: params.yaml)")


def project_config(args: argparse.Namespace) -> tuple[QAFlowConfig, Path]:
    """The config of the project named by `--root` / `--params` (add_project_flags), and its root."""
    root = Path(args.root).resolve()
    params = Path(args.params)
    return load_config(params if params.is_absolute() else root / params), root


def project_tracker(cfg: QAFlowConfig, root: Path) -> Tracker:
    """The command's one tracker (imported here: `qaflow --help` and the light commands load no MLflow)."""
    from tasks.tracking.tracker import Tracker

    return Tracker.from_config(cfg.tracking, root)
