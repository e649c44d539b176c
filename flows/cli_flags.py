"""Typed, run_qa.py-compatible flags built from the config dataclasses by transformers' `HfArgumentParser`.

Every field of `tasks.core.config` becomes `--<field>` (and `--<field-with-dashes>`), with its type, its
choices (`config.CHOICES`), its help (`config.HELP`) and its built-in default shown. Booleans work bare
(`--bf16`) and with a value (`--bf16 false`); a field that defaults to true also gets `--no_<field>`. A flag that
is not given is absent from the namespace (argparse.SUPPRESS), so params.yaml decides what the user left out.

transformers takes about a second to import, so `flows.cli` adds these flags only to the subcommand being run.
"""

from __future__ import annotations

import argparse
import typing
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from tasks.core.config import CHOICES, HELP, SECTIONS

METAVARS = {int: "INT", float: "FLOAT", str: "STR"}
CONFIG_DEST = "cfg__"  # namespace prefix of config flags
STEP_DEST = "step__"  # namespace prefix of the run_qa.py step flags
HUB_DEST = "hub__"  # namespace prefix of the run_qa.py hub flags


@dataclass
class RunSteps:
    """run_qa.py's steps for `qaflow train`: with none given, it trains (qaflow's default)."""

    do_train: bool = False
    do_eval: bool = False
    do_predict: bool = False


@dataclass
class HubOptions:
    """run_qa.py's hub flags of `qaflow train`: push the output after training (`tasks.pipeline.hub`)."""

    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_token: str | None = None  # refused: a token on the command line leaks (shell history, process list)
    hub_token_file: str | None = None
    hub_private_repo: bool | None = None
    hub_dry_run: str | None = None


HUB_HELP = {
    "push_to_hub": "after training (and --do_eval / --do_predict), upload the model, its tokenizer, run_qa's result "
    "files and a model card to the Hugging Face Hub",
    "hub_model_id": "the hub repository, user/name",
    "hub_token": "not accepted (it would end up in shell history and process lists): set HF_TOKEN, run `hf auth "
    "login`, or pass --hub_token_file",
    "hub_token_file": "file holding the hub token (default: HF_TOKEN, then the token `hf auth login` saved)",
    "hub_private_repo": "create the repository private",
    "hub_dry_run": "with --push_to_hub: write the folder that would be uploaded into this empty directory instead",
}

STEP_HELP = {
    "do_train": "train (the default when no --do_* flag is given)",
    "do_eval": "after training (or on --model_name_or_path alone), predict and score validation_file / the "
    "dataset's validation split into <output_dir>/eval_predictions.json, eval_results.json, ... (run_qa's names; "
    "implied by --eval_strategy)",
    "do_predict": "predict test_file / the dataset's test split into <output_dir>/predict_predictions.json, "
    "predict_results.json, ... (scored if labeled)",
}


def add_config_flags(parser: argparse.ArgumentParser, sections: Sequence[str], *, steps: bool = False) -> None:
    """Add one typed flag per field of `sections` (and the run_qa.py steps and hub flags) to `parser`.

    A subcommand's own flag of the same name (e.g. `predict --output_dir`) wins over the config field.
    """
    from transformers import HfArgumentParser  # ~1 s: only for the subcommand being run

    classes = [SECTIONS[s] for s in sections] + ([RunSteps, HubOptions] if steps else [])
    source = HfArgumentParser(classes, add_help=False)
    group = parser.add_argument_group("parameters (override params.yaml; run_qa.py names)")
    prefixes = {f.name: STEP_DEST for f in fields(RunSteps)} | {f.name: HUB_DEST for f in fields(HubOptions)}
    choices = {key: allowed for (_, key), allowed in CHOICES.items()}
    taken = set(parser._option_string_actions)
    for action in source._actions:
        if any(option in taken for option in action.option_strings):
            continue
        prefix = prefixes.get(action.dest, CONFIG_DEST)
        group.add_argument(*action.option_strings, **_flag_kwargs(action, prefix, choices.get(action.dest)))


def _flag_kwargs(action: argparse.Action, prefix: str, allowed: set[Any] | None) -> dict[str, Any]:
    name = action.dest
    if isinstance(action, argparse._StoreFalseAction):  # `--no_<field>` of a field that defaults to true
        return {"dest": prefix + name, "action": "store_false", "default": argparse.SUPPRESS, "help": f"--{name} false"}
    text = HELP.get(name) or STEP_HELP.get(name) or HUB_HELP[name]
    kwargs: dict[str, Any] = {
        "dest": prefix + name, "type": action.type, "nargs": action.nargs, "const": action.const,
        "default": argparse.SUPPRESS, "help": f"{text} (default: {action.default})",
    }  # fmt: skip
    if typing.get_origin(action.type) is not None:  # a nested list (e.g. tune.window_choices): one YAML value
        kwargs.update(type=str, nargs=None, metavar="YAML")
    elif action.type is not None and getattr(action.type, "__name__", "") == "string_to_bool":
        kwargs.update(nargs="?", const=True, metavar="{true,false}")  # bare `--flag` means true, as in run_qa.py
    if allowed is not None:
        kwargs["choices"] = sorted(str(value) for value in allowed if value is not None)
    elif action.type in METAVARS and "metavar" not in kwargs:
        kwargs["metavar"] = METAVARS[action.type]
    return kwargs


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given on the command line, by name."""
    return {k[len(CONFIG_DEST) :]: v for k, v in vars(args).items() if k.startswith(CONFIG_DEST)}


def hub_options(args: argparse.Namespace) -> HubOptions:
    """The hub flags given (`qaflow train`)."""
    return HubOptions(**{k[len(HUB_DEST) :]: v for k, v in vars(args).items() if k.startswith(HUB_DEST)})


def run_steps(args: argparse.Namespace) -> RunSteps:
    """The --do_* flags given; none given means train only."""
    given = {k[len(STEP_DEST) :]: bool(v) for k, v in vars(args).items() if k.startswith(STEP_DEST)}
    if not given:
        return RunSteps(do_train=True)
    if not any(given.values()):
        raise ValueError("--do_train, --do_eval and --do_predict are all false: nothing to do")
    return RunSteps(**given)
