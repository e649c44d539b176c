"""The `qaflow` command: one console script, one subcommand per job.

Hyperparameters come from `params.yaml` (one source of truth) with run_qa.py-style flag overrides
(`--max_seq_length 256 --learning_rate 5e-5`). Bad input ends with a non-zero exit and one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from flows.cli_flags import HUB_HELP, add_config_flags, config_overrides, hub_options, run_steps
from flows.cli_ops import (
    add_answer_parser,
    add_compare_parser,
    add_deploy_parser,
    add_promote_parser,
    add_push_to_hub_parser,
)
from tasks.core.config import RUN_SECTIONS, SECTIONS, ConfigError, QAFlowConfig, load_config

if TYPE_CHECKING:
    from tasks.train.ddp import Launch

DEFAULT_PARAMS = "params.yaml"
# config sections offered as flags; evaluation suites are declared in params.yaml (`--suite NAME` picks one)
FLAG_SECTIONS = [s for s in RUN_SECTIONS if s != "evaluation"]
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, RuntimeError, KeyError)
Handler = Callable[[argparse.Namespace], int]


class UsageError(ValueError):
    """A bad command line (unknown flag, wrong type, bad choice): one line, exit 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad command line raises UsageError (one stderr line from `main`) instead of usage + exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def add_launch_flags(parser: argparse.ArgumentParser) -> None:
    """torchrun's flags for data-parallel training or prediction, one node or several (tasks.train.ddp.Launch)."""
    group = parser.add_argument_group("data-parallel launch (torchrun's flags)")
    group.add_argument("--nproc_per_node", type=int, default=1, help="workers on this node (default: 1)")
    group.add_argument("--nnodes", default="1", help="nodes: N, or MIN:MAX (elastic) (default: 1)")
    group.add_argument("--node_rank", type=int, default=None, help="this node's rank (static rendezvous only)")
    group.add_argument("--rdzv_backend", default="c10d", choices=["c10d", "static", "etcd", "etcd-v2"])
    group.add_argument("--rdzv_endpoint", default=None, help="HOST:PORT of the rendezvous (several nodes)")
    group.add_argument("--rdzv_id", default="qaflow", help="job id, the same on every node (default: qaflow)")
    group.add_argument("--max_restarts", type=int, default=0, help="restarts of a failed worker group (default: 0)")


def launch_from_args(args: argparse.Namespace) -> Launch:
    from tasks.train.ddp import Launch

    return Launch(
        nproc_per_node=args.nproc_per_node, nnodes=args.nnodes, node_rank=args.node_rank,
        rdzv_backend=args.rdzv_backend, rdzv_endpoint=args.rdzv_endpoint, rdzv_id=args.rdzv_id,
        max_restarts=args.max_restarts,
    )  # fmt: skip


def config_from_args(args: argparse.Namespace) -> QAFlowConfig:
    return load_config(args.params, config_overrides(args))


# ----------------------------------------------------------------------------------------- commands


def cmd_score(args: argparse.Namespace) -> int:
    from tasks.core.scoring import score_files

    result = score_files(args.data, args.predictions, args.na_probs, args.na_prob_thresh)
    print(json.dumps(result, indent=2))
    return 0


def cmd_data_inspect(args: argparse.Namespace) -> int:
    from tasks.pipeline.inspect import inspect_dataset

    inspect_dataset(
        args.data,
        tokenizer=args.model,
        max_seq_length=args.max_seq_length,
        doc_stride=args.doc_stride,
        n_examples=args.examples,
        seed=args.seed,
    )
    return 0


def cmd_postprocess(args: argparse.Namespace) -> int:
    from tasks.core.data import load_dataset_file
    from tasks.core.postprocess import NBestSettings
    from tasks.predict import postprocess_raw_dir

    dataset = load_dataset_file(args.data)
    v2 = dataset.version == "2.0" if args.version_2_with_negative is None else args.version_2_with_negative
    settings = NBestSettings(
        n_best_size=args.n_best_size,
        max_answer_length=args.max_answer_length,
        version_2_with_negative=v2,
        null_score_diff_threshold=args.null_score_diff_threshold,
    )
    files = postprocess_raw_dir(Path(args.raw), dataset.examples, settings, Path(args.output_dir)).files
    print(json.dumps({k: str(v) for k, v in files.items()}, indent=2))
    return 0


def cmd_featurize(args: argparse.Namespace) -> int:
    from tasks.pipeline.featurize import featurize

    cfg = config_from_args(args)
    out = featurize(cfg, Path(args.data), Path(args.output), split=args.split)
    print(json.dumps(out, indent=2))
    return 0


def cmd_stage(args: argparse.Namespace) -> int:
    """The DVC stages by hand, with flag overrides (dvc.yaml runs `python -m tasks.pipeline.stages` / `.featurize`)."""
    from tasks.pipeline.featurize import featurize_prepared
    from tasks.pipeline.stages import prepare

    cfg = config_from_args(args)
    if args.stage == "prepare":
        report = prepare(cfg, Path(args.out))
    else:
        report = featurize_prepared(cfg, Path(args.prepared), Path(args.out))
    print(json.dumps(report, indent=2))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """run_qa.py's job: --do_train (the default), then --do_eval / --do_predict, into run_qa's output layout
    (`tasks.core.layout.TrainPaths`), printing run_qa's `***** train metrics *****` blocks (`--json`: one object)."""
    from tasks.pipeline.results import metrics_block
    from tasks.pipeline.stages import load_split
    from tasks.pipeline.train_eval import eval_split

    cfg = config_from_args(args)
    steps = run_steps(args)
    if cfg.train.eval_strategy != "no" and steps.do_train:
        steps.do_eval = True  # as TrainingArguments does: evaluating during training means evaluating
    hub = hub_options(args)
    token = _hub_token(hub)  # checked before any work
    launch = launch_from_args(args)
    later = [(name, split) for name, split, wanted in (("eval", "eval", steps.do_eval),
             ("predict", "test", steps.do_predict)) if wanted]  # fmt: skip
    # their data is checked before any training starts, and loaded once: training and the steps after it share it
    datasets = {split: eval_split(cfg) if name == "eval" else load_split(cfg, split) for name, split in later}
    held: contextlib.AbstractContextManager[dict[str, Any]] = contextlib.nullcontext({})
    if cfg.train.device_concurrency_limit:  # Prefect is imported only when a device limit is asked for
        from flows.device_slot import check_device_limit, device_slot

        check_device_limit(cfg.train.device_concurrency_limit)
        held = device_slot(cfg.train.device_concurrency_limit)
    emit = None if args.json else (lambda split, metrics: print(metrics_block(split, metrics), flush=True))
    with held as slot:
        out = _train_eval_predict(cfg, steps, launch, later, datasets, emit)
    if out is None:  # another node holds the result
        return 0
    if hub.push_to_hub:
        out["hub"] = _push(cfg, hub, token, out)
    if args.json:
        print(json.dumps({**out, **({"device_slot": slot} if slot else {})}, indent=2))
    return 0


def _hub_token(hub: Any) -> str | None:
    """The token a --push_to_hub needs (None for a dry run or no push); a bad hub setting fails here, early."""
    if hub.hub_token:
        raise ConfigError(f"--hub_token: {HUB_HELP['hub_token']}")
    if not hub.push_to_hub:
        given = [n for n in ("hub_model_id", "hub_token_file", "hub_private_repo", "hub_dry_run") if getattr(hub, n)]
        if given:
            raise ConfigError(f"--{given[0]}: needs --push_to_hub")
        return None
    from tasks.pipeline.hub import HubError, check_repo_id, find_token, resolve_token  # imports MLflow: push only

    if hub.hub_dry_run:
        if hub.hub_model_id:
            check_repo_id(hub.hub_model_id)
        return find_token(hub.hub_token_file)  # only for the secret scan of the folder
    if not hub.hub_model_id:
        raise HubError("--push_to_hub needs --hub_model_id user/name (or --hub_dry_run DIR)")
    check_repo_id(hub.hub_model_id)
    return resolve_token(hub.hub_token_file)


def _push(cfg: QAFlowConfig, hub: Any, token: str | None, out: dict[str, Any]) -> dict[str, Any]:
    """Upload the output (or write the dry-run folder); a failure is one line, exit 2, the outputs kept."""
    from tasks.core.layout import TrainPaths
    from tasks.pipeline.hub import assert_no_secret, build_train_folder, push_train_output

    paths = TrainPaths(Path(cfg.train.output_dir))
    metrics = {k: v for k, v in out.items() if isinstance(v, int | float)}
    if hub.hub_dry_run:
        folder = build_train_folder(cfg, paths, Path(hub.hub_dry_run), metrics, repo_id=hub.hub_model_id)
        if token:  # the same secret scan a real push runs before uploading
            assert_no_secret(folder.path, token)
        print(f"hub dry run: {len(folder.files)} files in {folder.path}", file=sys.stderr)
        return {"dry_run": str(folder.path), "files": folder.files}
    pushed = push_train_output(cfg, paths, metrics, hub.hub_model_id, token or "", private=hub.hub_private_repo)
    print(f"pushed {paths.root} to {pushed.endpoint}/{pushed.repo_id} ({pushed.commit_url})", file=sys.stderr)
    return {"repo_id": pushed.repo_id, "endpoint": pushed.endpoint, "commit_url": pushed.commit_url,
            "files": pushed.files}  # fmt: skip


def _train_eval_predict(
    cfg: QAFlowConfig, steps: Any, launch: Any, later: list[tuple[str, str]], datasets: dict[str, Any],
    emit: Callable[[str, dict[str, Any]], None] | None,
) -> dict[str, Any] | None:  # fmt: skip
    """The train command's steps, each saving run_qa's `{step}_results.json` and emitting its metrics as it ends;
    their metrics and files as one flat mapping. None on a node that is not rank 0's (it printed its own line).
    The splits come loaded (`datasets`); the model spec and family are resolved once, for training and the eval /
    predict steps after it."""
    from tasks.core.layout import TrainPaths
    from tasks.core.model_spec import ModelSpec
    from tasks.families.registry import resolve_family
    from tasks.pipeline.results import save_metrics, train_metrics
    from tasks.pipeline.train_eval import predict_step, read_step_results
    from tasks.pipeline.training import predict_on_workers, train_from_config
    from tasks.train.ddp import ResultOnAnotherNode

    paths = TrainPaths(Path(cfg.train.output_dir))
    out: dict[str, Any] = {"output_dir": str(paths.root)}
    model_dir = cfg.model.model_name_or_path
    spec = ModelSpec.from_config(cfg)
    family = resolve_family(spec.family, spec.path)
    epoch = None
    on_workers = [name for name, _ in later] if launch.distributed else []  # steps the DDP workers share
    if steps.do_train:
        if cfg.train.report_to == "mlflow":  # the Trainer's own MLflow callback logs into the project's store
            from tasks.tracking.tracker import Tracker

            Tracker.from_config(cfg.tracking, Path.cwd()).bind_process()  # that callback reads MLflow's globals
        try:
            result = train_from_config(cfg, launch=launch, spec=spec, family=family, eval_set=datasets.get("eval"),
                                       steps=on_workers)  # fmt: skip
        except ResultOnAnotherNode as done:
            print(json.dumps({"node_finished": str(done)}, indent=2))
            return None
        model_dir = str(result.model_dir)
        metrics = train_metrics(result)
        epoch = metrics.get("epoch")
        out.update({"model_dir": model_dir, **metrics})
        if emit:
            emit("train", metrics)
    shared = {}
    if on_workers:  # each worker ran its share of the model; global rank 0 wrote the results
        if not steps.do_train:
            try:
                predict_on_workers(cfg, launch, on_workers)
            except ResultOnAnotherNode as elsewhere:  # global rank 0 ran on another node
                print(json.dumps({"node_finished": str(elsewhere)}, indent=2))
                return None
        shared = {step.name: step for step in read_step_results(paths.steps_file)}
    for name, split in later:
        if on_workers:
            step = shared[name]
        else:
            step = predict_step(cfg, name, model_dir, paths.root, epoch=epoch, dataset=datasets[split], family=family)
        save_metrics(paths, name, step.metrics)
        out.update(step.metrics)
        out.update({f"{name}_{role}": str(path) for role, path in step.files.items()})
        if emit:
            emit(name, step.metrics)
    return out


def cmd_predict(args: argparse.Namespace) -> int:
    from tasks.pipeline.prediction import predict_from_config, predict_on_workers
    from tasks.train.ddp import ResultOnAnotherNode

    cfg = config_from_args(args)
    launch = launch_from_args(args)
    data = args.data or cfg.data.test_file or cfg.data.validation_file
    where = {"model_dir": args.model_dir, "data": data, "output_dir": Path(args.output_dir),
             "save_raw": not args.no_raw, "do_score": not args.no_score}  # fmt: skip
    if launch.distributed:  # torchrun workers, each running its share of the model; rank 0 writes
        try:
            printed = predict_on_workers(cfg, launch, **where)
        except ResultOnAnotherNode as elsewhere:
            printed = {"node_finished": str(elsewhere)}
    else:
        summary = predict_from_config(cfg, **where)
        printed = summary.to_json() if summary is not None else {}
    print(json.dumps(printed, indent=2))
    return 0


def cmd_retrain(args: argparse.Namespace) -> int:
    from flows.retrain import retrain
    from tasks.pipeline.data_stages import check_inputs

    overrides = config_overrides(args)
    root = Path(args.root)
    check_inputs(load_config(root / args.params, overrides), root)  # bad input: one line, before any flow run
    summary = retrain(params_path=args.params, overrides=overrides, force=args.force, root=args.root)
    print(json.dumps(summary, indent=2, default=str))
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

    if args.suite:
        if args.max_samples is not None:
            raise ConfigError("--max-samples: not available with --suite (a suite scores its members whole)")
        root = Path(args.root)
        resolve_suite(load_config(root / args.params), root, args.suite)  # bad suite: one line, before the flow
        from flows.evaluate_flow import evaluate_suite

        result = evaluate_suite(args.model_uri, args.suite, params_path=args.params, root=args.root)
        print_suite_table(result)
        return 0
    load_dataset_file(args.data, max_samples=args.max_samples)  # bad data: one line, before any flow run
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


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: retrain on the bundled sample with the offline MiniLM, then say where to look."""
    import time

    from flows.retrain import retrain

    root = Path(__file__).resolve().parents[1]
    os.chdir(root)
    t0 = time.perf_counter()
    summary = retrain(params_path="params.yaml", root=str(root))
    elapsed = time.perf_counter() - t0
    print_demo_summary(summary, elapsed)
    return 0


def print_demo_summary(summary: dict[str, Any], elapsed: float) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=110)
    if summary["action"] == "skip":
        console.print(
            f"[bold]Nothing changed[/bold] (data version {summary['data_version']}): training skipped; "
            "metrics of the earlier run:"
        )
    table = Table(title=f"qaflow demo ({summary['action']}, {elapsed:.0f} s)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in (summary.get("metrics") or {}).items():
        table.add_row(key, f"{value:.2f}" if isinstance(value, float) else str(value))
    for key in ("train_samples_per_second", "train_steps_per_second", "train_runtime"):
        if key in summary.get("train", {}):
            table.add_row(key, f"{summary['train'][key]:.2f}")
    table.add_row("data version", str(summary.get("data_version")))
    table.add_row("MLflow run", str(summary.get("run_id")))
    if summary.get("version"):
        table.add_row("registered version (challenger)", str(summary["version"]))
    console.print(table)
    if summary.get("slices"):
        print_slices(Path(summary["slices"]), console)
    if summary.get("suite"):
        print_suite_table(summary["suite"], title=f"Evaluation suite {summary['suite']['suite']!r}: the trained model")
    console.print("Look further:")
    console.print(
        "  .venv/bin/mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db   # runs, metrics, slices, suites"
    )
    console.print("  .venv/bin/qaflow compare --runs RUN_A RUN_B                           # two runs, F1 by slice")
    console.print("  .venv/bin/qaflow evaluate --suite demo --model-uri models:/qaflow-qa@challenger   # rescore")
    console.print("  .venv/bin/qaflow promote                                              # suite-gated promotion")


def print_slices(path: Path, console: Any, dimensions: tuple[str, ...] = ("question word", "answer length")) -> None:
    """The dev set's F1 by slice for a few dimensions (all of them in the run's `slices.json` / MLflow table)."""
    from rich.table import Table

    from tasks.pipeline.error_slices import read_slices

    if not path.is_file():
        return
    table = Table(title=f"Dev set by error slice ({path.name}; all dimensions in the MLflow run)")
    for name in ("dimension", "slice", "questions", "EM", "F1"):
        table.add_column(name, justify="left" if name in ("dimension", "slice") else "right")
    for row in read_slices(path):
        if row.dimension in dimensions:
            table.add_row(row.dimension, row.slice, str(row.count), f"{row.exact:.2f}", f"{row.f1:.2f}")
    console.print(table)


def print_suite_table(result: dict[str, Any], title: str | None = None) -> None:
    """The suite's member table (EM/F1 per member and the weighted suite score) and its MLflow run."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    table = Table(title=title or f"suite {result['suite']}: {result['model']}")
    columns = list(result["table"][0])
    for name in columns:
        table.add_column(name, justify="right" if name in {"questions", "weight", "margin", "EM", "F1"} else "left")
    for row in result["table"]:
        table.add_row(*["-" if row[c] is None else str(row[c]) for c in columns])
    summary = result["summary"]
    table.add_row("suite (weighted)", *[""] * (len(columns) - 3), f"{summary['suite_exact']:.2f}",
                  f"{summary['suite_f1']:.2f}")  # fmt: skip
    console.print(table)
    console.print(f"MLflow suite run {result['run_id']} (per-member slices under slices/<member>/)")


# ------------------------------------------------------------------------------------------ parser


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `qaflow` parser; typed config flags are built only for `command` (the subcommand being run)."""

    def config_flags(parser: argparse.ArgumentParser, sections: list[str], *, steps: bool = False) -> None:
        parser.add_argument("--params", default=DEFAULT_PARAMS, help="parameter file (default: params.yaml)")
        if parser.prog.split()[-1] == command:
            add_config_flags(parser, sections, steps=steps)

    p = OneLineParser(prog="qaflow", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks (or QAFLOW_DEBUG=1)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("score", help="official SQuAD v1.1/v2.0 EM/F1 of a predictions file")
    s.add_argument("--data", required=True, help="SQuAD-format dataset (version detected from the file)")
    s.add_argument("--predictions", required=True, help="JSON object {question id: answer text}")
    s.add_argument("--na-probs", "--na_probs", dest="na_probs", help="JSON {id: no-answer probability} (v2)")
    s.add_argument("--na-prob-thresh", "--na_prob_thresh", dest="na_prob_thresh", type=float, default=1.0)
    s.set_defaults(func=cmd_score)

    d = sub.add_parser("data", help="look at datasets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    di = dsub.add_parser("inspect", help="counts, features at given settings and a few random examples")
    di.add_argument("data")
    di.add_argument("--model", default="minilm", help="tokenizer directory or hub id (default: offline MiniLM)")
    di.add_argument("--max_seq_length", type=int, default=384)
    di.add_argument("--doc_stride", type=int, default=128)
    di.add_argument("--examples", type=int, default=3, help="random examples to show")
    di.add_argument("--seed", type=int, default=0)
    di.set_defaults(func=cmd_data_inspect)

    pp = sub.add_parser("postprocess", help="re-run n-best post-processing on saved raw predictions")
    pp.add_argument("--raw", required=True, help="the raw_predictions/ directory written by `qaflow predict`")
    pp.add_argument("--data", required=True, help="the dataset the raw predictions were made on")
    pp.add_argument("--output_dir", required=True)
    pp.add_argument("--n_best_size", type=int, default=20)
    pp.add_argument("--max_answer_length", type=int, default=30)
    pp.add_argument("--null_score_diff_threshold", type=float, default=0.0)
    pp.add_argument(
        "--version_2_with_negative",
        type=lambda v: v.lower() in {"1", "true", "yes"},
        default=None,
        help="allow null answers (default: from the data version)",
    )
    pp.set_defaults(func=cmd_postprocess)

    fz = sub.add_parser("featurize", help="tokenise a dataset into sliding-window features (.npz)")
    fz.add_argument("--data", required=True)
    fz.add_argument("--output", required=True)
    fz.add_argument("--split", choices=["train", "eval"], default="train")
    config_flags(fz, ["model", "features", "data"])
    fz.set_defaults(func=cmd_featurize)

    st = sub.add_parser("stage", help="a DVC pipeline stage (run by `dvc repro`, see dvc.yaml)")
    st.add_argument("stage", choices=["prepare", "featurize"])
    st.add_argument("--out", required=True, help="output directory of the stage")
    st.add_argument("--prepared", default="data/prepared", help="featurize: the prepare stage's output")
    config_flags(st, FLAG_SECTIONS)
    st.set_defaults(func=cmd_stage)

    tr = sub.add_parser(
        "train", help="fine-tune a QA model on the configured backend", usage="qaflow train [flags] (run_qa.py's names)"
    )
    add_launch_flags(tr)
    tr.add_argument("--json", action="store_true", help="print one JSON object (metrics, files) instead of run_qa's "
                    "`***** train metrics *****` blocks")  # fmt: skip
    config_flags(tr, FLAG_SECTIONS, steps=True)
    tr.set_defaults(func=cmd_train)

    rt = sub.add_parser("retrain", help="the retrain flow: DVC stages, train, predict, score, track, register")
    rt.add_argument("--force", action="store_true", help="train even if nothing changed")
    rt.add_argument("--root", default=".", help="the qaflow repository (DVC + params.yaml)")
    config_flags(rt, FLAG_SECTIONS)
    rt.set_defaults(func=cmd_retrain)

    tu = sub.add_parser("tune", help="hyperparameter search (Optuna, resumable); registers the best as challenger")
    tu.add_argument("--root", default=".", help="the qaflow project (params.yaml, outputs/, mlruns/)")
    config_flags(tu, [s for s in SECTIONS if s not in ("ipu", "evaluation")])  # tune trains on cpu/cuda
    tu.set_defaults(func=cmd_tune)

    dm = sub.add_parser("demo", help="the main job on the embedded default (bundled sample, offline MiniLM, CPU)")
    dm.set_defaults(func=cmd_demo)

    ev = sub.add_parser("evaluate", help="the evaluate flow: score a registered model version on a dataset")
    ev.add_argument("--model-uri", "--model_uri", dest="model_uri", default="models:/qaflow-qa@challenger")
    what = ev.add_mutually_exclusive_group(required=True)
    what.add_argument("--data", help="a data file to score on")
    what.add_argument("--suite", help="an evaluation suite of params.yaml (evaluation.suites) to score on")
    ev.add_argument("--max-samples", "--max_samples", dest="max_samples", type=int, default=None)
    ev.add_argument("--params", default="params.yaml")
    ev.add_argument("--root", default=".")
    ev.set_defaults(func=cmd_evaluate)

    bm = sub.add_parser("benchmark", help="the benchmark flow: training throughput per run mode, logged to MLflow")
    bm.add_argument("--features", default="data/features/train.npz", help="training features (featurize stage)")
    bm.add_argument(
        "--modes",
        default=None,
        help="comma-separated run modes: eager, compile, compile-max-autotune (the default three), "
        "eager-grouped, eager-packed, compile-packed",
    )
    bm.add_argument("--root", default=".")
    config_flags(bm, FLAG_SECTIONS)
    bm.set_defaults(func=cmd_benchmark)

    add_deploy_parser(sub)
    add_compare_parser(sub)
    add_promote_parser(sub)
    add_push_to_hub_parser(sub)
    add_answer_parser(sub)

    pr = sub.add_parser("predict", help="batched streaming inference + n-best post-processing (+ score)")
    pr.add_argument("--model_dir", required=True)
    pr.add_argument(
        "--data", default=None, help="data to predict on, labeled or not (default: test_file, else validation_file)"
    )
    pr.add_argument("--output_dir", required=True)
    pr.add_argument("--no_raw", action="store_true", help="do not save raw logits for re-post-processing")
    pr.add_argument("--no_score", action="store_true", help="do not score against the data's answers")
    add_launch_flags(pr)
    config_flags(pr, FLAG_SECTIONS)
    pr.set_defaults(func=cmd_predict)
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
        print(f"{prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("httpx", "httpcore", "alembic", "mlflow.store.db.utils"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        check_params_file(args)
        return int(args.func(args))
    except (ConfigError, *USER_ERRORS) as exc:
        if args.verbose or os.environ.get("QAFLOW_DEBUG", "") not in ("", "0"):
            raise
        print(f"qaflow {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


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


def _one_line(exc: BaseException) -> Any:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = f"missing key {text}"
    return " ".join(text.split())


if __name__ == "__main__":
    raise SystemExit(main())
