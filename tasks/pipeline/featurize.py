"""The DVC stage `featurize`: training features of the configured family from the prepared splits.

`python -m tasks.pipeline.featurize --prepared data/prepared --out data/features` is the stage's command
(dvc.yaml). It imports the data code, the windows (`tasks.core.features`), the tokenizer loading and each family's
featurize side (`tasks.families.featurizers`), never a family's model, forward pass or post-processing, so the
stage and the data version move only with what changes the features.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import QAFlowConfig
from tasks.core.data import load_dataset_file
from tasks.core.features import count_features, feature_settings, fit_questions, prepare_eval_features, save_features
from tasks.core.featurizer import FamilyFeaturizer, TrainFeatureSpec
from tasks.core.io import write_json_atomic
from tasks.core.model_spec import ModelSpec
from tasks.families.featurizers import resolve_featurizer
from tasks.pipeline.stage_command import run_stage

log = logging.getLogger(__name__)


def train_feature_spec(cfg: QAFlowConfig) -> TrainFeatureSpec:
    return TrainFeatureSpec(
        windows=feature_settings(cfg),
        max_answer_length=cfg.postprocess.max_answer_length,
        num_proc=cfg.features.preprocessing_num_workers,
    )


def build_train_features(cfg: QAFlowConfig, family: FamilyFeaturizer, examples: list, tokenizer: Any) -> Any:
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


def featurize(
    cfg: QAFlowConfig, data: Path, output: Path, *, split: str = "train", tokenizer: Any = None
) -> dict[str, Any]:
    """Tokenise `data` into features saved at `output` (.npz): the family's training features, or eval windows."""
    dataset = load_dataset_file(data, policy=cfg.data.bad_record_policy)
    spec = ModelSpec.from_config(cfg)
    tokenizer = tokenizer or load_tokenizer(spec.tokenizer_path)
    if split == "train":
        family = resolve_featurizer(spec.family, spec.path)
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


def _featurize_stage(cfg: QAFlowConfig, args: argparse.Namespace) -> dict[str, Any]:
    return featurize_prepared(cfg, args.prepared, args.out)


def main(argv: list[str] | None = None) -> int:
    return run_stage("featurize", _featurize_stage, argv, reads_prepared=True)


if __name__ == "__main__":
    raise SystemExit(main())
