"""The QA model as an MLflow pyfunc: `question` + `context` rows in, `answer`/`score`/`start`/`end` rows out.

Artifacts: the model directory (weights, tokenizer and its `inference_recipe.json`: family, windows, n-best,
generation, batch size). The same recipe drives the retrain score, `qaflow evaluate`, promotion re-scoring and
`qaflow answer`, so all four predict identically. The `tasks` package travels with the model (`code_paths`), so
`mlflow models serve` needs no qaflow install. This module and `served_model.py` are the only ones outside
`tasks.tracking` that import MLflow (the pyfunc interface); logging and loading go through the `Tracker`
(`log_qa_model`, `load_qa_model`), which binds MLflow's fluent API to its store for that call only.

Score: the n-best probability of the returned answer (softmax over the n-best candidates' start+end logit
sums, as run_qa.py writes to `nbest_predictions.json`), in [0, 1]. For "no answer" (SQuAD v2 settings) the
answer is "", start = end = -1 and the score is the probability of the null candidate. A calibrated no-answer
threshold in the recipe (`null_threshold`) replaces the configured `null_score_diff_threshold`.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, DataType, Schema

from tasks.core.data import Example
from tasks.core.layout import model_files
from tasks.core.specs import InferenceRecipe
from tasks.pipeline.prediction import StoredModel
from tasks.predict import PredictionRun
from tasks.tracking.tracker import Tracker

TASKS_DIR = Path(__file__).resolve().parents[1]  # the whole `tasks` package travels with the model
MODEL_CODE = Path(__file__).with_name("served_model.py")  # what MLflow runs to build the model when loading it
PICKLED_FILES = ("training_args.bin", "*.pkl", "*.pickle")  # never logged: loading a pickle runs its code
INPUT_COLUMNS = ("question", "context")
OUTPUT_COLUMNS = ("id", "answer", "score", "start", "end")
_REQUIREMENTS = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "pandas", "pyyaml")


def input_rows(model_input: Any) -> list[dict[str, Any]]:
    """A DataFrame, a list of dicts or one dict → list of row dicts with `question` and `context`."""
    if isinstance(model_input, pd.DataFrame):
        rows = model_input.to_dict(orient="records")
    elif isinstance(model_input, Mapping):
        columnar = all(isinstance(v, list | tuple) for v in model_input.values())
        rows = pd.DataFrame(dict(model_input)).to_dict(orient="records") if columnar else [dict(model_input)]
    elif isinstance(model_input, Sequence) and not isinstance(model_input, str):
        rows = [dict(r) for r in model_input]
    else:
        raise TypeError(f"expected a DataFrame, a list of dicts or a dict, got {type(model_input).__name__}")
    for i, row in enumerate(rows):
        missing = [c for c in INPUT_COLUMNS if not isinstance(row.get(c), str)]
        if missing:
            raise ValueError(f"row {i}: column(s) {missing} missing or not text")
    return rows


def rows_to_examples(rows: Sequence[Mapping[str, Any]]) -> list[Example]:
    """Examples with internal ids `0..n-1` (caller ids may repeat or be missing)."""
    return [Example(str(i), "", context=r["context"], question=r["question"]) for i, r in enumerate(rows)]


def _row_id(row: Mapping[str, Any], default: str) -> str:
    value = row.get("id")
    return str(value) if isinstance(value, str | int) and not isinstance(value, bool) else default


def _span(entry: Mapping[str, Any], context: str) -> tuple[int, int]:
    """Character span of an n-best entry: its offsets when post-processing kept them, else the first match."""
    text = entry.get("text", "")
    if not text:
        return -1, -1
    for keys in (("offsets",), ("start", "end"), ("char_start", "char_end")):
        if all(k in entry for k in keys):
            start, end = entry[keys[0]] if len(keys) == 1 else (entry[keys[0]], entry[keys[1]])
            if context[int(start) : int(end)] == text:
                return int(start), int(end)
    start = context.find(text)
    return (start, start + len(text)) if start >= 0 else (-1, -1)


def answer_row(prediction: str, nbest: Sequence[Mapping[str, Any]], context: str) -> dict[str, Any]:
    """`answer`, `score`, `start`, `end` for one question from its final prediction and n-best list."""
    fallback = {"text": prediction, "probability": 0.0}
    chosen = next((e for e in nbest if e.get("text", "") == prediction), fallback)
    start, end = _span(chosen, context)
    answer = context[start:end] if start >= 0 else ""  # run_qa.py's "empty" filler is not a span: no answer
    return {"answer": answer, "score": float(chosen.get("probability", 0.0)), "start": start, "end": end}


class QAModel(mlflow.pyfunc.PythonModel):
    """Any registered family behind one served interface, predicting with the model's stored inference recipe."""

    def load_context(self, context) -> None:
        model = StoredModel.load(context.artifacts["model_dir"])
        self.recipe, self.predictor = model.recipe, model.predictor

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Answer each row; also accepts a list of dicts or a dict when called directly."""
        rows = input_rows(model_input)
        if not rows:
            return pd.DataFrame(columns=list(OUTPUT_COLUMNS))
        examples = rows_to_examples(rows)
        predictions, nbest = self._run(examples)
        out = []
        for row, ex in zip(rows, examples, strict=True):
            result = answer_row(predictions.get(ex.id, ""), nbest.get(ex.id, []), ex.context)
            out.append({"id": _row_id(row, ex.id), **result})
        return pd.DataFrame(out, columns=list(OUTPUT_COLUMNS))

    def run_examples(self, examples: list[Example], out_dir: Path, *, data_version: str | None = None) -> PredictionRun:
        """Predict `examples` into `out_dir` with the stored recipe (for data of SQuAD `data_version`, if given)."""
        recipe = self.recipe.calibrated() if data_version is None else self.recipe.for_data_version(data_version)
        return self.predictor.predict(examples, recipe, Path(out_dir), save_raw=False)

    def _run(self, examples: list[Example]) -> tuple[dict[str, str], dict[str, list[dict]]]:
        with tempfile.TemporaryDirectory(prefix="qaflow-pyfunc-") as tmp:
            run = self.run_examples(examples, Path(tmp))
            nbest = json.loads(run.files["nbest"].read_text(encoding="utf-8"))
        return run.predictions, nbest


def signature() -> ModelSignature:
    """Input: `question`, `context` (strings), optional `id`. Output: id, answer, score, start, end."""
    columns = [ColSpec(DataType.string, c) for c in INPUT_COLUMNS]
    inputs = Schema([*columns, ColSpec(DataType.string, "id", required=False)])
    outputs = Schema(
        [
            ColSpec(DataType.string, "id"),
            ColSpec(DataType.string, "answer"),
            ColSpec(DataType.double, "score"),
            ColSpec(DataType.long, "start"),
            ColSpec(DataType.long, "end"),
        ]
    )
    return ModelSignature(inputs=inputs, outputs=outputs)


def pip_requirements() -> list[str]:
    """Pinned requirements of the served model (the packages installed here)."""
    reqs = []
    for name in _REQUIREMENTS:
        try:
            reqs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


INPUT_EXAMPLE = pd.DataFrame(
    [{"question": "Where is the Eiffel Tower?", "context": "The Eiffel Tower is in Paris, France."}]
)


def log_qa_model(
    tracker: Tracker, run_id: str, model_dir: str | Path, artifact_path: str = "model", *,
    recipe: InferenceRecipe | None = None,
) -> None:  # fmt: skip
    """Log the model in `model_dir` (with its `inference_recipe.json`) as a pyfunc into run `run_id`.

    `recipe`: the model's stored recipe where the caller loaded it already; else it is loaded here, so a model
    without one is refused before anything is logged.
    """
    if recipe is None:
        InferenceRecipe.load(model_dir)
    with tempfile.TemporaryDirectory(prefix="qaflow-model-") as tmp:
        clean = Path(tmp) / Path(model_dir).resolve().name  # the model without pickles (training_args.bin)
        clean.mkdir()
        for path in model_files(Path(model_dir)):  # not the run's outputs beside it (checkpoints/, results, ...)
            if not any(path.match(pattern) for pattern in PICKLED_FILES):
                shutil.copy2(path, clean / path.name)
        tracker.log_pyfunc_model(
            run_id, artifact_path,
            python_model=str(MODEL_CODE),  # models-from-code: no cloudpickled object of ours
            artifacts={"model_dir": str(clean)},
            code_paths=[str(TASKS_DIR)],
            pip_requirements=pip_requirements(),
            signature=signature(),
            input_example=INPUT_EXAMPLE,
        )  # fmt: skip


def load_qa_model(tracker: Tracker, model_uri: str) -> QAModel:
    """The QA model behind `model_uri` (e.g. `models:/qaflow-qa@champion`) of the tracker's store, loaded once."""
    return tracker.load_pyfunc(model_uri).unwrap_python_model()
