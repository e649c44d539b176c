"""The prediction step: load a trained model once (family resolved from its config), predict a data set with an
inference recipe, write the outputs and score them with the official metric.

`qaflow predict` builds the recipe from the configuration (flags win, as in run_qa.py); the retrain flow, the
evaluate flow, promotion re-scoring and `qaflow answer` use the recipe stored with the model (`StoredModel`).
Under torchrun a predictor with `ranks` shares the model's work: every rank runs its share of the batches and
rank 0 post-processes, writes and scores (`tasks.predict`); the other ranks' steps return None.
`predict_on_workers` is `qaflow predict --nproc_per_node N` (torchrun's flags, as `qaflow train`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from tasks.core.calibration import null_above
from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import QAFlowConfig, load_config
from tasks.core.data import QADataset
from tasks.core.family import ModelFamily
from tasks.core.features import QuestionFit, fit_questions
from tasks.core.io import write_json_atomic
from tasks.core.layout import PREDICT_SUMMARY
from tasks.core.model_spec import ModelSpec, require_checkpoint
from tasks.core.scoring import score_dataset
from tasks.core.shares import Ranks
from tasks.core.specs import InferenceRecipe, inference_recipe
from tasks.families.registry import check_family_name, resolve_family
from tasks.pipeline.error_slices import score_slices, write_slices
from tasks.pipeline.stages import load_split
from tasks.predict import PredictionFiles, PredictionRun, predict_examples
from tasks.train.ddp import Launch, ResultOnAnotherNode, TorchRanks, join_worker_group, launch_torchrun, write_job
from tasks.train.hardware import detect_backend

DDP_WORKER = "tasks.pipeline.ddp_worker"  # every torchrun worker's entry point; its job's "kind" says what it runs
UNCALIBRATED_KEYS = ("exact", "f1", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1")


@dataclass
class Predictor:
    """A loaded model, its tokenizer and family, on a device; with `ranks`, one of the torchrun workers that share
    its predictions."""

    family: ModelFamily
    model: Any
    tokenizer: Any
    device: torch.device
    ranks: Ranks | None = None

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
    ) -> PredictionRun | None:  # fmt: skip
        """Predict with the recipe; windowed families first apply its question policy (counts in the metrics).

        `fit` is `self.fit(examples, recipe)` when the caller already checked the questions; `prefix` names the
        files as run_qa.py does (`tasks.predict.PredictionFiles`). None on a rank other than 0 (it helped).
        """
        fit = fit or self.fit(examples, recipe)
        run = predict_examples(
            self.family, self.model, self.tokenizer, fit.examples, recipe, out_dir, save_raw=save_raw,
            device=self.device, unanswered=fit.skipped, prefix=prefix, ranks=self.ranks,
        )  # fmt: skip
        if run is None:
            return None
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
) -> PredictionSummary | None:
    """Predict every example of `dataset`; write the outputs (and `metrics.json` + slices when scored).

    With a calibrated no-answer threshold on v2 data, the model predicts its best non-null answers once; the
    answers are the calibrated ones (`null_threshold` applied), and the scores of the configured threshold are
    logged beside them as `uncalibrated_*`. A `prefix` names the files as run_qa.py does (`eval_predictions.json`,
    `eval_slices.json`, ...); the scores file `{prefix}_results.json` is then the caller's to write, in run_qa's form.
    None on a torchrun rank other than 0 (`predictor.ranks`): it ran its share of the model; rank 0 wrote and scored.
    """
    configured = recipe.nbest.null_score_diff_threshold
    recipe = recipe.for_data_version(dataset.version)
    calibrated = recipe.nbest.version_2_with_negative and recipe.null_threshold is not None
    names = PredictionFiles(prefix)
    run = predictor.predict(
        dataset.examples, recipe.answer_always() if calibrated else recipe, output_dir, save_raw=save_raw, fit=fit,
        prefix=prefix,
    )  # fmt: skip
    if run is None:
        return None
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
    dataset: QADataset | None = None,
    family: ModelFamily | None = None,
    prefix: str = "",
    predictor: Predictor | None = None,
    ranks: Ranks | None = None,
) -> PredictionSummary | None:
    """`qaflow predict` / `train --do_predict` (split "test") and `train --do_eval` (split "eval").

    The configured windows/n-best/generation settings on `data` (else the split's configured data). Test data may
    be unlabeled: it gets predictions and no score. `dataset` / `family`: already loaded / resolved by the caller
    (`qaflow train` loads each split and resolves the family once). `predictor`: the model of `model_dir` already
    in memory (a DDP worker's trained model, with its ranks; nothing is read from `model_dir`). `ranks`: torchrun
    workers sharing the prediction of `model_dir` (None is returned on ranks other than 0).
    """
    check_family_name(cfg.model.model_family)  # cheap checks first: names, data, checkpoint, question lengths
    dataset = dataset or load_split(cfg, split, data)
    do_score = do_score and dataset.labeled
    if predictor is None:
        spec = ModelSpec.of_checkpoint(model_dir, cfg.model.model_family)
        family = family or resolve_family(spec.family, spec.path)
        tokenizer = load_tokenizer(spec.tokenizer_path)
    else:
        family, tokenizer = predictor.family, predictor.tokenizer
    recipe = inference_recipe(cfg, family.name, dataset.version)
    fit = fit_questions(dataset.examples, tokenizer, recipe.windows) if family.windowed else None
    if predictor is None:
        predictor = Predictor.with_weights(family, spec, tokenizer, use_cuda=cfg.train.backend != "cpu")
        predictor.ranks = ranks
    return predict_dataset(
        predictor, dataset, recipe, output_dir, save_raw=save_raw, do_score=do_score, fit=fit, prefix=prefix
    )


def predict_on_workers(
    cfg: QAFlowConfig, launch: Launch, *, model_dir: str | Path, data: str | Path | None, output_dir: Path,
    save_raw: bool = True, do_score: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """`qaflow predict --nproc_per_node N` (and torchrun's other flags): `predict_from_config` on torchrun workers,
    each running its share of the model (every node needs the model and the data); global rank 0 writes the
    outputs and its summary (`PREDICT_SUMMARY`, returned). `ResultOnAnotherNode` on the other nodes."""
    check_family_name(cfg.model.model_family)  # cheap checks before any worker starts
    load_split(cfg, "test", data)
    require_checkpoint(str(model_dir))
    backend = detect_backend(cfg.train.backend, cfg.ipu.ipu_python)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    job = {"kind": "predict", "config": cfg.to_dict(), "backend": backend, "model_dir": str(model_dir),
           "data": str(data) if data is not None else None, "output_dir": str(output_dir), "save_raw": save_raw,
           "do_score": do_score}  # fmt: skip
    summary = output_dir / PREDICT_SUMMARY
    summary.unlink(missing_ok=True)  # never report an earlier run's summary as this one's
    launch_torchrun(DDP_WORKER, write_job(job, output_dir / "ddp_job.json"), launch, backend)
    if not summary.exists() and launch.multi_node:
        raise ResultOnAnotherNode(f"{output_dir}: this node's workers finished; global rank 0's node holds the outputs")
    return json.loads(summary.read_text(encoding="utf-8"))


def run_prediction_worker(job: dict[str, Any]) -> None:
    """One torchrun worker of `predict_on_workers`: its share of the model; rank 0 writes the outputs and summary."""
    join_worker_group(job["backend"])
    overrides = {f"{section}.{k}": v for section, values in job["config"].items() for k, v in values.items()}
    summary = predict_from_config(
        load_config(None, overrides), model_dir=job["model_dir"], data=job["data"], output_dir=Path(job["output_dir"]),
        save_raw=job["save_raw"], do_score=job["do_score"], ranks=TorchRanks.current(),
    )  # fmt: skip
    if summary is not None:
        write_json_atomic(summary.to_json(), Path(job["output_dir"]) / PREDICT_SUMMARY, indent=2)
