"""The `tune` flow: an Optuna search over the training recipe; each trial a Prefect task run and a nested MLflow run.

Trials run one after another as task runs of one flow run: the TPE sampler suggests each trial from the results
of the earlier ones, and trials run side by side on one machine would only compete for its cores (and its GPU).
The search stops at `tune.n_trials` finished (complete or pruned) trials in the study, counting those of earlier
invocations, or when the invocation's `tune.timeout_s` budget is spent (no trial starts after it). A killed search
resumes from its stored study (`tasks.pipeline.tuning`); the best trial's model is registered as `challenger`.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import optuna
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows.retry import is_transient, retry_transient
from tasks.core.config import QAFlowConfig, load_config
from tasks.pipeline import tuning
from tasks.pipeline.run_record import run_owner
from tasks.tracking.tracker import Tracker


@task(cache_policy=NO_CACHE)
def tune_trial(
    tracker: Tracker, cfg: QAFlowConfig, root: Path, study: optuna.Study, trial: optuna.Trial, parent_run_id: str,
    data: tuning.TuneData,
) -> tuning.TrialOutcome:  # fmt: skip
    """Train, score and track one trial; tell the study its result."""
    outcome = tuning.run_trial(tracker, cfg, root, study, trial, parent_run_id, data)
    shown = "pruned" if outcome.value is None else f"{cfg.tune.metric} {outcome.value:.2f}"
    get_run_logger().info("trial %d %s: %s (%s)", outcome.number, outcome.state, shown, outcome.params)
    return outcome


@task(retries=3, retry_delay_seconds=5, retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def register_best(tracker: Tracker, cfg: QAFlowConfig, study: optuna.Study, parent_run_id: str) -> tuning.BestTrial:
    return tuning.register_best(tracker, cfg, study, parent_run_id)


@flow(name="tune", log_prints=True)
def tune(params_path: str = "params.yaml", overrides: dict[str, Any] | None = None, root: str = ".") -> dict[str, Any]:
    """Search the `tune` section's space; register the best trial as `challenger`."""
    repo = Path(root).resolve()
    cfg = load_config(repo / params_path, overrides)
    tuning.check_tunable(cfg, overrides)
    data = tuning.load_tune_data(cfg, repo)  # bad data, a bad model path or too-long questions fail here, once
    tuning.check_windows(cfg, data)
    tracker = Tracker.from_config(cfg.tracking, repo)
    t = cfg.tune
    deadline = time.monotonic() + t.timeout_s if t.timeout_s is not None else float("inf")
    with run_owner(repo, f"tune-{t.study_name}"):  # one live search per study
        study = tuning.open_study(t, tuning.study_dir(cfg, repo))
        parent_run_id = tuning.open_parent_run(tracker, cfg, study)
        recovered = tuning.recover_interrupted(tracker, study)
        if recovered:
            print(f"study {t.study_name}: trial(s) {recovered} were interrupted; failed and queued to run again")
        failures = 0
        while tuning.finished_trials(study) < t.n_trials and failures < t.n_trials:
            if time.monotonic() >= deadline:
                print(f"study {t.study_name}: time budget of {t.timeout_s:g} s spent; no further trial started")
                break
            trial = study.ask()
            try:
                tune_trial(tracker, cfg, repo, study, trial, parent_run_id, data)
            except Exception as exc:  # noqa: BLE001 - a failed trial is recorded; bad configuration stops the search
                tuning.fail_trial(tracker, study, trial, exc)
                if not is_transient(exc):
                    raise
                failures += 1
        best = register_best(tracker, cfg, study, parent_run_id)
        counts = {s.name.lower(): len(study.get_trials(deepcopy=False, states=(s,))) for s in optuna.trial.TrialState}
        name = cfg.tracking.registered_model_name
        print(f"registered {name} v{best.version} (trial {best.number}, {t.metric} {best.value:.2f}) as challenger")
        return {
            "study": t.study_name, "parent_run_id": parent_run_id, "trials": {k: v for k, v in counts.items() if v},
            "recovered": recovered, "best": asdict(best),
        }  # fmt: skip
