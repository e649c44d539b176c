"""Scoring a registered (or any MLflow) QA model on a dataset: the work behind the `evaluate` flow and promotion."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tasks.data import QADataset
from tasks.stages import score_dataset


def file_digest(path: str | Path) -> str:
    """A content id for an evaluation file (short sha256), so scores name exactly what they were computed on."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def evaluate_model(model_uri: str, dataset: QADataset, out_dir: Path) -> dict[str, Any]:
    """Load `model_uri` (e.g. `models:/qaflow-qa@champion`), predict on `dataset`, return official metrics + speed."""
    import mlflow

    qa = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    run = qa.run_examples(dataset.examples, out_dir, version_2=dataset.version == "2.0")
    metrics = score_dataset(dataset, run.predictions, run.null_odds)
    return {"metrics": metrics, "speed": run.metrics, "files": {k: str(v) for k, v in run.files.items()}}
