"""Prediction subcommands of `qaflow`: predict, postprocess, score."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flows.commands.common import (
    FLAG_SECTIONS,
    Subparsers,
    add_launch_flags,
    config_flags,
    config_from_args,
    launch_from_args,
)


def add_parsers(sub: Subparsers, command: str | None) -> None:
    pr = sub.add_parser("predict", help="batched streaming inference + n-best post-processing (+ score)")
    pr.add_argument("--model_dir", required=True)
    pr.add_argument(
        "--data", default=None, help="data to predict on, labeled or not (default: test_file, else validation_file)"
    )
    pr.add_argument("--output_dir", required=True)
    pr.add_argument("--no_raw", action="store_true", help="do not save raw logits for re-post-processing")
    pr.add_argument("--no_score", action="store_true", help="do not score against the data's answers")
    add_launch_flags(pr)
    config_flags(pr, FLAG_SECTIONS, command)
    pr.set_defaults(handler=cmd_predict, checked_output=("--output_dir", "dir"))

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
    pp.set_defaults(handler=cmd_postprocess, checked_output=("--output_dir", "dir"))

    s = sub.add_parser("score", help="official SQuAD v1.1/v2.0 EM/F1 of a predictions file")
    s.add_argument("--data", required=True, help="SQuAD-format dataset (version detected from the file)")
    s.add_argument("--predictions", required=True, help="JSON object {question id: answer text}")
    s.add_argument("--na-probs", "--na_probs", dest="na_probs", help="JSON {id: no-answer probability} (v2)")
    s.add_argument("--na-prob-thresh", "--na_prob_thresh", dest="na_prob_thresh", type=float, default=1.0)
    s.set_defaults(handler=cmd_score)


def cmd_predict(args: argparse.Namespace) -> int:
    from tasks.pipeline.prediction import predict_from_config, predict_on_workers
    from tasks.train.hardware import ResultOnAnotherNode

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


def cmd_score(args: argparse.Namespace) -> int:
    from tasks.core.scoring import score_files

    result = score_files(args.data, args.predictions, args.na_probs, args.na_prob_thresh)
    print(json.dumps(result, indent=2))
    return 0
