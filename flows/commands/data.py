"""Data subcommands of `qaflow`: data inspect, featurize, stage."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flows.commands.common import FLAG_SECTIONS, Subparsers, config_flags, config_from_args


def add_parsers(sub: Subparsers, command: str | None) -> None:
    d = sub.add_parser("data", help="look at datasets")
    dsub = d.add_subparsers(dest="data_command", required=True)
    di = dsub.add_parser("inspect", help="counts, features at given settings and a few random examples")
    di.add_argument("data")
    di.add_argument("--model", default="minilm", help="tokenizer directory or hub id (default: offline MiniLM)")
    di.add_argument("--max_seq_length", type=int, default=384)
    di.add_argument("--doc_stride", type=int, default=128)
    di.add_argument("--examples", type=int, default=3, help="random examples to show")
    di.add_argument("--seed", type=int, default=0)
    di.set_defaults(handler=cmd_data_inspect)

    fz = sub.add_parser("featurize", help="tokenise a dataset into sliding-window features (.npz)")
    fz.add_argument("--data", required=True)
    fz.add_argument("--output", required=True)
    fz.add_argument("--split", choices=["train", "eval"], default="train")
    config_flags(fz, ["model", "features", "data"], command)
    fz.set_defaults(handler=cmd_featurize, checked_output=("--output", "file"))

    st = sub.add_parser("stage", help="a DVC pipeline stage (run by `dvc repro`, see dvc.yaml)")
    st.add_argument("stage", choices=["prepare", "featurize"])
    st.add_argument("--out", required=True, help="output directory of the stage")
    st.add_argument("--prepared", default="data/prepared", help="featurize: the prepare stage's output")
    config_flags(st, FLAG_SECTIONS, command)
    st.set_defaults(handler=cmd_stage, checked_output=("--out", "dir"))


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
