"""Scoring a registered (or any MLflow) QA model on a data set: the work behind `qaflow evaluate` and promotion.

The model predicts with its own stored inference recipe (`tasks.pipeline.serving.QAModel`), so the scores equal
what the retrain logged for the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import mlflow

from tasks.core.data import QADataset, load_dataset_file
from tasks.core.io import file_digest
from tasks.pipeline.error_slices import read_slices
from tasks.pipeline.prediction import predict_dataset
from tasks.pipeline.serving import load_registered_model
from tasks.tracking import tags as tag
from tasks.tracking.runs import log_run
from tasks.tracking.slice_tables import log_slice_table


@dataclass
class Evaluation:
    """Official metrics of one model on one data file, prediction speed and the files written."""

    model_uri: str
    data_path: str
    data_sha256: str
    examples: int
    metrics: dict[str, float]
    speed: dict[str, float]
    files: dict[str, Path] = field(default_factory=dict)


def evaluate_model(model_uri: str, dataset: QADataset, out_dir: Path) -> tuple[dict, dict, dict[str, Path]]:
    """Load `model_uri` (e.g. `models:/qaflow-qa@champion`), predict `dataset`: (metrics, speed, files).

    Files include the error slices (`slices.json`, `slices.png`); a calibrated v2 model also reports its
    `uncalibrated_*` scores.
    """
    qa = load_registered_model(model_uri)  # qaflow's own models only, built without running the model's code
    summary = predict_dataset(qa.predictor, dataset, qa.recipe, Path(out_dir), save_raw=False)
    return summary.metrics or {}, summary.speed, dict(summary.files)


def evaluate_file(model_uri: str, data: str | Path, out_dir: Path, max_samples: int | None = None) -> Evaluation:
    """`evaluate_model` on a data file (any supported format), naming the file by its content digest."""
    dataset = load_dataset_file(data, max_samples=max_samples)
    metrics, speed, files = evaluate_model(model_uri, dataset, out_dir)
    return Evaluation(model_uri, str(data), file_digest(data), len(dataset.examples), metrics, speed, files)


def log_evaluation(evaluation: Evaluation, experiment_id: str) -> str:
    """One MLflow run (kind `evaluation`) with the metrics, speed and prediction files; returns its id."""
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"evaluate {evaluation.model_uri}") as run:
        log_run(
            metrics={**evaluation.metrics, **evaluation.speed},
            artifacts=[(path, "predictions") for name, path in evaluation.files.items() if name != "metrics"],
            tags={tag.KIND: tag.KIND_EVALUATION, tag.MODEL_URI: evaluation.model_uri,
                  tag.EVAL_DATA: evaluation.data_path, tag.EVAL_DATA_SHA256: evaluation.data_sha256},
            environment=False,
        )  # fmt: skip
        if "slices" in evaluation.files:
            log_slice_table(read_slices(evaluation.files["slices"]), run.info.run_id)
        return run.info.run_id
