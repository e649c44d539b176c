"""MLflow on a production backend: PostgreSQL as the backend store, artifacts served by `mlflow server`.

A throwaway PostgreSQL cluster and `mlflow server --backend-store-uri postgresql://... --serve-artifacts
--artifacts-destination DIR` run on free 127.0.0.1 ports (`tests/servers.py`); qaflow talks to the server over HTTP
only (`tracking.tracking_uri: http://...`). `qaflow retrain` (version 1, `challenger`), `qaflow promote` (first
champion), a better version 2 logged over HTTP, `qaflow promote` again (champion moves, `previous-champion` appears),
`qaflow evaluate`, `qaflow compare` and `qaflow answer` run as users run them; the runs, versions and aliases are then
read back from PostgreSQL itself and the artifacts from the artifacts destination. PostgreSQL comes from
`scripts/services/postgres.sh` (installed there when missing, as root); where it cannot be had the test skips with
the reason, except under CI=true, where it fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import mlflow
import psycopg
import pytest
import yaml

from tasks.core.config import load_config
from tests.integration.test_retrain_flow import DEV, MODEL_NAME, env_for, make_repo, summary_of
from tests.servers import ServiceUnavailable, mlflow_server, postgres_server
from tests.test_promote import add_version

pytestmark = pytest.mark.slow

CONTEXT = "The Eiffel Tower was built in 1889 by Gustave Eiffel. It stands in Paris, the capital of France."


@dataclass(frozen=True)
class Backend:
    database: str  # postgresql://... (the backend store, for reading back)
    server: str  # http://127.0.0.1:PORT (what qaflow is given)
    artifacts: Path  # --artifacts-destination


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """PostgreSQL + `mlflow server` on it; skipped where PostgreSQL cannot be had, failed for that under CI."""
    root = tmp_path_factory.mktemp("mlflow-postgres")
    with ExitStack() as stack:
        try:
            uri = stack.enter_context(postgres_server(database="mlflow"))
        except ServiceUnavailable as exc:
            if in_ci():
                pytest.fail(f"PostgreSQL is required in CI (CI=true) and could not be had: {exc}")
            pytest.skip(f"PostgreSQL not available here: {exc}")
        url = stack.enter_context(mlflow_server(root / "server", uri, root / "artifacts"))
        yield Backend(uri, url, root / "artifacts")


def run_qaflow(repo: Path, *argv: str, timeout: float = 600) -> str:
    """`qaflow ARGV --root REPO` as users run it, in the project directory; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", *argv, "--root", str(repo)], cwd=repo, env=env_for(repo),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, f"qaflow {argv[0]} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done.stdout


def qaflow(repo: Path, *argv: str) -> dict:
    """`run_qaflow`, then the JSON summary the command printed last."""
    return summary_of(run_qaflow(repo, *argv))


def query(database: str, sql: str, *args: object) -> list[tuple]:
    with psycopg.connect(database) as conn:
        return conn.execute(sql, args).fetchall()


def test_retrain_promote_evaluate_compare_answer_on_postgres(
    backend: Backend, tiny_bert_dir: Path, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "project", tiny_bert_dir, max_steps=4, save_steps=4)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["tracking"]["tracking_uri"] = backend.server
    (repo / "params.yaml").write_text(yaml.safe_dump(params))

    first = qaflow(repo, "retrain", "--json")
    assert first["action"] == "new" and first["version"] == "1"
    assert first["mlflow_run_url"].startswith(f"{backend.server}/#/experiments/")
    promoted = qaflow(repo, "promote")
    assert promoted["action"] == "first-champion" and promoted["champion_after"] == "1"

    # a second version, 1 F1 point better, logged and registered over HTTP the way retrain does (log_qa_model moves
    # `challenger`; a second retrain would cost ~40 s more here and test nothing more about the store)
    better = {"exact_match": 0.0, "f1": first["metrics"]["f1"] + 1.0}
    try:
        second = add_version(load_config(repo / "params.yaml"), repo, tiny_bert_dir, better, first["data_version"])
    finally:
        mlflow.set_tracking_uri(None)
    assert second == "2"
    moved = qaflow(repo, "promote")
    assert moved["action"] == "promote" and (moved["champion_before"], moved["champion_after"]) == ("1", "2")

    champion = f"models:/{MODEL_NAME}@champion"
    evaluated = qaflow(repo, "evaluate", "--model-uri", champion, "--data", str(DEV), "--max-samples", "8")
    assert {"exact_match", "f1"} <= set(evaluated)
    compare_dir = tmp_path / "compare"
    compared = run_qaflow(repo, "compare", "--output", str(compare_dir))
    table = json.loads((compare_dir / "comparison.json").read_text())
    assert {first["run_id"], evaluated["run_id"]} <= {row["run_id"] for row in table} and len(table) == 3
    (comparison_run,) = re.findall(r"logged as MLflow run ([0-9a-f]{32})", compared)
    answer = qaflow(repo, "answer", "--question", "When was the tower built?", "--context", CONTEXT)
    assert answer["model"] == champion and 0.0 <= answer["score"] <= 1.0
    assert answer["start"] == -1 or CONTEXT[answer["start"] : answer["end"]] == answer["answer"]

    # read back from PostgreSQL itself, not through MLflow
    runs = dict(query(backend.database, "SELECT run_uuid, status FROM runs"))
    assert len(runs) == 4 and set(runs.values()) == {"FINISHED"}, runs  # retrain, v2, evaluate, compare: no duplicate
    assert {first["run_id"], evaluated["run_id"]} <= set(runs)
    kinds = query(backend.database, "SELECT run_uuid FROM tags WHERE key = 'qaflow.kind' AND value = 'comparison'")
    assert kinds == [(comparison_run,)] and runs[comparison_run] == "FINISHED"
    versions = query(backend.database, "SELECT version, run_id FROM model_versions WHERE name = %s ORDER BY version",
                     MODEL_NAME)  # fmt: skip
    assert [v for v, _ in versions] == [1, 2] and versions[0][1] == first["run_id"] and versions[1][1] in runs
    aliases = dict(query(backend.database, "SELECT alias, version FROM registered_model_aliases WHERE name = %s",
                         MODEL_NAME))  # fmt: skip
    assert aliases == {"challenger": 2, "champion": 2, "previous-champion": 1}
    evaluated_metric = query(backend.database, "SELECT value FROM latest_metrics WHERE run_uuid = %s AND key = 'f1'",
                             evaluated["run_id"])  # fmt: skip
    assert evaluated_metric == [(pytest.approx(evaluated["f1"]),)]

    # every artifact went through the server into --artifacts-destination, none next to the client
    uris = {uri for (uri,) in query(backend.database, "SELECT artifact_uri FROM runs")}
    assert uris and all(uri.startswith("mlflow-artifacts:/") for uri in uris), uris
    stored = [p.relative_to(backend.artifacts).as_posix() for p in backend.artifacts.rglob("*") if p.is_file()]
    assert sum(p.endswith("/MLmodel") for p in stored) >= 2, "both registered models' files"
    assert any("/comparison/" in p for p in stored) and any(p.endswith("params.yaml") for p in stored)
    assert not (repo / "mlruns").exists() and not (repo / "mlartifacts").exists()
    print(f"postgres: {len(runs)} runs, {len(versions)} versions, {len(aliases)} aliases; {len(stored)} artifacts")
