"""Model-registry subcommands of `qaflow`: compare, promote, push-to-hub, answer."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flows.commands.common import Subparsers, add_project_flags, project_config, project_tracker
from tasks.core.layout import compare_dir


def add_parsers(sub: Subparsers, command: str | None) -> None:
    cp = sub.add_parser("compare", help="table + plots + HTML report of MLflow runs")
    cp.add_argument("--experiment", default=None, help="experiment name (default: tracking.experiment_name)")
    cp.add_argument(
        "--runs",
        nargs="+",
        default=None,
        metavar="ID",
        help="compare these run ids instead (two runs: also F1 by error slice side by side, a then b)",
    )
    cp.add_argument("--metric", default="f1", help="sort and plot by this metric (default: f1)")
    cp.add_argument("--output", default=None, help="output directory (default: <root>/outputs/compare)")
    cp.add_argument("--no-log", action="store_true", help="do not log the report as an MLflow comparison run")
    add_project_flags(cp)
    cp.set_defaults(handler=cmd_compare, checked_output=("--output", "dir"), project_outputs=True)

    pm = sub.add_parser("promote", help="promote the challenger to champion if it is better (or --rollback)")
    pm.add_argument("--margin", type=float, default=0.5, help="F1 points the challenger must gain (default: 0.5)")
    pm.add_argument("--guard", default="HasAns_f1,NoAns_f1", help="comma list of metrics that must not regress")
    pm.add_argument("--tolerance", type=float, default=0.0, help="allowed drop of a guarded metric (default: 0)")
    pm.add_argument("--metric", default="f1", help="the metric to improve (default: f1)")
    pm.add_argument("--eval-data", default=None, help="re-score both versions on this file")
    pm.add_argument("--suite", default=None, help="gate on this evaluation suite (default: evaluation.suite)")
    pm.add_argument("--rollback", action="store_true", help="restore the previous champion")
    pm.add_argument("--force", action="store_true", help="promote the challenger even where it is refused (the "
                   "overridden reason is printed and kept as version tag qaflow.promotion.forced)")  # fmt: skip
    add_project_flags(pm)
    pm.set_defaults(handler=cmd_promote, project_outputs=True)

    ph = sub.add_parser("push-to-hub", help="upload the champion (weights, tokenizer, model card) to the HF Hub")
    ph.add_argument("--repo-id", default=None, help="hub repository, user/name (required unless --dry-run)")
    ph.add_argument("--dry-run", default=None, metavar="DIR", help="only write the folder that would be uploaded")
    ph.add_argument("--token-file", default=None, help="file holding the token (default: env HF_TOKEN)")
    ph.add_argument("--alias", default="champion", help="which version to push (default: champion)")
    ph.add_argument("--endpoint", default=None, help="hub URL (default: env HF_ENDPOINT or huggingface.co)")
    ph.add_argument("--private", action="store_true", help="create the repository private")
    add_project_flags(ph)
    ph.set_defaults(handler=cmd_push_to_hub)

    an = sub.add_parser("answer", help="answer one question with a registered model (the MLflow pyfunc)")
    an.add_argument("--model", default=None, help="model URI (default: models:/<registered model>@champion)")
    an.add_argument("--question", required=True)
    an.add_argument("--context", required=True, help="the passage (or @FILE to read it from a file)")
    add_project_flags(an)
    an.set_defaults(handler=cmd_answer)


def cmd_compare(args: argparse.Namespace) -> int:
    from rich.console import Console

    from tasks.pipeline.compare import compare, rich_slice_table, rich_tables

    cfg, root = project_config(args)
    if args.experiment:
        cfg.tracking.experiment_name = args.experiment
    out = Path(args.output) if args.output else compare_dir(root)
    result = compare(
        project_tracker(cfg, root), run_ids=args.runs or [], metric=args.metric, output_dir=out, log=not args.no_log,
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


def cmd_promote(args: argparse.Namespace) -> int:
    """The decision as JSON on stdout; on stderr the registered versions and, for a refusal, one line (exit 2)."""
    from tasks.pipeline.promote import promote, rollback
    from tasks.pipeline.standings import Standing, format_standings

    cfg, root = project_config(args)
    tracker = project_tracker(cfg, root)
    if args.rollback:
        if args.force:
            raise ValueError("--force: not used with --rollback (a rollback is never refused on scores)")
        decision = rollback(tracker)
    else:
        guards = tuple(g.strip() for g in args.guard.split(",") if g.strip())
        decision = promote(
            tracker, cfg, root, margin=args.margin, guards=guards, tolerance=args.tolerance, metric=args.metric,
            eval_data=Path(args.eval_data) if args.eval_data else None, suite=args.suite, force=args.force,
        )  # fmt: skip
    if decision.suite_table:
        from tasks.pipeline.suites import GateRow, format_gate

        print(f"suite {decision.suite}:\n" + format_gate([GateRow(**r) for r in decision.suite_table]), file=sys.stderr)
    print(decision.dumps())
    if decision.standings:
        rows = [Standing(**{**r, "aliases": tuple(r["aliases"])}) for r in decision.standings]
        print(f"registered versions of {decision.model}:\n{format_standings(rows)}", file=sys.stderr)
    if decision.action == "refuse":
        print(f"qaflow promote: refused: {decision.reason}", file=sys.stderr)
        return 2
    if decision.forced:
        print(f"qaflow promote: forced: {decision.reason}", file=sys.stderr)
    return 0


def cmd_push_to_hub(args: argparse.Namespace) -> int:
    from tasks.pipeline.hub import HubError, assert_no_secret, build_hub_folder, find_token, push_to_hub, resolve_token

    cfg, root = project_config(args)
    if args.dry_run:
        tracker = project_tracker(cfg, root)
        folder = build_hub_folder(tracker, Path(args.dry_run), alias=args.alias, repo_id=args.repo_id)
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
        project_tracker(cfg, root), args.repo_id, token, alias=args.alias, endpoint=args.endpoint,
        private=args.private or None,
    )  # fmt: skip
    summary = {"repo_id": pushed.repo_id, "model": pushed.model, "version": pushed.version,
               "endpoint": pushed.endpoint, "commit_url": pushed.commit_url, "files": pushed.files}  # fmt: skip
    print(json.dumps(summary, indent=2))
    return 0


def read_context(value: str) -> str:
    """The passage itself, or `@FILE`: the text of that file."""
    if not value.startswith("@"):
        return value
    path = Path(value[1:])
    if not path.is_file():
        raise FileNotFoundError(f"--context {value}: {path} is not a file")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"--context {value}: not UTF-8 text (byte {exc.start})") from None


def cmd_answer(args: argparse.Namespace) -> int:
    from tasks.core.data import check_text
    from tasks.pipeline.serving import load_qa_model
    from tasks.pipeline.standings import require_model

    cfg, root = project_config(args)
    uri = args.model or f"models:/{cfg.tracking.registered_model_name}@champion"
    context = check_text(read_context(args.context), f"--context {args.context}", "context")
    check_text(args.question, "--question", "question")  # refused before the tracking store or any model is asked
    tracker = project_tracker(cfg, root)
    require_model(tracker, uri)  # a missing alias: one line saying what to run
    model = load_qa_model(tracker, uri)  # qaflow's own models only; a URI it cannot load: one line
    row = model.predict(None, [{"question": args.question, "context": context}]).to_dict(orient="records")[0]
    row.pop("id", None)
    print(json.dumps({"model": uri, "question": args.question, **row}, indent=2, default=float))
    return 0
