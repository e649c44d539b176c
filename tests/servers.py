"""Real local services for tests on free loopback ports, started as users start them: a `prefect server`, and a
private OpenSSH `sshd` (its own host key, one authorised client key) for DVC's SSH remote."""

from __future__ import annotations

import getpass
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SSHD_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "services" / "sshd.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def stop_group(proc: subprocess.Popen, timeout: float = 20) -> None:
    """SIGTERM a server's process group (servers spawn workers), then SIGKILL if it outlives `timeout`."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=timeout)


@contextmanager
def prefect_server(home: Path, timeout: float = 180) -> Iterator[str]:
    """`prefect server start` on 127.0.0.1 with its own PREFECT_HOME; yields the API URL; always stopped."""
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "PREFECT_API_URL": ""}
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


class ServiceUnavailable(RuntimeError):
    """A service a test needs cannot be installed or started here; the message says why."""


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
