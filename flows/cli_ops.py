"""Operations subcommands of `qaflow`: deploy, compare, promote, push-to-hub, answer.

Each command is `add_<name>_parser(sub)` (registers the subparser and its handler) + `cmd_<name>(args)`.
`flows.cli` registers them (one entry point, `qaflow`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from flows.pools import DEFAULT_CRON, POOL_BACKENDS
from tasks.core.config import ConfigError, QAFlowConfig, load_config
from tasks.core.layout import compare_dir

if TYPE_CHECKING:
    from tasks.tracking.tracker import Tracker


def _add_project_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=".", help="the qaflow project (params.yaml, mlruns/) (default: .)")
    p.add_argument("--params", default="params.yaml", help="parameter file, relative to --root (default: params.yaml)")


def _config(args: argparse.Namespace) -> tuple[QAFlowConfig, Path]:
    root = Path(args.root).resolve()
    params = Path(args.params)
    return load_config(params if params.is_absolute() else root / params), root


def _tracker(cfg: QAFlowConfig, root: Path) -> Tracker:
    """The command's one tracker (imported here: `qaflow --help` and the light commands load no MLflow)."""
    from tasks.tracking.tracker import Tracker

    return Tracker.from_config(cfg.tracking, root)


# ------------------------------------------------------------------------------------------- deploy


def add_deploy_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("deploy", help="schedule the retrain flow: serve it here (--serve) or deploy to a work pool")
    p.add_argument("--serve", action="store_true", help="serve the schedule from this process (blocks)")
    p.add_argument("--cron", default=DEFAULT_CRON, help=f'cron schedule, UTC (default: "{DEFAULT_CRON}")')
    p.add_argument("--interval", type=float, default=None, help="also (or instead, with --cron '') every N seconds")
    p.add_argument("--pool", choices=sorted(POOL_BACKENDS), default="cpu", help="hardware: cpu | gpu | ipu")
    p.add_argument("--name", default=None, help="deployment name (default: retrain-<pool>)")
    p.add_argument("--work-pool", default=None, help="work pool (default: qaflow-<pool>; created as a process pool)")
    p.add_argument("--limit", type=int, default=1, help="--serve: flow runs at once (default: 1)")
    p.add_argument(
        "--gpus",
        type=int,
        default=1,
        help="--pool gpu: slots of its device limit qaflow-gpu, one per GPU, when it is created (default: 1)",
    )
    _add_project_flags(p)
    p.set_defaults(func=cmd_deploy)
    return p


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


# ------------------------------------------------------------------------------------------- compare


def add_compare_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("compare", help="table + plots + HTML report of MLflow runs")
    p.add_argument("--experiment", default=None, help="experiment name (default: tracking.experiment_name)")
    p.add_argument(
        "--runs",
        nargs="+",
        default=None,
        metavar="ID",
        help="compare these run ids instead (two runs: also F1 by error slice side by side, a then b)",
    )
    p.add_argument("--metric", default="f1", help="sort and plot by this metric (default: f1)")
    p.add_argument("--output", default=None, help="output directory (default: <root>/outputs/compare)")
    p.add_argument("--no-log", action="store_true", help="do not log the report as an MLflow comparison run")
    _add_project_flags(p)
    p.set_defaults(func=cmd_compare)
    return p


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tasks.pipeline.compare import compare, rich_slice_table, rich_tables

    cfg, root = _config(args)
    if args.experiment:
        cfg.tracking.experiment_name = args.experiment
    out = Path(args.output) if args.output else compare_dir(root)
    result = compare(
        _tracker(cfg, root), run_ids=args.runs or [], metric=args.metric, output_dir=out, log=not args.no_log,
        title=f"qaflow runs: {cfg.tracking.experiment_name}",
    )  # fmt: skip
    console = Console(width=None if sys.stdout.isatty() else 220)
    for table in rich_tables(result.rows, title=f"{cfg.tracking.experiment_name}: {len(result.rows)} run(s)"):
        console.print(table)
    if result.slices and result.slice_runs:
        console.print(rich_slice_table(result.slices, result.slice_runs))
    elif args.runs and len(args.runs) == 2:
        console.print("(no error-slice table: one of the two runs logged no slices)")
    for key, path in result.files.items():
        console.print(f"{key}: {path}")
    if result.mlflow_run_id:
        console.print(f"logged as MLflow run {result.mlflow_run_id} (artifacts under comparison/)")
    return 0


# ------------------------------------------------------------------------------------------- promote


def add_promote_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("promote", help="promote the challenger to champion if it is better (or --rollback)")
    p.add_argument("--margin", type=float, default=0.5, help="F1 points the challenger must gain (default: 0.5)")
    p.add_argument("--guard", default="HasAns_f1,NoAns_f1", help="comma list of metrics that must not regress")
    p.add_argument("--tolerance", type=float, default=0.0, help="allowed drop of a guarded metric (default: 0)")
    p.add_argument("--metric", default="f1", help="the metric to improve (default: f1)")
    p.add_argument("--eval-data", default=None, help="re-score both versions on this file")
    p.add_argument("--suite", default=None, help="gate on this evaluation suite (default: evaluation.suite)")
    p.add_argument("--rollback", action="store_true", help="restore the previous champion")
    _add_project_flags(p)
    p.set_defaults(func=cmd_promote)
    return p


def cmd_promote(args: argparse.Namespace) -> int:
    from tasks.pipeline.promote import promote, rollback

    cfg, root = _config(args)
    tracker = _tracker(cfg, root)
    if args.rollback:
        decision = rollback(tracker)
    else:
        guards = tuple(g.strip() for g in args.guard.split(",") if g.strip())
        decision = promote(
            tracker, cfg, root, margin=args.margin, guards=guards, tolerance=args.tolerance, metric=args.metric,
            eval_data=Path(args.eval_data) if args.eval_data else None, suite=args.suite,
        )  # fmt: skip
    if decision.suite_table:
        from tasks.pipeline.suites import GateRow, format_gate

        print(f"suite {decision.suite}:\n" + format_gate([GateRow(**r) for r in decision.suite_table]), file=sys.stderr)
    print(decision.dumps())
    return 0


# ------------------------------------------------------------------------------------------- push-to-hub


def add_push_to_hub_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("push-to-hub", help="upload the champion (weights, tokenizer, model card) to the HF Hub")
    p.add_argument("--repo-id", default=None, help="hub repository, user/name (required unless --dry-run)")
    p.add_argument("--dry-run", default=None, metavar="DIR", help="only write the folder that would be uploaded")
    p.add_argument("--token-file", default=None, help="file holding the token (default: env HF_TOKEN)")
    p.add_argument("--alias", default="champion", help="which version to push (default: champion)")
    p.add_argument("--endpoint", default=None, help="hub URL (default: env HF_ENDPOINT or huggingface.co)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    _add_project_flags(p)
    p.set_defaults(func=cmd_push_to_hub)
    return p


def cmd_push_to_hub(args: argparse.Namespace) -> int:
    from tasks.pipeline.hub import HubError, assert_no_secret, build_hub_folder, find_token, push_to_hub, resolve_token

    cfg, root = _config(args)
    if args.dry_run:
        folder = build_hub_folder(_tracker(cfg, root), Path(args.dry_run), alias=args.alias, repo_id=args.repo_id)
        token = find_token(args.token_file)
        if token:  # the same secret scan a real push runs before uploading
            assert_no_secret(folder.path, token)
        print(json.dumps({"dry_run": str(folder.path), "model": folder.model, "version": folder.version,
                          "files": folder.files}, indent=2))  # fmt: skip
        return 0
    if not args.repo_id:
        raise HubError("--repo-id is required (or use --dry-run DIR)")
    token = resolve_token(args.token_file)
    pushed = push_to_hub(
        _tracker(cfg, root), args.repo_id, token, alias=args.alias, endpoint=args.endpoint,
        private=args.private or None,
    )  # fmt: skip
    summary = {"repo_id": pushed.repo_id, "model": pushed.model, "version": pushed.version,
               "endpoint": pushed.endpoint, "commit_url": pushed.commit_url, "files": pushed.files}  # fmt: skip
    print(json.dumps(summary, indent=2))
    return 0


# ------------------------------------------------------------------------------------------- answer


def add_answer_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("answer", help="answer one question with a registered model (the MLflow pyfunc)")
    p.add_argument("--model", default=None, help="model URI (default: models:/<registered model>@champion)")
    p.add_argument("--question", required=True)
    p.add_argument("--context", required=True, help="the passage (or @FILE to read it from a file)")
    _add_project_flags(p)
    p.set_defaults(func=cmd_answer)
    return p


def read_context(value: str) -> str:
    """The passage itself, or `@FILE`: the text of that file."""
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    if not path.is_file():
        raise FileNotFoundError(f"--context {value}: {path} is not a file")
    return path.read_text(encoding="utf-8")


def cmd_answer(args: argparse.Namespace) -> int:
    cfg, root = _config(args)
    uri = args.model or f"models:/{cfg.tracking.registered_model_name}@champion"
    context = read_context(args.context)
    model = _tracker(cfg, root).load_pyfunc(uri)  # a URI it cannot load: ModelLoadError, one line
    row = model.predict([{"question": args.question, "context": context}]).to_dict(orient="records")[0]
    row.pop("id", None)
    print(json.dumps({"model": uri, "question": args.question, **row}, indent=2, default=float))
    return 0


# ------------------------------------------------------------------------------------------- standalone
