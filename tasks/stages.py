"""Whole steps built from the config: featurize, train, predict (+ score). Used by the CLI, DVC and the flows."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.config import QAFlowConfig
from tasks.data import QADataset, load_dataset_file, split_by_article, to_squad_json
from tasks.family import prepare_family_train_features, resolve_family, save_family_features
from tasks.features import FeatureSettings, count_features, prepare_eval_features
from tasks.io import write_json_atomic
from tasks.metrics import score
from tasks.models import load_tokenizer
from tasks.postprocess import NBestSettings

log = logging.getLogger(__name__)


def feature_settings(cfg: QAFlowConfig) -> FeatureSettings:
    f = cfg.features
    return FeatureSettings(f.max_seq_length, f.doc_stride, f.pad_to_max_length)


def nbest_settings(cfg: QAFlowConfig, data_version: str) -> NBestSettings:
    p = cfg.postprocess
    v2 = data_version == "2.0" if p.version_2_with_negative is None else p.version_2_with_negative
    return NBestSettings(p.n_best_size, p.max_answer_length, v2, p.null_score_diff_threshold)


def load_split(cfg: QAFlowConfig, split: str, path: str | Path | None = None) -> QADataset:
    """The train or eval examples the config asks for (a file, or an article split of the train file)."""
    d = cfg.data
    limit = d.max_train_samples if split == "train" else d.max_eval_samples
    if d.split_eval_fraction and path is None:
        full = load_dataset_file(d.train_file, policy=d.bad_record_policy)
        train, evaluation = split_by_article(full, d.split_eval_fraction, d.split_seed)
        chosen = train if split == "train" else evaluation
        if limit is not None:
            chosen.examples = chosen.examples[:limit]
        return chosen
    source = path or (d.train_file if split == "train" else d.validation_file)
    return load_dataset_file(source, policy=d.bad_record_policy, max_samples=limit)


def prepare(cfg: QAFlowConfig, out_dir: Path) -> dict[str, Any]:
    """DVC stage `prepare`: validate the raw data and write normalised train/eval SQuAD JSON plus a data report."""
    from tasks.data import dataset_summary

    out_dir.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {}
    for split in ("train", "eval"):
        dataset = load_split(cfg, split)
        write_json_atomic(to_squad_json(dataset), out_dir / f"{split}.json")
        report[split] = {**dataset_summary(dataset), "source": dataset.source}
        report[split]["skipped_records"] = [str(s) for s in dataset.skipped[:20]]
    write_json_atomic(report, out_dir / "report.json", indent=2)
    return report


def featurize(cfg: QAFlowConfig, data: Path, output: Path, *, split: str = "train") -> dict[str, Any]:
    """Tokenise `data` into features saved at `output` (.npz); returns a short report."""
    dataset = load_dataset_file(data, policy=cfg.data.bad_record_policy)
    tokenizer = load_tokenizer(cfg.model.tokenizer_name or cfg.model.model_name_or_path)
    if split == "train":
        features = train_features(cfg, dataset.examples, tokenizer)
    else:
        features = prepare_eval_features(
            dataset.examples, tokenizer, feature_settings(cfg), num_proc=cfg.features.preprocessing_num_workers
        )
    save_family_features(features, output)
    return {"examples": len(dataset.examples), "features": len(features), "output": str(output)}


def train_features(cfg: QAFlowConfig, examples: list, tokenizer: Any):
    """Training features for the configured model family (windows with span labels, or seq2seq pairs)."""
    family = resolve_family(cfg.model.model_family, cfg.model.model_name_or_path)
    return prepare_family_train_features(family, examples, tokenizer, cfg)


def featurize_prepared(cfg: QAFlowConfig, prepared_dir: Path, out_dir: Path) -> dict[str, Any]:
    """DVC stage `featurize`: training features (`train.npz`) for the configured tokenizer and window settings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = {"train": featurize(cfg, prepared_dir / "train.json", out_dir / "train.npz", split="train")}
    tokenizer = load_tokenizer(cfg.model.tokenizer_name or cfg.model.model_name_or_path)
    evaluation = load_dataset_file(prepared_dir / "eval.json")
    report["eval"] = {"examples": len(evaluation.examples), "features": count_features(
        evaluation.examples, tokenizer, feature_settings(cfg))}  # fmt: skip
    report["settings"] = {**vars(cfg.features), "tokenizer": cfg.model.tokenizer_name or cfg.model.model_name_or_path}
    write_json_atomic(report, out_dir / "report.json", indent=2)
    return report


def train_from_config(cfg: QAFlowConfig, *, nproc_per_node: int = 1):
    """Load the training split, build features, fine-tune; writes `train_result.json` in the output dir."""
    from tasks.train import train
    from tasks.train.common import write_result

    out = Path(cfg.train.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    dataset = load_split(cfg, "train")
    tokenizer = load_tokenizer(cfg.model.tokenizer_name or cfg.model.model_name_or_path)
    features = train_features(cfg, dataset.examples, tokenizer)
    features_path = out / "train_features.npz"
    save_family_features(features, features_path)
    log.info("training on %d examples -> %d features", len(dataset.examples), len(features))
    result = train(
        cfg, features_path=features_path, data_path=Path(cfg.data.train_file), output_dir=out,
        nproc_per_node=nproc_per_node,
    )  # fmt: skip
    result.metrics.setdefault("train_examples", float(len(dataset.examples)))
    write_result(result, out / "train_result.json")
    return result


def predict_from_config(
    cfg: QAFlowConfig,
    *,
    model_dir: str | Path,
    data: str | Path,
    output_dir: Path,
    save_raw: bool = True,
    do_score: bool = True,
) -> dict[str, Any]:
    """Predict on `data`, post-process, write outputs and (if asked) score them with the official metric."""
    import torch

    from tasks.family import load_model, predict_family
    from tasks.models import resolve_model_path

    dataset = load_split(cfg, "eval", data)
    path = resolve_model_path(str(model_dir))
    family = resolve_family(cfg.model.model_family, path)
    tokenizer = load_tokenizer(path)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.train.backend != "cpu" else "cpu")
    model = load_model(family, path).to(device)
    p = cfg.postprocess
    run = predict_family(
        family, model, tokenizer, dataset.examples, cfg, nbest_settings(cfg, dataset.version), output_dir,
        save_raw=save_raw, device=device, val_max_answer_length=p.val_max_answer_length, num_beams=p.num_beams,
    )  # fmt: skip
    summary: dict[str, Any] = {
        "examples": len(dataset.examples), "squad_version": dataset.version, "model_family": family, **run.metrics
    }  # fmt: skip
    summary["files"] = {k: str(v) for k, v in run.files.items()}
    if do_score:
        metrics = score_dataset(dataset, run.predictions, run.null_odds)
        write_json_atomic(metrics, output_dir / "metrics.json", indent=2)
        summary["metrics"] = metrics
    return summary


def pyfunc_settings(cfg: QAFlowConfig, predicted: dict[str, Any]) -> dict[str, Any]:
    """Inference settings that travel with the logged pyfunc model (same windows and n-best as evaluation)."""
    nbest = nbest_settings(cfg, predicted.get("squad_version", "1.1"))
    return {
        "max_seq_length": cfg.features.max_seq_length,
        "doc_stride": cfg.features.doc_stride,
        "n_best_size": nbest.n_best_size,
        "max_answer_length": nbest.max_answer_length,
        "version_2_with_negative": nbest.version_2_with_negative,
        "null_score_diff_threshold": nbest.null_score_diff_threshold,
    }


def score_dataset(dataset: QADataset, predictions: dict[str, str], null_odds: dict[str, float] | None) -> dict:
    """Official EM/F1 of predictions on exactly these examples (null odds act as the v2 na-probs)."""
    return score(to_squad_json(dataset), predictions, null_odds if dataset.version == "2.0" else None)
