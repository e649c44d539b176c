"""Calibrating a trained model's no-answer threshold on SQuAD v2 data and storing it in its inference recipe.

The model predicts the calibration set once with its stored recipe, answering always (best non-null answers and
real null odds); the official scorer's `best_f1_thresh` over those becomes the recipe's `null_threshold`, which
prediction, `qaflow evaluate`, promotion re-scoring and `qaflow answer` then apply.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from tasks.core.calibration import best_f1_threshold, null_above
from tasks.core.data import QADataset, to_squad_json
from tasks.core.io import write_json_atomic
from tasks.core.scoring import score_dataset
from tasks.core.specs import InferenceRecipe
from tasks.pipeline.prediction import Predictor, StoredModel


class CalibrationError(ValueError):
    """Calibration is impossible with this data or model (one line naming the file)."""


@dataclass(frozen=True)
class Calibration:
    """The chosen threshold and the calibration set's F1 with it and with the configured threshold."""

    threshold: float
    calibrated_f1: float
    configured_threshold: float
    configured_f1: float
    examples: int

    def metrics(self) -> dict[str, float]:
        return {
            "calibration_null_threshold": self.threshold,
            "calibration_f1": self.calibrated_f1,
            "calibration_uncalibrated_f1": self.configured_f1,
            "calibration_examples": float(self.examples),
        }


def calibrate(predictor: Predictor, recipe: InferenceRecipe, dataset: QADataset, out_dir: Path) -> Calibration:
    """The official best-F1 null threshold of `predictor` on `dataset` (v2 with null answers on)."""
    if dataset.version != "2.0":
        raise CalibrationError(f"{dataset.source}: calibration needs SQuAD v2.0 data (unanswerable questions)")
    plain = replace(recipe, null_threshold=None).for_data_version("2.0")
    if not plain.nbest.version_2_with_negative:
        raise CalibrationError("postprocess.version_2_with_negative is false: the model never answers '' to calibrate")
    run = predictor.predict(dataset.examples, plain.answer_always(), Path(out_dir), save_raw=False)
    odds = run.null_odds or {}
    best_f1, threshold = best_f1_threshold(to_squad_json(dataset), run.predictions, odds)
    configured = plain.nbest.null_score_diff_threshold
    configured_f1 = score_dataset(dataset, null_above(run.predictions, odds, configured), odds)["f1"]
    result = Calibration(threshold, best_f1, configured, float(configured_f1), len(dataset.examples))
    write_json_atomic(result.metrics(), Path(out_dir) / "calibration.json", indent=2)
    return result


def calibrate_stored(model: StoredModel, dataset: QADataset, out_dir: Path) -> tuple[StoredModel, Calibration]:
    """Calibrate a loaded model and store the threshold in its `inference_recipe.json`; the model with that recipe."""
    result = calibrate(model.predictor, model.recipe, dataset, out_dir)
    recipe = replace(model.recipe, null_threshold=result.threshold)
    recipe.save(model.model_dir)
    return replace(model, recipe=recipe), result


def calibrate_model_dir(model_dir: str | Path, dataset: QADataset, out_dir: Path) -> Calibration:
    """Calibrate the model in `model_dir` and store the threshold in its `inference_recipe.json`."""
    return calibrate_stored(StoredModel.load(model_dir), dataset, out_dir)[1]
