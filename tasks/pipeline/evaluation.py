"""Scoring a registered (or any MLflow) QA model on a data set: the work behind `qaflow evaluate` and promotion.

The model predicts with its own stored inference recipe (`tasks.pipeline.serving.QAModel`), so the scores equal
what the retrain logged for the same data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from tasks.core.data import QADataset, load_dataset_file
from tasks.core.io import file_digest
from tasks.pipeline.error_slices import read_slices
from tasks.pipeline.prediction import predict_dataset
from tasks.pipeline.serving import load_qa_model
from tasks.tracking import tags as tag
from tasks.tracking.tracker import Tracker


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


def evaluate_model(
    tracker: Tracker, model_uri: str, dataset: QADataset, out_dir: Path
) -> tuple[dict, dict, dict[str, Path]]:
    """Load `model_uri` (e.g. `models:/qaflow-qa@champion`) from the tracker's store, predict `dataset`:
    (metrics, speed, files).

    Files include the error slices (`slices.json`, `slices.png`); a calibrated v2 model also reports its
    `uncalibrated_*` scores.
    """
    qa = load_qa_model(tracker, model_uri)
    summary = predict_dataset(qa.predictor, dataset, qa.recipe, Path(out_dir), save_raw=False)
    return summary.metrics or {}, summary.speed, dict(summary.files)


def evaluate_file(
    tracker: Tracker, model_uri: str, data: str | Path, out_dir: Path, max_samples: int | None = None
) -> Evaluation:
    """`evaluate_model` on a data file (any supported format), naming the file by its content digest."""
    dataset = load_dataset_file(data, max_samples=max_samples)
    metrics, speed, files = evaluate_model(tracker, model_uri, dataset, out_dir)
    return Evaluation(model_uri, str(data), file_digest(data), len(dataset.examples), metrics, speed, files)


def log_evaluation(tracker: Tracker, evaluation: Evaluation) -> str:
    """One run (kind `evaluation`) with the metrics, speed and prediction files; returns its id."""
    with tracker.run(f"evaluate {evaluation.model_uri}") as run_id:
        tracker.log_run(
            run_id,
            metrics={**evaluation.metrics, **evaluation.speed},
            artifacts=[(path, "predictions") for name, path in evaluation.files.items() if name != "metrics"],
            tags={tag.KIND: tag.KIND_EVALUATION, tag.MODEL_URI: evaluation.model_uri,
                  tag.EVAL_DATA: evaluation.data_path, tag.EVAL_DATA_SHA256: evaluation.data_sha256},
            environment=False,
        )  # fmt: skip
        if "slices" in evaluation.files:
            tracker.log_slice_table(run_id, read_slices(evaluation.files["slices"]))
        return run_id
