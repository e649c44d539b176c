"""Error-slice rows as MLflow tables: logged per run (`log_slice_table`) and read back for `compare`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from tasks.core.slices import SliceRow

SLICES_TABLE = "slices/slices_table.json"  # the MLflow table (mlflow.log_table / load_table)
SLICE_COLUMNS = ("dimension", "slice", "count", "exact", "f1")


def log_slice_table(
    client: MlflowClient, run_id: str, rows: Sequence[SliceRow], artifact_file: str = SLICES_TABLE
) -> None:
    """The slice rows as an MLflow table of the run (shown in the UI's artifact view, read by `load_slice_table`)."""
    client.log_table(run_id, {c: [getattr(r, c) for r in rows] for c in SLICE_COLUMNS}, artifact_file)


def load_slice_table(client: MlflowClient, run_id: str, artifact_file: str = SLICES_TABLE) -> list[dict[str, Any]]:
    """A run's slice table as row dicts; [] when the run logged none."""
    parent = str(Path(artifact_file).parent)
    if not any(a.path == artifact_file for a in client.list_artifacts(run_id, parent)):
        return []
    local = client.download_artifacts(run_id, artifact_file)
    table = json.loads(Path(local).read_text(encoding="utf-8"))
    return [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
