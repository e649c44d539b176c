"""Flow subcommands of `qaflow` (each runs Prefect flows): demo, retrain, tune, evaluate, benchmark."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from flows.cli_flags import config_overrides
from flows.commands.common import FLAG_SECTIONS, Subparsers, config_flags
from tasks.core.config import SECTIONS, ConfigError, load_config
from tasks.core.io import check_output_dir
from tasks.core.layout import outputs_dir


def add_parsers(sub: Subparsers, command: str | None) -> None:
    dm = sub.add_parser("demo", help="the main job on the embedded default (bundled sample, offline MiniLM, CPU)")
    dm.set_defaults(handler=cmd_demo, runs_flows=True)

    rt = sub.add_parser("retrain", help="the retrain flow: DVC stages, train, predict, score, track, register")
    rt.add_argument("--force", action="store_true", help="train even if nothing changed")
    rt.add_argument("--root", default=".", help="the qaflow repository (DVC + params.yaml)")
    rt.add_argument("--json", action="store_true", help="print the run's summary as one JSON object instead of the "
                    "tables")  # fmt: skip
    config_flags(rt, FLAG_SECTIONS, command)
    rt.set_defaults(handler=cmd_retrain, project_outputs=True, runs_flows=True)

    tu = sub.add_parser("tune", help="hyperparameter search (Optuna, resumable); registers the best as challenger")
    tu.add_argument("--root", default=".", help="the qaflow project (params.yaml, outputs/, mlruns/)")
    config_flags(tu, [s for s in SECTIONS if s not in ("ipu", "evaluation")], command)  # tune trains on cpu/cuda
    tu.set_defaults(handler=cmd_tune, project_outputs=True, runs_flows=True)

    ev = sub.add_parser("evaluate", help="the evaluate flow: score a registered model version on a dataset")
    ev.add_argument("--model-uri", "--model_uri", dest="model_uri", default="models:/qaflow-qa@challenger")
    what = ev.add_mutually_exclusive_group(required=True)
    what.add_argument("--data", help="a data file to score on")
    what.add_argument("--suite", help="an evaluation suite of params.yaml (evaluation.suites) to score on")
    ev.add_argument("--max-samples", "--max_samples", dest="max_samples", type=int, default=None)
    ev.add_argument("--params", default="params.yaml")
    ev.add_argument("--root", default=".")
    ev.set_defaults(handler=cmd_evaluate, project_outputs=True, runs_flows=True)

    bm = sub.add_parser("benchmark", help="the benchmark flow: training throughput per run mode, logged to MLflow")
    bm.add_argument("--features", default="data/features/train.npz", help="training features (featurize stage)")
    bm.add_argument(
        "--modes",
        default=None,
        help="comma-separated run modes: eager, compile, compile-max-autotune (the default three), "
        "eager-grouped, eager-packed, compile-packed",
    )
    bm.add_argument("--root", default=".")
    config_flags(bm, FLAG_SECTIONS, command)
    bm.set_defaults(handler=cmd_benchmark, project_outputs=True, runs_flows=True)


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: retrain on the bundled sample with the offline MiniLM, then say where to look."""
    from flows.retrain import retrain
    from flows.summary_tables import print_next_steps, print_run_summary

    root = Path(__file__).resolve().parents[2]  # the repository
    check_output_dir(outputs_dir(root), "the demo's outputs")
    os.chdir(root)
    t0 = time.perf_counter()
    summary = retrain(params_path="params.yaml", root=str(root))
    print_run_summary(summary, f"qaflow demo ({summary['action']}, {time.perf_counter() - t0:.0f} s)")
    print_next_steps()
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from flows.retrain import retrain
    from flows.summary_tables import print_run_summary
    from tasks.pipeline.data_stages import check_inputs
    from tasks.train.hardware import check_backend

    overrides = config_overrides(args)
    root = Path(args.root)
    cfg = load_config(root / args.params, overrides)
    check_backend(cfg)  # a backend name or setting qaflow cannot honour: one line, before any flow run
    check_inputs(cfg, root)  # so is bad input
    t0 = time.perf_counter()
    summary = retrain(params_path=args.params, overrides=overrides, force=args.force, root=args.root)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_run_summary(summary, f"qaflow retrain ({summary['action']}, {time.perf_counter() - t0:.0f} s)")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from flows.tune import tune
    from tasks.pipeline.tuning import check_tunable, check_windows, load_tune_data

    overrides = {k[5:]: v for k, v in vars(args).items() if k.startswith("cfg__") and v is not None}
    root = Path(args.root)
    cfg = load_config(root / args.params, overrides)
    check_tunable(cfg, overrides)  # bad settings, data, model or windows: one line, before any flow run
    check_windows(cfg, load_tune_data(cfg, root))
    summary = tune(params_path=args.params, overrides=overrides, root=args.root)
    print(json.dumps(summary, indent=2, default=str))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tasks.core.data import load_dataset_file
    from tasks.core.suites import resolve_suite
    from tasks.pipeline.standings import require_model
    from tasks.tracking.tracker import Tracker

    root = Path(args.root)
    cfg = load_config(root / args.params)
    if args.suite:
        if args.max_samples is not None:
            raise ConfigError("--max-samples: not available with --suite (a suite scores its members whole)")
        resolve_suite(cfg, root, args.suite)  # bad suite: one line, before the flow
    else:
        load_dataset_file(args.data, max_samples=args.max_samples)  # bad data: one line, before any flow run
    require_model(Tracker.from_config(cfg.tracking, root), args.model_uri)  # a missing alias: what to run
    if args.suite:
        from flows.evaluate_flow import evaluate_suite
        from flows.summary_tables import print_suite_table

        result = evaluate_suite(args.model_uri, args.suite, params_path=args.params, root=args.root)
        print_suite_table(result)
        return 0
    from flows.evaluate_flow import evaluate

    result = evaluate(args.model_uri, args.data, args.max_samples, params_path=args.params, root=args.root)
    print(json.dumps({"run_id": result["run_id"], **result["metrics"]}, indent=2))
    return 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from flows.benchmark import benchmark
    from tasks.pipeline.benchmark import ALL_MODES

    overrides = config_overrides(args)
    modes = args.modes.split(",") if args.modes else None
    unknown = sorted(set(modes or ()) - set(ALL_MODES))
    if unknown:
        raise ConfigError(f"--modes: {', '.join(unknown)} not among {', '.join(ALL_MODES)}")
    rows = benchmark(args.features, params_path=args.params, overrides=overrides, modes=modes, root=args.root)
    print(json.dumps(rows, indent=2))
    return 0
