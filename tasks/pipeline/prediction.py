"""The prediction step: load a trained model once (family resolved from its config), predict a data set with an
inference recipe, write the outputs and score them with the official metric.

`qaflow predict` builds the recipe from the configuration (flags win, as in run_qa.py); the retrain flow, the
evaluate flow, promotion re-scoring and `qaflow answer` use the recipe stored with the model (`StoredModel`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tasks.core.calibration import null_above
from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import QAFlowConfig
from tasks.core.data import QADataset
from tasks.core.family import ModelFamily
from tasks.core.features import QuestionFit, fit_questions
from tasks.core.io import write_json_atomic
from tasks.core.scoring import score_dataset
from tasks.core.specs import InferenceRecipe, ModelSpec, inference_recipe
from tasks.families.registry import check_family_name, resolve_family
from tasks.pipeline.error_slices import score_slices, write_slices
from tasks.pipeline.stages import load_split
from tasks.predict import PredictionFiles, PredictionRun, predict_examples

UNCALIBRATED_KEYS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1")


@dataclass
class Predictor:
    """A loaded model, its tokenizer and family, on a device."""

    family: ModelFamily
    model: Any
    tokenizer: Any
    device: torch.device

    @classmethod
    def load(cls, model_dir: str | Path, family: str = "auto", *, use_cuda: bool = True) -> Predictor:
        spec = ModelSpec.of_checkpoint(model_dir, family)
        resolved = resolve_family(spec.family, spec.path)
        return cls.with_weights(resolved, spec, load_tokenizer(spec.tokenizer_path), use_cuda=use_cuda)

    @classmethod
    def with_weights(cls, family: ModelFamily, spec: ModelSpec, tokenizer: Any, *, use_cuda: bool = True) -> Predictor:
        """Load the weights of an already resolved family and tokenizer (the expensive part of `load`)."""
        device = torch.device("cuda" if use_cuda and torch.cuda.is_available() else "cpu")
        return cls(family, family.load_model(spec.path).to(device).eval(), tokenizer, device)

    def fit(self, examples: list, recipe: InferenceRecipe) -> QuestionFit:
        """The examples as windowing will see them: the recipe's question policy for windowed families."""
        if not self.family.windowed:
            return QuestionFit(list(examples), [], [])
        return fit_questions(examples, self.tokenizer, recipe.windows)

    def predict(
        self, examples: list, recipe: InferenceRecipe, out_dir: Path, *, save_raw: bool,
        fit: QuestionFit | None = None, prefix: str = "",
    ) -> PredictionRun:  # fmt: skip
        """Predict with the recipe; windowed families first apply its question policy (counts in the metrics).

        `fit` is `self.fit(examples, recipe)` when the caller already checked the questions; `prefix` names the
        files as run_qa.py does (`tasks.predict.PredictionFiles`).
        """
        fit = fit or self.fit(examples, recipe)
        run = predict_examples(
            self.family, self.model, self.tokenizer, fit.examples, recipe, out_dir, save_raw=save_raw,
            device=self.device, unanswered=fit.skipped, prefix=prefix,
        )  # fmt: skip
        if fit.truncated or fit.skipped:
            run.metrics.update({f"predict_{k}": float(v) for k, v in fit.report().items()})
        return run


@dataclass
class StoredModel:
    """A trained model directory loaded once: its stored inference recipe and its predictor (the recipe's family).

    A flow loads it once and hands it to every step that predicts with it (calibration, the dev score, the suite).
    """

    model_dir: Path
    recipe: InferenceRecipe
    predictor: Predictor

    @classmethod
    def load(cls, model_dir: str | Path, *, use_cuda: bool = True) -> StoredModel:
        recipe = InferenceRecipe.load(model_dir)
        return cls(Path(model_dir), recipe, Predictor.load(model_dir, recipe.family, use_cuda=use_cuda))


@dataclass
class PredictionSummary:
    """What a prediction step produced: counts, speed, output files and (when scored) the official metrics."""

    examples: int
    squad_version: str
    model_family: str
    speed: dict[str, float]
    files: dict[str, Path]
    metrics: dict[str, float] | None = None
    recipe: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "examples": self.examples, "squad_version": self.squad_version, "model_family": self.model_family,
            **self.speed, "files": {k: str(v) for k, v in self.files.items()},
        }  # fmt: skip
        if self.metrics is not None:
            out["metrics"] = self.metrics
        return out


def predict_dataset(
    predictor: Predictor,
    dataset: QADataset,
    recipe: InferenceRecipe,
    output_dir: Path,
    *,
    save_raw: bool = True,
    do_score: bool = True,
    fit: QuestionFit | None = None,
    prefix: str = "",
) -> PredictionSummary:
    """Predict every example of `dataset`; write the outputs (and `metrics.json` + slices when scored).

    With a calibrated no-answer threshold on v2 data, the model predicts its best non-null answers once; the
    answers are the calibrated ones (`null_threshold` applied), and the scores of the configured threshold are
    logged beside them as `uncalibrated_*`. A `prefix` names the files as run_qa.py does (`eval_predictions.json`,
    `eval_slices.json`, ...); the scores file `{prefix}_results.json` is then the caller's to write, in run_qa's form.
    """
    configured = recipe.nbest.null_score_diff_threshold
    recipe = recipe.for_data_version(dataset.version)
    calibrated = recipe.nbest.version_2_with_negative and recipe.null_threshold is not None
    names = PredictionFiles(prefix)
    run = predictor.predict(
        dataset.examples, recipe.answer_always() if calibrated else recipe, output_dir, save_raw=save_raw, fit=fit,
        prefix=prefix,
    )  # fmt: skip
    best_answers = run.predictions
    if calibrated:
        run.predictions = null_above(best_answers, run.null_odds or {}, recipe.nbest.null_score_diff_threshold)
        run.files["predictions"] = write_json_atomic(run.predictions, Path(output_dir) / names.predictions, indent=2)
    summary = PredictionSummary(
        examples=len(dataset.examples), squad_version=dataset.version, model_family=predictor.family.name,
        speed=run.metrics, files=dict(run.files), recipe=recipe.to_dict(),
    )  # fmt: skip
    if do_score:
        thresh = recipe.nbest.null_score_diff_threshold if calibrated else 1.0
        summary.metrics = score_dataset(dataset, run.predictions, run.null_odds, thresh)
        if calibrated:
            raw = score_dataset(dataset, null_above(best_answers, run.null_odds or {}, configured), run.null_odds)
            summary.metrics["null_threshold"] = thresh
            summary.metrics.update({f"uncalibrated_{k}": v for k, v in raw.items() if k in UNCALIBRATED_KEYS})
        if not prefix:
            summary.files["metrics"] = write_json_atomic(summary.metrics, Path(output_dir) / names.metrics, indent=2)
        slices = score_slices(dataset, run.predictions, run.null_odds, thresh)
        title = f"F1 by slice: {Path(dataset.source).name}"
        summary.files.update(write_slices(slices, Path(output_dir), title, prefix=prefix))
    return summary


def predict_with_stored_recipe(
    model_dir: str | Path, dataset: QADataset, output_dir: Path, *, save_raw: bool = True, use_cuda: bool = True
) -> PredictionSummary:
    """Predict with the inference recipe saved beside the model (a tune trial's score)."""
    model = StoredModel.load(model_dir, use_cuda=use_cuda)
    return predict_dataset(model.predictor, dataset, model.recipe, output_dir, save_raw=save_raw)


def predict_from_config(
    cfg: QAFlowConfig,
    *,
    model_dir: str | Path,
    data: str | Path | None,
    output_dir: Path,
    save_raw: bool = True,
    do_score: bool = True,
    split: str = "test",
    prefix: str = "",
) -> PredictionSummary:
    """`qaflow predict` / `train --do_predict` (split "test") and `train --do_eval` (split "eval").

    The configured windows/n-best/generation settings on `data` (else the split's configured data). Test data may
    be unlabeled: it gets predictions and no score.
    """
    check_family_name(cfg.model.model_family)  # cheap checks first: names, data, checkpoint, question lengths
    dataset = load_split(cfg, split, data)
    do_score = do_score and dataset.labeled
    spec = ModelSpec.of_checkpoint(model_dir, cfg.model.model_family)
    family = resolve_family(spec.family, spec.path)
    tokenizer = load_tokenizer(spec.tokenizer_path)
    recipe = inference_recipe(cfg, family.name, dataset.version)
    fit = fit_questions(dataset.examples, tokenizer, recipe.windows) if family.windowed else None
    predictor = Predictor.with_weights(family, spec, tokenizer, use_cuda=cfg.train.backend != "cpu")
    return predict_dataset(
        predictor, dataset, recipe, output_dir, save_raw=save_raw, do_score=do_score, fit=fit, prefix=prefix
    )
