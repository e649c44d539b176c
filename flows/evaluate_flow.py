"""The `evaluate` flow: score a registered model version on a data set (or an evaluation suite) and log it as a
tracked run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task

from flows.prefect_report import route_logs_to_prefect
from flows.retry import retry_transient
from tasks.core.config import load_config
from tasks.core.layout import evaluate_dir
from tasks.core.suites import resolve_suite
from tasks.pipeline.evaluation import Evaluation, evaluate_file, log_evaluation
from tasks.pipeline.suites import SuiteResult, log_suite, score_registered
from tasks.tracking.tracker import Tracker


@task
def score_model(tracker: Tracker, model_uri: str, data: str, max_samples: int | None, out_dir: Path) -> Evaluation:
    return evaluate_file(tracker, model_uri, data, out_dir, max_samples)


@task(retries=3, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def log_scores(tracker: Tracker, evaluation: Evaluation) -> str:
    return log_evaluation(tracker, evaluation)


@flow(name="evaluate", log_prints=True)
def evaluate(
    model_uri: str,
    data: str,
    max_samples: int | None = None,
    params_path: str = "params.yaml",
    root: str = ".",
) -> dict[str, Any]:
    """Score `model_uri` (e.g. `models:/qaflow-qa@challenger`) on `data`; returns metrics and the run id."""
    route_logs_to_prefect()
    repo = Path(root).resolve()
    tracker = Tracker.from_config(load_config(repo / params_path).tracking, repo)
    evaluation = score_model(tracker, model_uri, data, max_samples, evaluate_dir(repo))
    run_id = log_scores(tracker, evaluation)
    print(f"{model_uri} on {data}: {evaluation.metrics}")
    return {
        "run_id": run_id, "metrics": evaluation.metrics, "speed": evaluation.speed,
        "files": {k: str(v) for k, v in evaluation.files.items()},
        "eval_data": {"path": evaluation.data_path, "sha256": evaluation.data_sha256, "examples": evaluation.examples},
    }  # fmt: skip


@task(retries=3, retry_delay_seconds=5, retry_condition_fn=retry_transient)
def log_suite_scores(tracker: Tracker, result: SuiteResult, scored_run: str | None = None) -> str:
    return log_suite(tracker, result, scored_run)


def suite_summary(result: SuiteResult, run_id: str) -> dict[str, Any]:
    return {"suite": result.suite, "model": result.model, "run_id": run_id, "summary": result.summary(),
            "table": result.table()}  # fmt: skip


@flow(name="evaluate-suite", log_prints=True)
def evaluate_suite(model_uri: str, suite: str, params_path: str = "params.yaml", root: str = ".") -> dict[str, Any]:
    """Score `model_uri` on every member of `suite`; one run with per-member metrics and the table."""
    repo = Path(root).resolve()
    cfg = load_config(repo / params_path)
    name, members = resolve_suite(cfg, repo, suite)  # every member file checked before the model loads
    tracker = Tracker.from_config(cfg.tracking, repo)
    result = score_registered(tracker, model_uri, name, members, evaluate_dir(repo) / f"suite-{name}")
    return suite_summary(result, log_suite_scores(tracker, result))
