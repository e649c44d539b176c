"""What a flow run shows in the Prefect UI: qaflow's and transformers' log records, and a summary artifact.

`route_logs_to_prefect` gives the `tasks`, `flows` and `transformers` loggers the handlers of Prefect's
`prefect.extra` logger, which is what `PREFECT_LOGGING_EXTRA_LOGGERS` does when it is set before Prefect starts;
doing it here works however the flow is started (`qaflow retrain`, a deployment, a worker). `publish_retrain_report`
writes a table artifact and a markdown artifact (metrics, data version, model version, MLflow run link) per run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import UUID

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from tasks.core.console import plain_log_records

LOGGERS = ("tasks", "flows", "transformers")
REPORT_KEY = "qaflow-retrain"  # artifacts of one key are versions of one report in the Prefect UI
THROUGHPUT = ("train_samples_per_second", "train_steps_per_second", "train_tokens_per_second", "train_runtime")


def route_logs_to_prefect(names: Iterable[str] = LOGGERS) -> None:
    """Send these loggers' records (INFO and up for qaflow's own) to the flow run's logs in Prefect, with no ANSI
    codes (a browser shows them) where the console is not a terminal either."""
    plain_log_records()
    extra = logging.getLogger("prefect.extra").handlers
    for name in names:
        logger = logging.getLogger(name)
        for handler in extra:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        if name != "transformers" and logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


def report_rows(summary: Mapping[str, Any], mlflow_link: str | None, ui_command: str | None = None
                ) -> list[dict[str, str]]:  # fmt: skip
    """`field` / `value` rows: what happened, the data and model versions, the scores, throughput, the run link
    (the tracking server's page, or for a local store the page `ui_command` serves, with that command)."""
    rows = [
        ("action", summary.get("action")), ("reason", summary.get("reason")),
        ("data version", summary.get("data_version")), ("run key", summary.get("run_key")),
        *((f"DVC stages {how}", ", ".join(names) or "none") for how, names in summary.get("data_stages", {}).items()),
        ("MLflow run", summary.get("run_id")), ("model version", summary.get("version")),
        *((k, _number(v)) for k, v in (summary.get("metrics") or {}).items()),
        *((k, _number(summary["train"][k])) for k in THROUGHPUT if k in (summary.get("train") or {})),
        ("MLflow run page", mlflow_link),
        ("MLflow UI (a local store: start it first)", ui_command if mlflow_link else None),
    ]  # fmt: skip
    return [{"field": k, "value": str(v)} for k, v in rows if v not in (None, "")]


def report_markdown(
    summary: Mapping[str, Any], mlflow_link: str | None, model_name: str, ui_command: str | None = None
) -> str:
    """The same facts as a short markdown page."""
    version = summary.get("version")
    head = f"registered `{model_name}` v{version} as `challenger`" if version else f"{summary.get('action')}"
    lines = [f"# qaflow retrain: {head}", ""]
    if summary.get("reason"):
        lines += [f"{summary['reason']}", ""]
    lines += ["| field | value |", "|---|---|"]
    lines += [f"| {r['field']} | {r['value']} |" for r in report_rows(summary, None)]
    if mlflow_link:
        lines += ["", f"[MLflow run]({mlflow_link})"]
        if ui_command:
            lines += ["", f"The tracking store is local: `{ui_command}` serves this page."]
    return "\n".join(lines) + "\n"


def publish_retrain_report(
    summary: Mapping[str, Any], mlflow_link: str | None, model_name: str, ui_command: str | None = None
) -> list[UUID]:
    """The table and markdown artifacts of this flow run (call inside the flow); `ui_command`: what serves the link
    (`Tracker.ui_command`, None for a tracking server)."""
    description = f"qaflow retrain: data version {summary.get('data_version')}"
    return [
        create_table_artifact(report_rows(summary, mlflow_link, ui_command), key=REPORT_KEY, description=description),
        create_markdown_artifact(
            report_markdown(summary, mlflow_link, model_name, ui_command),
            key=f"{REPORT_KEY}-report",
            description=description,
        ),
    ]


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
