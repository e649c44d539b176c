"""Real faults for tests: a tiny or read-only file system (tmpfs, as root), a process without root's file-permission
override, a TCP server that accepts and never answers, a port nothing listens on, a file-size limit.

Each fault is the real thing the kernel or the network gives a program; where this machine cannot produce it (no
root, no mount), the fixture using it skips with the reason.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

SETPRIV = shutil.which("setpriv")


def _mount_tmpfs(target: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


@contextlib.contextmanager
def tmpfs(size: str = "1m", *, read_only: bool = False) -> Iterator[Path]:
    """A fresh tmpfs of `size` (read-only after mounting when asked); unmounted and removed after."""
    target = Path(tempfile.mkdtemp(prefix="qaflow-tmpfs-"))
    try:
        _mount_tmpfs(target, size)
        try:
            if read_only:
                subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True, capture_output=True)
            yield target
        finally:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
    finally:
        shutil.rmtree(target, ignore_errors=True)


def fill(directory: Path, leave_bytes: int = 16 * 1024) -> None:
    """Fill the file system of `directory` until about `leave_bytes` are free (a full disk)."""
    with open(directory / ".ballast", "wb") as ballast:
        while shutil.disk_usage(directory).free > leave_bytes:
            ballast.write(b"\0" * min(1 << 20, max(4096, shutil.disk_usage(directory).free - leave_bytes)))
            ballast.flush()


def unprivileged(argv: list[str]) -> list[str]:
    """`argv` run without the file-permission override root has (so a mode-000 file is unreadable, as for anyone)."""
    if os.geteuid() != 0:
        return argv
    if SETPRIV is None:
        pytest.skip("running as root without setpriv: cannot drop the file-permission override")
    return [SETPRIV, "--bounding-set", "-dac_override,-dac_read_search", *argv]


def file_size_limit(max_bytes: int):  # noqa: ANN201 - a preexec_fn
    """A `preexec_fn`: files the child writes may not grow past `max_bytes` (EFBIG, not a SIGXFSZ kill)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


def closed_port() -> int:
    """A local port nothing listens on (bound, then released): connecting is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """`http://127.0.0.1:PORT` of a server that accepts every connection and never answers a byte."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        for conn in held:
            conn.close()
