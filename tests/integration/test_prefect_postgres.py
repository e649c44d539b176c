"""Prefect on PostgreSQL, and one job per device: two retrains against a global concurrency limit of 1 run one after
the other.

A throwaway PostgreSQL cluster (`tests/servers.py`) is the database of a real `prefect server`; the limit is made
the way users make it (`prefect gcl create qaflow-gpu --limit 1`); two retrains start at once with
`--device_concurrency_limit qaflow-gpu` (different learning rates, so two runs). Their device-slot intervals must
not overlap, the flow runs must be in PostgreSQL, and a limit the server does not know stops a retrain with one line
(exit 2) before any work. Skipped where PostgreSQL cannot be had, except under CI=true, where that fails.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import psycopg
import pytest

from tests.integration.test_postgres_backend import in_ci
from tests.integration.test_retrain_flow import env_for, make_repo, retrain_argv, summary_of
from tests.servers import ServiceUnavailable, postgres_server, prefect_server

LIMIT = "qaflow-gpu"


@pytest.fixture(scope="module")
def prefect_on_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(API URL, database URI) of a Prefect server whose database is PostgreSQL."""
    home = tmp_path_factory.mktemp("prefect-pg") / "home"
    home.mkdir()
    with ExitStack() as stack:
        try:
            database = stack.enter_context(postgres_server(database="prefect"))
        except ServiceUnavailable as exc:
            if in_ci():
                pytest.fail(f"PostgreSQL is required in CI (CI=true) and could not be had: {exc}")
            pytest.skip(f"PostgreSQL not available here: {exc}")
        yield stack.enter_context(prefect_server(home, database_url=database)), database


def test_two_retrains_on_one_device_limit_run_one_after_the_other(
    prefect_on_postgres: tuple[str, str], tmp_path: Path, tiny_bert_dir: Path
) -> None:
    api_url, database = prefect_on_postgres
    repo = make_repo(tmp_path / "project", tiny_bert_dir)
    env = {**env_for(repo), "PREFECT_API_URL": api_url}
    prefect = str(Path(sys.executable).parent / "prefect")
    made = subprocess.run([prefect, "gcl", "create", LIMIT, "--limit", "1"], env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr

    procs = [
        subprocess.Popen(
            retrain_argv(repo, "--learning_rate", lr, "--device_concurrency_limit", LIMIT), cwd=repo, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for lr in ("1e-3", "5e-4")
    ]  # fmt: skip
    outs = [p.communicate(timeout=1200) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-4000:]
    first, second = sorted((summary_of(out)["device_slot"] for out, _ in outs), key=lambda s: s["held_from"])
    assert first["limit"] == second["limit"] == LIMIT
    assert first["held_to"] <= second["held_from"], (first, second)  # one after the other, never together
    assert second["waited_s"] > 1.0  # the second queued for the slot

    with psycopg.connect(database) as conn:  # the flow runs live in PostgreSQL, not in a sqlite file
        states = conn.execute(
            "SELECT state_type FROM flow_run JOIN flow ON flow.id = flow_run.flow_id WHERE flow.name = 'retrain'"
        ).fetchall()
        limit_row = conn.execute("SELECT \"limit\", active_slots FROM concurrency_limit_v2 WHERE name = %s",
                                 (LIMIT,)).fetchone()  # fmt: skip
    assert sorted(s for (s,) in states) == ["COMPLETED", "COMPLETED"]
    assert limit_row == (1, 0)  # both slots given back


def test_an_unknown_device_limit_stops_the_retrain_before_any_work(
    prefect_on_postgres: tuple[str, str], tmp_path: Path, tiny_bert_dir: Path
) -> None:
    api_url, _ = prefect_on_postgres
    repo = make_repo(tmp_path / "project", tiny_bert_dir)
    params_before = (repo / "params.yaml").read_bytes()
    out = subprocess.run(
        retrain_argv(repo, "--device_concurrency_limit", "no-such-gpu"), cwd=repo,
        env={**env_for(repo), "PREFECT_API_URL": api_url}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2, out.stderr[-3000:]
    assert "no Prefect global concurrency limit 'no-such-gpu'" in lines[-1]
    assert "prefect gcl create no-such-gpu" in lines[-1]
    assert (repo / "params.yaml").read_bytes() == params_before and not (repo / "data" / "features").exists()
