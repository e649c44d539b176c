"""Real local services for tests, on free 127.0.0.1 ports, started as users start them and stopped by their PIDs:
`prefect server`, `mlflow server` (any backend store, proxied artifacts), a throwaway PostgreSQL cluster, and a
private OpenSSH `sshd` (its own host key, one authorised client key) for DVC's SSH remote."""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

POSTGRES_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "services" / "postgres.sh"


class ServiceUnavailable(RuntimeError):
    """A service could not be installed or started on this machine (the message says why, in one line)."""


SSHD_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "services" / "sshd.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(log: Path | None, chars: int = 3000) -> str:
    return f":\n{log.read_text(errors='replace')[-chars:]}" if log is not None and log.exists() else ""


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll `url` until it answers 200; raise (with the tail of the server's `log`) if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered{log_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s{log_tail(log)}")


def stop_group(proc: subprocess.Popen, timeout: float = 20, sig: signal.Signals = signal.SIGTERM) -> None:
    """Signal a server's process group (servers spawn workers) with `sig`, then SIGKILL if it outlives `timeout`."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)


def mlflow_env() -> dict[str, str]:
    """This environment without MLFLOW_* variables, this interpreter's bin first on PATH (uvicorn), and no GenAI
    job runner (7 huey consumer processes a test does not need, on a 2-core machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


@contextmanager
def mlflow_server(root: Path, backend_store_uri: str, artifacts: Path, timeout: float = 180) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 with `backend_store_uri` and artifacts served from `artifacts`
    (`--serve-artifacts`: clients log through the server, never to a path of their own); yields its URL."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
        "--serve-artifacts", "--artifacts-destination", str(artifacts),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--uvicorn-opts", "--timeout-graceful-shutdown 5",
    ]  # fmt: skip
    log_path = root / "mlflow-server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=root, env=mlflow_env(), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", timeout, proc, log_path)
        yield url
    finally:
        stop_group(proc, timeout=15)


def postgres_bindir() -> Path:
    """Where initdb and postgres are, after `scripts/services/postgres.sh` made sure they are installed."""
    done = subprocess.run(["bash", str(POSTGRES_SCRIPT)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        raise ServiceUnavailable(lines[-1])
    return Path(done.stdout.strip().splitlines()[-1])


def _as_postgres_user() -> dict[str, Any]:
    """Popen arguments that run PostgreSQL's programs as the `postgres` user when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return {}
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        raise ServiceUnavailable("running as root and there is no 'postgres' user to run PostgreSQL as") from None
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _wait_postgres(dsn: str, proc: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ServiceUnavailable(f"postgres exited with {proc.returncode}{log_tail(log)}")
        try:
            psycopg.connect(dsn, connect_timeout=2).close()
            return
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                raise ServiceUnavailable(f"postgres refused connections for {timeout:.0f} s{log_tail(log)}") from exc
            time.sleep(0.2)


@contextmanager
def postgres_server(database: str = "mlflow", timeout: float = 60) -> Iterator[str]:
    """A throwaway PostgreSQL cluster (initdb in a temporary directory, trust auth, TCP on 127.0.0.1 only, no unix
    socket, fsync off) with an empty `database`; yields its `postgresql://` URI; stopped (fast shutdown) and removed
    after. Raises `ServiceUnavailable` when PostgreSQL cannot be installed or started here."""
    bindir = postgres_bindir()
    as_user = _as_postgres_user()
    home = Path(tempfile.mkdtemp(prefix="qaflow-pg-"))  # not under pytest's root-only tmp: `postgres` must reach it
    try:
        if as_user:
            os.chown(home, as_user["user"], as_user["group"])
        data, log_path = home / "data", home / "postgres.log"
        init = subprocess.run(
            [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"],
            cwd=home, capture_output=True, text=True, timeout=120, **as_user,
        )  # fmt: skip
        if init.returncode != 0:
            raise ServiceUnavailable(f"initdb failed: {' '.join(init.stderr.split())[-500:]}")
        port = free_port()
        cmd = [str(bindir / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(port), "-k", "",
               "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]  # fmt: skip
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                    **as_user)  # fmt: skip
        try:
            _wait_postgres(f"postgresql://postgres@127.0.0.1:{port}/postgres", proc, log_path, timeout)
            # autocommit: CREATE DATABASE cannot run inside a transaction
            with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres", autocommit=True) as admin:
                admin.execute(f'CREATE DATABASE "{database}"')
            yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
        finally:
            stop_group(proc, timeout=30, sig=signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
    finally:
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def prefect_server(home: Path, timeout: float = 180, database_url: str | None = None) -> Iterator[str]:
    """`prefect server start` on 127.0.0.1 with its own PREFECT_HOME; yields the API URL; always stopped.

    `database_url` (`postgresql://...`): the server's database is that PostgreSQL one (asyncpg), not sqlite.
    """
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": ""}
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    log = open(home.with_suffix(".log"), "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
         "--no-ui", "--analytics-off"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_http(f"{url}/health", timeout, proc)
        yield url
    finally:
        stop_group(proc, timeout=20)
        log.close()


@dataclass(frozen=True)
class SSHServer:
    """A running private sshd: where it listens, who may log in with which key, and its host key line."""

    host: str
    port: int
    user: str
    keyfile: Path
    known_hosts: str  # one known_hosts line pinning this server's host key: "[127.0.0.1]:PORT ssh-ed25519 ..."
    pid: int


def sshd_binary() -> str:
    """The sshd path from scripts/services/sshd.sh (installs openssh-server where it can); ServiceUnavailable else."""
    try:
        done = subprocess.run(["bash", str(SSHD_SCRIPT)], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServiceUnavailable(f"{SSHD_SCRIPT.name}: {exc}") from exc
    if done.returncode != 0 or not done.stdout.strip():
        reason = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise ServiceUnavailable(reason)
    return done.stdout.strip().splitlines()[-1]


def _wait_ssh_banner(port: int, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceUnavailable(f"sshd exited with {proc.returncode} before listening on port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                if conn.recv(64).startswith(b"SSH-2.0"):
                    return
        except OSError:
            time.sleep(0.1)
    raise ServiceUnavailable(f"sshd did not answer on port {port} within {timeout:.0f} s")


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "qaflow-test", "-f", str(path)],
                   check=True, capture_output=True, timeout=60)  # fmt: skip
    return path.with_suffix(".pub").read_text(encoding="utf-8").strip()


@contextmanager
def ssh_server(workdir: Path, timeout: float = 30) -> Iterator[SSHServer]:
    """`sshd -D` as the current user on 127.0.0.1:<free port>: its own host key, config, authorized_keys and pid
    file in `workdir`, public-key login only (root too, where the tests run as root); always stopped by its PID."""
    sshd = sshd_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    host_pub = _keygen(workdir / "host_ed25519")
    (workdir / "authorized_keys").write_text(_keygen(workdir / "client_ed25519") + "\n", encoding="utf-8")
    port = free_port()
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join([
            f"ListenAddress 127.0.0.1:{port}", f"HostKey {workdir / 'host_ed25519'}",
            f"AuthorizedKeysFile {workdir / 'authorized_keys'}", f"PidFile {workdir / 'sshd.pid'}",
            f"AllowUsers {getpass.getuser()}", "PubkeyAuthentication yes", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no",
            "Subsystem sftp internal-sftp", "LogLevel ERROR",
        ]) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    if os.geteuid() == 0:  # sshd started by root checks its privilege-separation directory
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = open(workdir / "sshd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)  # fmt: skip
    try:
        try:
            _wait_ssh_banner(port, timeout, proc)
        except ServiceUnavailable as exc:
            tail = (workdir / "sshd.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise ServiceUnavailable(f"{exc}{': ' + tail[0] if tail else ''}") from None
        known = f"[127.0.0.1]:{port} {' '.join(host_pub.split()[:2])}"
        yield SSHServer("127.0.0.1", port, getpass.getuser(), workdir / "client_ed25519", known, proc.pid)
    finally:
        stop_group(proc, timeout=10)
        log.close()
