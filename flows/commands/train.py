"""Training subcommand of `qaflow`: train (run_qa.py's job: train, then eval / predict, then maybe a hub push)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flows.cli_flags import HUB_HELP, hub_options, run_steps
from flows.commands.common import (
    FLAG_SECTIONS,
    Subparsers,
    add_launch_flags,
    config_flags,
    config_from_args,
    launch_from_args,
)
from tasks.core.config import ConfigError, QAFlowConfig
from tasks.core.io import check_output_dir

if TYPE_CHECKING:
    from tasks.train.hardware import HardwareBackend


def add_parsers(sub: Subparsers, command: str | None) -> None:
    tr = sub.add_parser(
        "train", help="fine-tune a QA model on the configured backend", usage="qaflow train [flags] (run_qa.py's names)"
    )
    add_launch_flags(tr)
    tr.add_argument("--json", action="store_true", help="print one JSON object (metrics, files) instead of run_qa's "
                    "`***** train metrics *****` blocks")  # fmt: skip
    config_flags(tr, FLAG_SECTIONS, command, steps=True)
    tr.set_defaults(handler=cmd_train)


def cmd_train(args: argparse.Namespace) -> int:
    """run_qa.py's job: --do_train (the default), then --do_eval / --do_predict, into run_qa's output layout
    (`tasks.core.layout.TrainPaths`), printing run_qa's `***** train metrics *****` blocks (`--json`: one object)."""
    from tasks.pipeline.results import metrics_block
    from tasks.pipeline.stages import load_split
    from tasks.pipeline.train_eval import eval_split
    from tasks.train.hardware import backend_for

    cfg = config_from_args(args)
    check_output_dir(cfg.train.output_dir, "train.output_dir")
    steps = run_steps(args)
    backend = backend_for(cfg) if steps.do_train else None  # chosen once, before any data or model work
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
        out = _train_eval_predict(cfg, steps, launch, later, datasets, emit, backend)
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
    emit: Callable[[str, dict[str, Any]], None] | None, backend: HardwareBackend | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """The train command's steps, each saving run_qa's `{step}_results.json` and emitting its metrics as it ends;
    their metrics and files as one flat mapping. None on a node that is not rank 0's (it printed its own line).
    The splits come loaded (`datasets`); the model spec and family are resolved once, for training and the eval /
    predict steps after it; `backend` is the one training runs on."""
    from tasks.core.layout import TrainPaths
    from tasks.core.model_spec import ModelSpec
    from tasks.families.registry import resolve_family
    from tasks.pipeline.results import save_metrics, train_metrics
    from tasks.pipeline.train_eval import predict_step, read_step_results
    from tasks.pipeline.training import predict_on_workers, train_from_config
    from tasks.train.hardware import ResultOnAnotherNode

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
            result = train_from_config(
                cfg, launch=launch, spec=spec, family=family, eval_set=datasets.get("eval"), backend=backend,
                steps=on_workers,
            )  # fmt: skip
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
