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
import logging
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, DataType, Schema

from tasks.core.data import Example, check_text
from tasks.core.layout import model_files
from tasks.core.safe_yaml import YAMLInputError, read_yaml
from tasks.core.specs import InferenceRecipe
from tasks.pipeline.prediction import StoredModel
from tasks.predict import PredictionRun
from tasks.tracking.tracker import ModelLoadError, Tracker

TASKS_DIR = Path(__file__).resolve().parents[1]  # the whole `tasks` package travels with the model
MODEL_CODE = Path(__file__).with_name("served_model.py")  # what MLflow runs to build the model when loading it
PICKLED_FILES = ("training_args.bin", "*.pkl", "*.pickle")  # never logged: loading a pickle runs its code
# files a registered model must not hold for qaflow to load it: pickles and torch's pickle-based weights
REFUSED_FILES = (*PICKLED_FILES, "*.bin", "*.pt", "*.pth", "*.ckpt", "*.joblib")
CODE_LOADER = "mlflow.pyfunc.loaders.code_model"  # MLflow's loader of models-from-code
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
        for column in INPUT_COLUMNS:  # empty, invisible or not Unicode: refused, never answered
            check_text(row[column], f"row {i}: {column}", column)
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


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:])/(?:[^\s'\"/:]+/)+")
log = logging.getLogger(__name__)


def served_error(exc: BaseException) -> MlflowException:
    """What the scoring server answers for a failed request: one line, no stack trace, no path of this machine.

    Bad input (a ValueError: a missing column, an empty question) is a 400 with its reason; anything else a 500
    naming only the error's type (the traceback goes to the server's log).
    """
    if isinstance(exc, ValueError):
        text = _ABSOLUTE_PATH.sub("", " ".join(str(exc).split()))
        return MlflowException(text or type(exc).__name__, error_code=INVALID_PARAMETER_VALUE)
    log.error("prediction failed", exc_info=exc)
    return MlflowException(f"internal error ({type(exc).__name__}); see the server's log", error_code=INTERNAL_ERROR)


class QAModel(mlflow.pyfunc.PythonModel):
    """Any registered family behind one served interface, predicting with the model's stored inference recipe."""

    def load_context(self, context) -> None:
        self.load_model_dir(context.artifacts["model_dir"])

    def load_model_dir(self, model_dir: str | Path) -> QAModel:
        model = StoredModel.load(model_dir)
        self.recipe, self.predictor = model.recipe, model.predictor
        return self

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Answer each row; also accepts a list of dicts or a dict when called directly. A failure is raised as
        `served_error` (the scoring server's one-line body)."""
        try:
            return self._predict_rows(model_input)
        except Exception as exc:  # noqa: BLE001 - every failure leaves as one clean line (served_error)
            raise served_error(exc) from None

    def _predict_rows(self, model_input: Any) -> pd.DataFrame:
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


class ModelRefused(ValueError):
    """A registered model qaflow will not load: not its own models-from-code QA model (the message says why)."""


def qaflow_model_dir(local: Path, uri: str) -> Path:
    """The weights directory of a downloaded MLflow model that is qaflow's own models-from-code QA model (only the
    pyfunc flavor, loaded by MLflow's code-model loader from `served_model.py`, a `model_dir` artifact, no pickle
    anywhere); ModelRefused otherwise. Nothing of the model runs: qaflow builds the model from the weights itself."""

    def refuse(why: str) -> ModelRefused:
        return ModelRefused(f"{uri}: {why}; qaflow loads only its own models-from-code QA models (never pickled code)")

    try:
        mlmodel = read_yaml(local / "MLmodel")
    except (OSError, YAMLInputError) as exc:
        raise refuse(f"no readable MLmodel file ({type(exc).__name__})") from None
    flavors = mlmodel.get("flavors") if isinstance(mlmodel, dict) else None
    pyfunc = flavors.get("python_function") if isinstance(flavors, dict) else None
    if not isinstance(pyfunc, dict) or set(flavors) != {"python_function"}:
        raise refuse(f"flavors {sorted(flavors or {})}, not only python_function")
    if "python_model" in pyfunc:
        raise refuse(f"its python_model is pickled ({pyfunc['python_model']})")
    if pyfunc.get("loader_module") != CODE_LOADER:
        raise refuse(f"it is loaded by {pyfunc.get('loader_module')}, not MLflow's models-from-code loader")
    if Path(str(pyfunc.get("model_code_path", ""))).name != MODEL_CODE.name:
        raise refuse(f"its model code is not {MODEL_CODE.name}")
    artifact = ((pyfunc.get("artifacts") or {}).get("model_dir") or {}).get("path")
    model_dir = (local / str(artifact)).resolve() if artifact else None
    if model_dir is None or not model_dir.is_dir() or local.resolve() not in model_dir.parents:
        raise refuse("no model_dir artifact")
    pickled = sorted(str(p.relative_to(local)) for pattern in REFUSED_FILES for p in local.rglob(pattern))
    if pickled:
        raise refuse(f"it holds pickled files ({', '.join(pickled[:3])})")
    return model_dir


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
    """The QA model behind `model_uri` (e.g. `models:/qaflow-qa@champion`) of the tracker's store, loaded once: its
    files are downloaded, accepted by `qaflow_model_dir` (qaflow's own models-from-code model, no pickle) and built
    from its weights and recipe by qaflow's own code. No code of the model runs (`mlflow.pyfunc.load_model` would
    unpickle a pickled model or run another model's code)."""
    with tempfile.TemporaryDirectory(prefix="qaflow-registered-") as tmp:
        try:
            local = tracker.download_model(model_uri, Path(tmp))
        except MlflowException as exc:
            raise ModelLoadError(f"cannot load {model_uri}: {exc.message}") from None
        return QAModel().load_model_dir(qaflow_model_dir(local, model_uri))
