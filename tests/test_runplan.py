"""`tasks.pipeline.runplan`: the run key (data version + model parameters) and the skip/resume/new decision."""

from __future__ import annotations

from typing import Any

import pytest

from tasks.core.config import QAFlowConfig, load_config
from tasks.pipeline.runplan import NON_MODEL_KEYS, RunPlan, model_params, plan_run, run_key
from tasks.tracking.records import RunRecord

VERSION = "d41d8cd98f00"


def key_with(overrides: dict[str, Any], version: str = VERSION) -> str:
    return run_key(load_config(None, overrides), version)


def stand_in_run(status: str, run_id: str = "abc123") -> RunRecord:
    """A tracked run as the tracker reads it back."""
    return RunRecord(run_id, "0", f"retrain-{run_id}", status)


# --- run_key


def test_run_key_is_stable_for_equal_configs() -> None:
    first = run_key(QAFlowConfig(), VERSION)
    assert first == run_key(QAFlowConfig(), VERSION)
    assert first == key_with({"learning_rate": 3e-5})  # same value set explicitly
    assert len(first) == 16 and int(first, 16) >= 0


def test_run_key_changes_with_data_version() -> None:
    assert run_key(QAFlowConfig(), "v1") != run_key(QAFlowConfig(), "v2")


@pytest.mark.parametrize(
    "overrides",
    [
        {"learning_rate": 5e-5},
        {"max_seq_length": 256},
        {"doc_stride": 64},
        {"seed": 1},
        {"model_name_or_path": "other-model"},
        {"n_best_size": 10},
        {"max_train_samples": 100},
    ],
)
def test_run_key_changes_with_model_parameters(overrides: dict[str, Any]) -> None:
    assert key_with(overrides) != key_with({})


@pytest.mark.parametrize(
    "overrides",
    [
        {"train.output_dir": "elsewhere"},
        {"logging_steps": 1},
        {"save_steps": 7},
        {"save_total_limit": 9},
        {"save_strategy": "epoch"},
        {"dataloader_num_workers": 4},
        {"preprocessing_num_workers": 8},
        {"tracking_uri": "http://127.0.0.1:5000", "experiment_name": "x", "registered_model_name": "y"},
        {"artifact_root": "somewhere/else"},
    ],
)
def test_run_key_ignores_non_model_parameters(overrides: dict[str, Any]) -> None:
    assert key_with(overrides) == key_with({})


def test_model_params_drop_non_model_keys_and_tracking() -> None:
    params = model_params(QAFlowConfig())
    assert "tracking" not in params
    for section, key in NON_MODEL_KEYS:
        assert key not in params[section]
    assert params["train"]["learning_rate"] == 3e-5
    assert params["features"]["max_seq_length"] == 384


# --- plan_run


def test_plan_no_run_is_new() -> None:
    plan = plan_run("k", None, registered=False)
    assert plan == RunPlan("new", "k", None, plan.reason)
    assert plan_run("k", None, registered=True, force=True).action == "new"


def test_plan_finished_and_registered_is_skipped() -> None:
    plan = plan_run("k", stand_in_run("FINISHED", "r1"), registered=True)
    assert (plan.action, plan.run_key, plan.run_id) == ("skip", "k", "r1")
    assert "r1" in plan.reason and "k" in plan.reason


def test_plan_force_starts_a_new_run() -> None:
    plan = plan_run("k", stand_in_run("FINISHED", "r1"), registered=True, force=True)
    assert (plan.action, plan.run_id) == ("new", None)


@pytest.mark.parametrize(("status", "registered"), [("FINISHED", False), ("RUNNING", False), ("FAILED", True),
                                                    ("RUNNING", True), ("KILLED", False)])  # fmt: skip
def test_plan_unfinished_or_unregistered_is_resumed(status: str, registered: bool) -> None:
    plan = plan_run("k", stand_in_run(status, "r2"), registered=registered)
    assert (plan.action, plan.run_key, plan.run_id) == ("resume", "k", "r2")
    assert status in plan.reason


def test_plan_force_does_not_discard_an_unfinished_run() -> None:
    assert plan_run("k", stand_in_run("FAILED", "r3"), registered=False, force=True).action == "resume"
