"""Scoring a registered (or any MLflow) QA model on a dataset: the work behind the `evaluate` flow and promotion."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from tasks.data import QADataset
from tasks.features import FeatureSettings
from tasks.postprocess import NBestSettings
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

    from tasks.predict import predict_examples

    qa = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    s = qa.settings
    v2 = dataset.version == "2.0"
    run = predict_examples(
        qa.model, qa.tokenizer, dataset.examples,
        FeatureSettings(s.max_seq_length, s.doc_stride, True),
        NBestSettings(s.n_best_size, s.max_answer_length, v2, s.null_score_diff_threshold),
        out_dir, save_raw=False, device=qa.device,
    )  # fmt: skip
    metrics = score_dataset(dataset, run.predictions, run.null_odds)
    return {"metrics": metrics, "speed": run.metrics, "files": {k: str(v) for k, v in run.files.items()}}
