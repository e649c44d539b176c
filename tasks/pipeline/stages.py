"""The DVC stage bodies (`prepare`, `featurize`, run by `dvc repro` through `qaflow stage ...`) and data splits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import ConfigError, QAFlowConfig
from tasks.core.data import (
    QADataset,
    dataset_summary,
    load_dataset_file,
    load_hf_dataset,
    split_by_article,
    to_squad_json,
)
from tasks.core.family import ModelFamily, TrainFeatureSpec
from tasks.core.features import count_features, fit_questions, prepare_eval_features, save_features
from tasks.core.io import write_json_atomic
from tasks.core.specs import ModelSpec, feature_settings
from tasks.families.registry import resolve_family

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


def train_feature_spec(cfg: QAFlowConfig) -> TrainFeatureSpec:
    return TrainFeatureSpec(
        windows=feature_settings(cfg),
        max_answer_length=cfg.postprocess.max_answer_length,
        num_proc=cfg.features.preprocessing_num_workers,
    )


def build_train_features(cfg: QAFlowConfig, family: ModelFamily, examples: list, tokenizer: Any) -> Any:
    """Training features of the configured family (windows with span labels, or seq2seq pairs).

    Windowed families first apply `features.question_policy` to over-long questions (counted in the log).
    """
    spec = train_feature_spec(cfg)
    if family.windowed:
        fit = fit_questions(examples, tokenizer, spec.windows)
        if fit.truncated or fit.skipped:
            log.info("training questions: %d truncated, %d skipped (question_policy %s)", len(fit.truncated),
                     len(fit.skipped), spec.windows.question_policy)  # fmt: skip
        examples = fit.examples
    return family.train_features(examples, tokenizer, spec)


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


def featurize(
    cfg: QAFlowConfig, data: Path, output: Path, *, split: str = "train", tokenizer: Any = None
) -> dict[str, Any]:
    """Tokenise `data` into features saved at `output` (.npz): the family's training features, or eval windows."""
    dataset = load_dataset_file(data, policy=cfg.data.bad_record_policy)
    spec = ModelSpec.from_config(cfg)
    tokenizer = tokenizer or load_tokenizer(spec.tokenizer_path)
    if split == "train":
        family = resolve_family(spec.family, spec.path)
        features = build_train_features(cfg, family, dataset.examples, tokenizer)
        family.save_train_features(features, output)
    else:
        features = prepare_eval_features(
            dataset.examples, tokenizer, feature_settings(cfg), num_proc=cfg.features.preprocessing_num_workers,
            progress_desc="featurize eval",
        )  # fmt: skip
        save_features(features, output)
    return {"examples": len(dataset.examples), "features": len(features), "output": str(output)}


def featurize_prepared(cfg: QAFlowConfig, prepared_dir: Path, out_dir: Path) -> dict[str, Any]:
    """DVC stage `featurize`: training features (`train.npz`) for the configured tokenizer and window settings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = ModelSpec.from_config(cfg)
    tokenizer = load_tokenizer(spec.tokenizer_path)
    report = {"train": featurize(cfg, prepared_dir / "train.json", out_dir / "train.npz", tokenizer=tokenizer)}
    evaluation = load_dataset_file(prepared_dir / "eval.json")
    report["eval"] = {"examples": len(evaluation.examples), "features": count_features(
        evaluation.examples, tokenizer, feature_settings(cfg))}  # fmt: skip
    report["settings"] = {**vars(cfg.features), "tokenizer": spec.tokenizer_name}
    write_json_atomic(report, out_dir / "report.json", indent=2)
    return report
