"""Evaluation for training, through the same prediction path as `qaflow predict` (`pipeline.prediction`:
the family's `eval_features` / `forward` / `postprocess`, then the official scorer).

- `training_evaluator`: the `train.evaluation.Evaluator` the Trainer calls at each in-training evaluation
  (`eval_strategy` steps / epoch): it predicts the eval split (or its first `max_eval_samples` questions) with the
  model being trained and writes run_qa.py's `eval_predictions.json` / `eval_nbest_predictions.json` /
  `eval_null_odds.json` (v2) into the output root, as run_qa's post-processing does at every evaluation.
- `predict_step`: `qaflow train --do_eval` / `--do_predict` after training, with run_qa's metric names
  (`eval_exact_match`, `eval_runtime`, `eval_samples`, ...; `--do_predict` scores as `test_*`, as run_qa's
  `trainer.predict` does, and counts `predict_samples`).

Under DDP both run on every worker (`ranks`): each runs the model on its share of the batches, rank 0 gathers the
outputs, post-processes, writes and scores (`tasks.predict`); the other ranks get None.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.core.checkpoints import load_tokenizer
from tasks.core.config import QAFlowConfig, check_best_metric
from tasks.core.data import QADataset
from tasks.core.family import ModelFamily
from tasks.core.features import fit_questions
from tasks.core.io import write_json_atomic
from tasks.core.model_spec import ModelSpec
from tasks.core.shares import Ranks
from tasks.core.specs import inference_recipe
from tasks.pipeline.prediction import PredictionSummary, Predictor, predict_dataset, predict_from_config
from tasks.pipeline.stages import load_split
from tasks.train.evaluation import Evaluation, Evaluator, predicting_precision

EVAL_PREFIX = "eval"  # run_qa's post-processing prefix of --do_eval and in-training evaluation
# run_qa's steps: files prefix, metric-key prefix (trainer.evaluate: "eval", trainer.predict: "test"), data split
STEPS = {"eval": ("eval", "eval", "eval"), "predict": ("predict", "test", "test")}


def eval_split(cfg: QAFlowConfig, data: str | Path | None = None) -> QADataset:
    """The eval split in-training evaluation scores (`data`, else the configured one; `max_eval_samples` applies),
    checked against `metric_for_best_model` before any model work."""
    dataset = load_split(cfg, "eval", data)
    check_best_metric(cfg.train, dataset.version)
    return dataset


def training_evaluator(
    cfg: QAFlowConfig, family: ModelFamily, spec: ModelSpec, dataset: QADataset, out_dir: Path,
    ranks: Ranks | None = None,
) -> Evaluator:  # fmt: skip
    """Score the model in training on `dataset` with the configured recipe; answers go to `out_dir` (eval_*).
    With `ranks` (every DDP worker has one) each rank runs its share; rank 0's Evaluation is the scores."""
    tokenizer = load_tokenizer(spec.tokenizer_path)
    recipe = inference_recipe(cfg, family.name, dataset.version)
    fit = fit_questions(dataset.examples, tokenizer, recipe.windows) if family.windowed else None  # checked once

    def evaluate(model: Any) -> Evaluation:
        predictor = Predictor(family, model, tokenizer, next(model.parameters()).device, ranks)
        summary = predict_dataset(
            predictor, dataset, recipe, out_dir, save_raw=False, fit=fit, prefix=EVAL_PREFIX
        )  # fmt: skip
        if summary is None:  # another rank's share: rank 0 scores
            return Evaluation(metrics={}, samples=0)
        return Evaluation(metrics=dict(summary.metrics or {}), samples=int(summary.speed.get("predict_features", 0)))

    return evaluate


@dataclass
class StepResult:
    """One --do_eval / --do_predict step: run_qa's metrics and the files written (role -> path)."""

    name: str  # eval | predict
    metrics: dict[str, float]
    files: dict[str, Path]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "metrics": self.metrics, "files": {k: str(v) for k, v in self.files.items()}}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> StepResult:
        return cls(raw["name"], raw["metrics"], {k: Path(v) for k, v in raw["files"].items()})


def predict_step(
    cfg: QAFlowConfig,
    name: str,
    model_dir: str | Path,
    out_dir: Path,
    *,
    epoch: float | None = None,
    dataset: QADataset | None = None,
    family: ModelFamily | None = None,
    predictor: Predictor | None = None,
    ranks: Ranks | None = None,
) -> StepResult | None:
    """`--do_eval` (name "eval") or `--do_predict` ("predict"): predict the split into `out_dir` with run_qa's
    file names and return run_qa's metrics for `{name}_results.json`. `dataset` / `family`: loaded / resolved
    by the caller (`qaflow train`, once); `predictor` / `ranks`: a DDP worker's trained model (with its ranks)
    or the ranks that share `model_dir` (None is returned on ranks other than 0)."""
    files_prefix, key_prefix, split = STEPS[name]
    summary = predict_from_config(cfg, model_dir=model_dir, data=None, output_dir=out_dir, split=split,
                                  prefix=files_prefix, dataset=dataset, family=family, predictor=predictor,
                                  ranks=ranks)  # fmt: skip
    if summary is None:
        return None
    metrics = run_qa_metrics(summary, key_prefix, cfg.train.per_device_eval_batch_size)
    if epoch is not None and name == "eval":  # trainer.evaluate() logs the state's epoch; predict() does not
        metrics["epoch"] = epoch
    metrics[f"{name}_samples"] = float(summary.speed.get("predict_features", summary.examples))
    metrics[f"{name}_examples"] = float(summary.examples)  # qaflow: questions (run_qa's samples are windows)
    return StepResult(name, metrics, dict(summary.files))


def run_qa_metrics(summary: PredictionSummary, key_prefix: str, batch_size: int) -> dict[str, float]:
    """The official scores with `key_prefix` (run_qa: `eval_exact_match`, `test_f1`, ...) and transformers'
    `speed_metrics` of the prediction: windows per second and batches per second."""
    metrics = {f"{key_prefix}_{k}": float(v) for k, v in (summary.metrics or {}).items()}
    runtime = float(summary.speed.get("predict_runtime", 0.0))
    windows = float(summary.speed.get("predict_features", summary.examples))
    metrics[f"{key_prefix}_runtime"] = round(runtime, 4)
    if runtime > 0:
        metrics[f"{key_prefix}_samples_per_second"] = round(windows / runtime, 3)
        metrics[f"{key_prefix}_steps_per_second"] = round(math.ceil(windows / max(1, batch_size)) / runtime, 3)
    return metrics


def shared_steps(
    cfg: QAFlowConfig, steps: Sequence[str], model_dir: str | Path, out_dir: Path, *, family: ModelFamily,
    ranks: Ranks | None, trained: Any = None, epoch: float | None = None, eval_set: QADataset | None = None,
) -> list[StepResult]:  # fmt: skip
    """The --do_eval / --do_predict `steps` on every DDP worker, each running its share of the model: the
    `trained` model in memory (its own forward, not training's autocast; the tokenizer it was trained with: no
    rank waits for, or reads, the model rank 0 saves), else `model_dir` loaded on each rank.
    Rank 0's results; an empty list on the other ranks."""
    predictor = None
    if trained is not None:
        tokenizer = load_tokenizer(ModelSpec.from_config(cfg).tokenizer_path)
        predictor = Predictor(family, trained, tokenizer, next(trained.parameters()).device, ranks)
    results = []
    with predicting_precision(trained) if trained is not None else contextlib.nullcontext():
        for name in steps:
            split = STEPS[name][2]
            dataset = (eval_set or eval_split(cfg)) if name == "eval" else load_split(cfg, split)
            step = predict_step(cfg, name, model_dir, out_dir, epoch=epoch, dataset=dataset, family=family,
                                predictor=predictor, ranks=ranks)  # fmt: skip
            if step is not None:
                results.append(step)
    return results


def write_step_results(results: Sequence[StepResult], path: Path) -> Path:
    return write_json_atomic([r.to_json() for r in results], path, indent=2)


def read_step_results(path: Path) -> list[StepResult]:
    return [StepResult.from_json(raw) for raw in json.loads(Path(path).read_text(encoding="utf-8"))]
