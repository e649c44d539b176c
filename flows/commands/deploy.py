"""Scheduling subcommand of `qaflow`: deploy (serve the retrain flow's schedule, or deploy it to a work pool)."""

from __future__ import annotations

import argparse
import json

from flows.commands.common import Subparsers, add_project_flags
from flows.pools import DEFAULT_CRON, POOL_BACKENDS
from tasks.core.config import ConfigError


def add_parsers(sub: Subparsers, command: str | None) -> None:
    dp = sub.add_parser("deploy", help="schedule the retrain flow: serve it here (--serve) or deploy to a work pool")
    dp.add_argument("--serve", action="store_true", help="serve the schedule from this process (blocks)")
    dp.add_argument("--cron", default=DEFAULT_CRON, help=f'cron schedule, UTC (default: "{DEFAULT_CRON}")')
    dp.add_argument("--interval", type=float, default=None, help="also (or instead, with --cron '') every N seconds")
    dp.add_argument("--pool", choices=sorted(POOL_BACKENDS), default="cpu", help="hardware: cpu | gpu | ipu")
    dp.add_argument("--name", default=None, help="deployment name (default: retrain-<pool>)")
    dp.add_argument("--work-pool", default=None, help="work pool (default: qaflow-<pool>; created as a process pool)")
    dp.add_argument("--limit", type=int, default=1, help="--serve: flow runs at once (default: 1)")
    dp.add_argument(
        "--gpus",
        type=int,
        default=1,
        help="--pool gpu: slots of its device limit qaflow-gpu, one per GPU, when it is created (default: 1)",
    )
    add_project_flags(dp)
    dp.set_defaults(handler=cmd_deploy)


def cmd_deploy(args: argparse.Namespace) -> int:
    from flows.deploy import deploy_retrain, deployment_name, serve_retrain

    common = {"pool": args.pool, "cron": args.cron or None, "interval": args.interval, "root": args.root,
              "params_path": args.params, "name": args.name}  # fmt: skip
    if args.serve:
        serve_retrain(**common, limit=args.limit)
        return 0
    if args.gpus < 1:
        raise ConfigError(f"--gpus: {args.gpus} must be >= 1")
    deployment_id = deploy_retrain(**common, work_pool=args.work_pool, device_slots=args.gpus)
    name = args.name or deployment_name(args.pool)
    pool = args.work_pool or f"qaflow-{args.pool}"
    print(json.dumps({"deployment": f"retrain/{name}", "id": deployment_id, "work_pool": pool,
                      "cron": common["cron"], "interval": args.interval,
                      "next": f"prefect worker start --pool {pool}"}, indent=2))  # fmt: skip
    return 0
