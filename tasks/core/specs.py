"""Configuration resolved once, at the edge, into small frozen specs; and the inference recipe.

`QAFlowConfig` (params.yaml + overrides) is what users write. Functions below the flows take the narrow spec
they need instead:

* `ModelSpec` — which checkpoint and tokenizer and which family was asked for (`tasks.core.model_spec`);
* `FeatureSettings` (windows, `feature_settings`) and `NBestSettings` (n-best) — defined beside the code that
  uses them;
* `GenerationSettings` — seq2seq decoding (`val_max_answer_length`, `num_beams`);
* `InferenceRecipe` — everything prediction needs besides the weights. It is stored with the model
  (`inference_recipe.json` in the model directory, the MLflow model and the hub folder) and used identically by
  the retrain score, `qaflow evaluate`, promotion re-scoring and `qaflow answer`, so all four give the same
  predictions for the same data.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tasks.core.config import QAFlowConfig
from tasks.core.features import FeatureSettings, feature_settings
from tasks.core.io import write_json_atomic
from tasks.core.postprocess import NBestSettings

RECIPE_FILE = "inference_recipe.json"
RECIPE_FORMAT = "qaflow-inference-recipe/1"


@dataclass(frozen=True)
class GenerationSettings:
    """seq2seq decoding: at most `max_new_tokens` answer tokens, `num_beams` beams (1 = greedy)."""

    max_new_tokens: int = 30
    num_beams: int = 1

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.num_beams < 1:
            raise ValueError(f"max_new_tokens and num_beams must be >= 1, got {self.max_new_tokens}, {self.num_beams}")


@dataclass(frozen=True)
class InferenceRecipe:
    """How a trained model predicts: its family, windows, n-best, generation and batch size."""

    family: str
    windows: FeatureSettings = FeatureSettings()
    nbest: NBestSettings = NBestSettings()
    generation: GenerationSettings = GenerationSettings()
    batch_size: int = 64
    null_answers: bool | None = None  # `version_2_with_negative` as configured; None = follow the data
    # the calibrated no-answer threshold (official best_f1_thresh on a calibration set); None = not calibrated
    null_threshold: float | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.null_threshold is not None and not math.isfinite(self.null_threshold):
            raise ValueError(f"null_threshold must be a finite number, got {self.null_threshold}")

    def for_data_version(self, version: str) -> InferenceRecipe:
        """The recipe for data of SQuAD `version`: null answers on for "2.0" unless configured explicitly."""
        v2 = version == "2.0" if self.null_answers is None else self.null_answers
        return replace(self, nbest=replace(self.nbest, version_2_with_negative=v2)).calibrated()

    def calibrated(self) -> InferenceRecipe:
        """With null answers on and a calibrated threshold: that threshold replaces the configured one."""
        if self.null_threshold is None or not self.nbest.version_2_with_negative:
            return self
        return replace(self, nbest=replace(self.nbest, null_score_diff_threshold=self.null_threshold))

    def answer_always(self) -> InferenceRecipe:
        """Best non-null answers with their null odds (threshold +inf): what calibration and raw scores start from."""
        return replace(self, nbest=replace(self.nbest, null_score_diff_threshold=math.inf))

    def to_dict(self) -> dict[str, Any]:
        return {"format": RECIPE_FORMAT, **asdict(self)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "recipe") -> InferenceRecipe:
        if raw.get("format") != RECIPE_FORMAT:
            raise ValueError(f"{where}: format {raw.get('format')!r} is not {RECIPE_FORMAT!r}")
        try:
            return cls(
                family=str(raw["family"]),
                windows=FeatureSettings(**raw["windows"]),
                nbest=NBestSettings(**raw["nbest"]),
                generation=GenerationSettings(**raw["generation"]),
                batch_size=int(raw["batch_size"]),
                null_answers=raw.get("null_answers"),
                null_threshold=raw.get("null_threshold"),  # absent in recipes written before calibration
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{where}: not a complete inference recipe ({exc})") from exc

    def save(self, directory: str | Path) -> Path:
        return write_json_atomic(self.to_dict(), Path(directory) / RECIPE_FILE, indent=2)

    @classmethod
    def load(cls, path: str | Path) -> InferenceRecipe:
        """From a recipe file or a directory holding `inference_recipe.json`."""
        path = Path(path)
        file = path / RECIPE_FILE if path.is_dir() else path
        if not file.exists():
            raise FileNotFoundError(f"{file}: no inference recipe (was the model trained by qaflow?)")
        return cls.from_dict(json.loads(file.read_text(encoding="utf-8")), str(file))


def nbest_settings(cfg: QAFlowConfig, data_version: str) -> NBestSettings:
    """n-best settings; `version_2_with_negative: null` follows the data (SQuAD "2.0")."""
    p = cfg.postprocess
    v2 = data_version == "2.0" if p.version_2_with_negative is None else p.version_2_with_negative
    return NBestSettings(p.n_best_size, p.max_answer_length, v2, p.null_score_diff_threshold)


def generation_settings(cfg: QAFlowConfig) -> GenerationSettings:
    p = cfg.postprocess
    return GenerationSettings(p.val_max_answer_length or p.max_answer_length, p.num_beams)


def inference_recipe(cfg: QAFlowConfig, family: str, data_version: str) -> InferenceRecipe:
    """The recipe a model trained with `cfg` predicts with, on data of `data_version`."""
    return InferenceRecipe(
        family=family,
        windows=feature_settings(cfg),
        nbest=nbest_settings(cfg, data_version),
        generation=generation_settings(cfg),
        batch_size=cfg.train.per_device_eval_batch_size,
        null_answers=cfg.postprocess.version_2_with_negative,
    )
