"""DVC's SSH remote for real: a private OpenSSH `sshd` on loopback (tests/servers.py `ssh_server`) and `dvc-ssh`.

A first checkout's `qaflow retrain` runs both data stages and pushes their outputs over SSH; a fresh `git clone`
of it, with only the remote's credentials configured, retrains on the same data version without running any
stage, and with a key the server refuses stops with one line (exit 2, no retries). On test_versioning's tiny
pipeline: a fresh copy pulls; a remote without the data makes the stages run; a refused login is a
`RemoteConfigError` (not retried); a remote that is down is a `RemoteUnreachableError` (retried). The client's
HOME is a temp directory whose `~/.ssh/known_hosts` pins the server's host key: host key checking stays on.

Without an sshd (not installed and not installable: no root, no mirror) the tests skip, except under CI=true,
where they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from flows.retry import is_transient
from tasks import versioning
from tests.integration.test_retrain_flow import env_for, git_commit_all, make_repo, retrain_argv, summary_of
from tests.servers import ServiceUnavailable, SSHServer, free_port, ssh_server
from tests.test_versioning import fresh_copy, write_pipeline

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:_NoneStep.value:DeprecationWarning")]

REMOTE = "ssh-store"
OUTS = ("data/prepared", "data/features")
CACHED = ("a.txt", "b.txt")  # the cached outputs of test_versioning's pipeline
STAGE_BODY = "tasks.core.progress: featurize train:"
FAST = ("--max_steps", "4")  # training is not what is tested here
IGNORED = "/outputs/\n/mlruns/\n/.prefect/\n/.dvcstore/\n"  # a run's own files: not part of the commit


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    """The private sshd for the whole module (scripts/services/sshd.sh installs it where it can)."""
    with ExitStack() as stack:
        try:
            running = stack.enter_context(ssh_server(tmp_path_factory.mktemp("sshd")))
        except ServiceUnavailable as exc:
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(f"CI=true and no sshd: {exc}")
            pytest.skip(f"no sshd for the SSH remote: {exc}")
        yield running


@pytest.fixture(scope="module")
def client_home(sshd: SSHServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A HOME whose ~/.ssh/known_hosts holds the server's host key (DVC's asyncssh checks it there)."""
    home = tmp_path_factory.mktemp("home")
    (home / ".ssh").mkdir(mode=0o700)
    (home / ".ssh" / "known_hosts").write_text(sshd.known_hosts + "\n", encoding="utf-8")
    return home


@pytest.fixture
def as_client(client_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """This process as the SSH client (its HOME), with DVC's global and site config kept out of the real ones."""
    monkeypatch.setenv("HOME", str(client_home))
    for name, sub in (("DVC_GLOBAL_CONFIG_DIR", "global"), ("DVC_SYSTEM_CONFIG_DIR", "system")):
        monkeypatch.setenv(name, str(tmp_path / "dvc" / sub))
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(tmp_path / "dvc" / "site"))
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")


def remote_url(sshd: SSHServer, directory: Path, port: int | None = None) -> str:
    return f"ssh://{sshd.host}:{port or sshd.port}{directory}"


def dvc(root: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, f"dvc {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def add_credentials(root: Path, env: dict[str, str], sshd: SSHServer, keyfile: Path | None = None) -> None:
    """The per-user part of the remote, in the git-ignored .dvc/config.local (a clone does not get it)."""
    for key, value in (("user", sshd.user), ("keyfile", str(keyfile or sshd.keyfile)), ("port", str(sshd.port))):
        dvc(root, env, "remote", "modify", "--local", REMOTE, key, value)


def tree_digest(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*"))}


def git(root: Path, *args: str) -> str:
    ident = ["-c", "user.name=qaflow-test", "-c", "user.email=test@example.com"]
    done = subprocess.run(["git", *ident, *args], cwd=root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_fresh_clone_pulls_the_data_version_over_ssh_and_runs_no_stage(
    sshd: SSHServer, client_home: Path, tmp_path: Path, tiny_bert_dir: Path
) -> None:
    first = make_repo(tmp_path / "first", tiny_bert_dir)
    (first / ".gitignore").write_text(IGNORED, encoding="utf-8")
    git(first, "init", "-q", "-b", "main")
    versioning.ensure_dvc_repo(first)  # DVC with git now: it git-ignores the stage outputs it writes
    env = {**env_for(first), "HOME": str(client_home)}
    store = tmp_path / "remote"
    dvc(first, env, "remote", "add", "--default", REMOTE, remote_url(sshd, store))  # committed: .dvc/config
    add_credentials(first, env, sshd)
    git_commit_all(first)

    started = time.perf_counter()
    one = subprocess.run(retrain_argv(first, *FAST), cwd=first, env=env, capture_output=True, text=True, timeout=900)
    first_s = time.perf_counter() - started
    assert one.returncode == 0, one.stderr[-4000:]
    s1 = summary_of(one.stdout)
    assert s1["data_stages"] == {"ran": ["prepare", "featurize"], "pulled": []}
    assert "Running stage 'prepare'" in one.stderr and "Running stage 'featurize'" in one.stderr
    assert STAGE_BODY in one.stderr  # the featurize command's own progress line
    assert len([p for p in store.rglob("*") if p.is_file()]) >= 4  # objects and the two directory manifests
    git(first, "add", "-A")
    git(first, "commit", "-qm", "data version from the first retrain")  # dvc.lock, data/.gitignore, metrics

    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(first), str(clone))
    assert not any((clone / out).exists() for out in OUTS) and not (clone / ".dvc" / "config.local").exists()
    add_credentials(clone, env, sshd)
    env_clone = {**env, "PREFECT_HOME": str(clone / ".prefect")}
    started = time.perf_counter()
    two = subprocess.run(
        retrain_argv(clone, *FAST), cwd=clone, env=env_clone, capture_output=True, text=True, timeout=900
    )
    clone_s = time.perf_counter() - started
    assert two.returncode == 0, two.stderr[-4000:]
    s2 = summary_of(two.stdout)
    assert s2["data_stages"] == {"ran": [], "pulled": ["prepare", "featurize"]}, two.stderr[-4000:]
    assert "Running stage" not in two.stdout + two.stderr and STAGE_BODY not in two.stderr  # no stage command ran
    assert s2["data_version"] == s1["data_version"] == versioning.data_version(first).id
    assert {out: tree_digest(clone / out) for out in OUTS} == {out: tree_digest(first / out) for out in OUTS}
    assert json.loads(dvc(clone, env, "status", "--json")) == {}  # the pulled outputs match dvc.lock
    assert git(clone, "status", "--porcelain", "dvc.lock", "params.yaml") == ""  # the same version, unchanged

    for out in (*OUTS, ".dvc/cache"):  # as fresh again, now with a key the server refuses: one line, no retries
        shutil.rmtree(clone / out)
    add_credentials(clone, env, sshd, keyfile=sshd.keyfile.with_name("host_ed25519"))
    refused = subprocess.run(retrain_argv(clone, *FAST), cwd=clone, env=env_clone, capture_output=True, text=True,
                             timeout=900)  # fmt: skip
    assert refused.returncode == 2, refused.stderr[-3000:]
    errors = [line for line in refused.stderr.splitlines() if line.startswith("qaflow retrain: error:")]
    assert len(errors) == 1 and f"'{REMOTE}'" in errors[0] and "Permission denied" in errors[0], errors
    assert "Retry 1/" not in refused.stdout + refused.stderr  # Prefect's retry line: a config error is not retried
    print(f"\nfirst checkout: retrain {first_s:.1f} s ({stage_seconds(one)}), ran {s1['data_stages']['ran']}, "
          f"data version {s1['data_version']}; fresh clone: retrain {clone_s:.1f} s ({stage_seconds(two)}), pulled "
          f"{s2['data_stages']['pulled']}, data version {s2['data_version']}")  # fmt: skip


def stage_seconds(done: subprocess.CompletedProcess) -> str:
    """The flow's own "DVC stages N s" figure from its log."""
    found = re.search(r"DVC stages [0-9.]+ s", done.stdout + done.stderr)
    return found.group(0) if found else "DVC stages: not logged"


@pytest.fixture(scope="module")
def pushed(sshd: SSHServer, client_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """test_versioning's two-stage `python -c` project, reproduced and pushed to the SSH remote (read-only)."""
    root = write_pipeline(tmp_path_factory.mktemp("pushed") / "repo")
    versioning.ensure_dvc_repo(root)
    env = {**os.environ, "HOME": str(client_home)}
    dvc(root, env, "remote", "add", "--default", REMOTE, remote_url(sshd, tmp_path_factory.mktemp("store")))
    add_credentials(root, env, sshd)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HOME", str(client_home))
        versioning.reproduce(root)
        assert versioning.push(root) == 2
    return root


@pytest.fixture
def fresh(pushed: Path, tmp_path: Path, as_client: None) -> Path:
    """A copy of the pushed project as a clone has it: dvc.lock, but no cached outputs and no DVC cache."""
    return fresh_copy(pushed, tmp_path / "fresh")


def test_a_fresh_copy_pulls_over_ssh(fresh: Path, pushed: Path) -> None:
    run = versioning.reproduce(fresh)
    assert run.pulled == ("a", "b") and run.ran == ()
    assert {n: (fresh / n).read_bytes() for n in CACHED} == {n: (pushed / n).read_bytes() for n in CACHED}


def test_a_remote_without_the_data_makes_the_stages_run(
    fresh: Path, pushed: Path, sshd: SSHServer, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-store"
    empty.mkdir()
    dvc(fresh, dict(os.environ), "remote", "modify", REMOTE, "url", remote_url(sshd, empty))
    run = versioning.reproduce(fresh)
    assert run.ran == ("a", "b") and run.pulled == ()
    assert versioning.data_version(fresh) == versioning.data_version(pushed)
    assert {n: (fresh / n).read_bytes() for n in CACHED} == {n: (pushed / n).read_bytes() for n in CACHED}


def test_a_refused_login_is_one_clear_error_that_is_not_retried(fresh: Path, sshd: SSHServer) -> None:
    not_authorised = sshd.keyfile.with_name("host_ed25519")  # a valid key the server does not accept for login
    add_credentials(fresh, dict(os.environ), sshd, keyfile=not_authorised)
    lock = (fresh / "dvc.lock").read_bytes()
    with pytest.raises(versioning.RemoteConfigError) as refused:
        versioning.reproduce(fresh)
    message = str(refused.value)
    assert "\n" not in message and f"'{REMOTE}'" in message and "Permission denied" in message
    assert not is_transient(refused.value)
    assert (fresh / "dvc.lock").read_bytes() == lock and not any((fresh / name).exists() for name in CACHED)


def test_a_remote_that_is_down_is_a_transient_error(fresh: Path, sshd: SSHServer) -> None:
    closed = free_port()  # nothing listens there
    dvc(fresh, dict(os.environ), "remote", "modify", "--local", REMOTE, "port", str(closed))
    dvc(fresh, dict(os.environ), "remote", "modify", REMOTE, "url", remote_url(sshd, Path("/nowhere"), closed))
    with pytest.raises(versioning.RemoteUnreachableError) as down:
        versioning.reproduce(fresh)
    assert "ConnectionRefusedError" in str(down.value) and f"'{REMOTE}'" in str(down.value)
    assert is_transient(down.value)
