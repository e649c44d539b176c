"""The DVC stage `prepare` (validated, normalised train/eval splits) and the data splits the configuration names.

`python -m tasks.pipeline.stages --out data/prepared` is the stage's command (dvc.yaml); it imports only data
loading and validation, so the stage re-runs when they (or the raw data, or `data` parameters) change, not when
features, models or post-processing do. The `featurize` stage is `tasks.pipeline.featurize`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from tasks.core.config import ConfigError, QAFlowConfig
from tasks.core.data import (
    QADataset,
    dataset_summary,
    load_dataset_file,
    load_hf_dataset,
    split_by_article,
    to_squad_json,
)
from tasks.core.io import write_json_atomic
from tasks.pipeline.stage_command import run_stage

log = logging.getLogger(__name__)


HF_SPLITS = {"train": "train", "eval": "validation", "test": "test"}  # run_qa.py's split names


def load_split(cfg: QAFlowConfig, split: str, path: str | Path | None = None) -> QADataset:
    """The train, eval or test examples the config asks for, as run_qa.py picks them.

    `path` (a file or save_to_disk directory) wins; else `data.dataset_name` (its train / validation / test
    split); else the configured files (`split_eval_fraction`: an article split of train_file). Test data may be
    unlabeled (predictions, no score). Limits: max_train_samples / max_eval_samples / max_predict_samples.
    """
    d = cfg.data
    limit = {"train": d.max_train_samples, "eval": d.max_eval_samples, "test": d.max_predict_samples}[split]
    labels = "optional" if split == "test" else "required"
    if path is None and d.dataset_name:
        return load_hf_dataset(
            d.dataset_name, HF_SPLITS[split], config=d.dataset_config_name, revision=d.dataset_revision,
            policy=d.bad_record_policy, max_samples=limit, labels=labels,
        )  # fmt: skip
    if d.split_eval_fraction and path is None and split != "test":
        full = load_dataset_file(d.train_file, policy=d.bad_record_policy)
        train, evaluation = split_by_article(full, d.split_eval_fraction, d.split_seed)
        chosen = train if split == "train" else evaluation
        if limit is not None:
            chosen.examples = chosen.examples[:limit]
        return chosen
    source = path or {"train": d.train_file, "eval": d.validation_file, "test": d.test_file}[split]
    if source is None:
        raise ConfigError("data.test_file: --do_predict needs a test_file (or a dataset_name with a test split)")
    return load_dataset_file(source, policy=d.bad_record_policy, max_samples=limit, labels=labels)


def prepare(cfg: QAFlowConfig, out_dir: Path) -> dict[str, Any]:
    """DVC stage `prepare`: validate the raw data and write normalised train/eval SQuAD JSON plus a data report."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    for split in ("train", "eval"):
        dataset = load_split(cfg, split)
        write_json_atomic(to_squad_json(dataset), out_dir / f"{split}.json")
        report[split] = {**dataset_summary(dataset), "source": dataset.source}
        report[split]["skipped_records"] = [str(s) for s in dataset.skipped[:20]]
    write_json_atomic(report, out_dir / "report.json", indent=2)
    return report


def _prepare_stage(cfg: QAFlowConfig, args: argparse.Namespace) -> dict[str, Any]:
    return prepare(cfg, args.out)


def main(argv: list[str] | None = None) -> int:
    return run_stage("prepare", _prepare_stage, argv)


if __name__ == "__main__":
    raise SystemExit(main())
