"""What DVC prints while qaflow drives it: each line once, quiet SSH, the missing-cache warning as one line, the
stage events DVC logs (ran, restored, pulled), and stdout/stderr merged with their tail kept for failures."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

TAIL_LINES = 25


@contextmanager
def quiet_ssh() -> Iterator[None]:
    """asyncssh (DVC's SSH remote) logs every connection and file at INFO: WARNING and up, unless set by the user."""
    ssh_logger = logging.getLogger("asyncssh")
    if ssh_logger.level != logging.NOTSET:
        yield
        return
    ssh_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        ssh_logger.setLevel(logging.NOTSET)


DVC_LOGGERS = ("dvc", "dvc_objects", "dvc_data")  # `dvc.logger.setup` gives each DVC's console handlers
MISSING_CACHE = "Some of the cache files do not exist neither locally nor on remote"


@contextmanager
def dvc_console() -> Iterator[None]:
    """Each DVC line printed once: DVC's loggers print through their own console handlers, so for the block they do
    not also propagate to the root logger (whose handler `qaflow` set up would print every line a second time)."""
    loggers = [logging.getLogger(name) for name in DVC_LOGGERS]
    before = [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.propagate = False
    try:
        yield
    finally:
        for logger, propagate in zip(loggers, before, strict=True):
            logger.propagate = propagate


class _MissingCacheNote(logging.Filter):
    """DVC warns "Some of the cache files do not exist neither locally nor on remote" with every missing hash, once
    per fetch it tries (several per `repro --pull`). While reproducing, a missing output only means that its stage
    runs instead of being pulled (a fresh clone, or a remote that never got this version): said once, in one line."""

    def __init__(self, remote: str) -> None:
        super().__init__()
        self.remote, self.said = remote, False

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(MISSING_CACHE):
            return True
        if self.said:
            return False
        self.said = True
        listed = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        count = len([line for line in listed.splitlines() if line.strip()])
        record.msg = (
            f"DVC: {count or 'some'} cached output file(s) are neither in the local cache nor on {self.remote}: "
            "the stages that made them run again instead of pulling them (expected on a fresh clone, or when the "
            "remote never received this data version)"
        )
        record.args = ()
        return True


@contextmanager
def missing_cache_noted(remote: str) -> Iterator[None]:
    """`_MissingCacheNote` on DVC's console handlers for the block."""
    note = _MissingCacheNote(remote)
    handlers = {h for name in DVC_LOGGERS for h in logging.getLogger(name).handlers}
    for handler in handlers:
        handler.addFilter(note)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(note)


class _StageEvents(logging.Handler):
    """Collects DVC's "Running stage" / "is cached" / "Pulling data" log records to tell what each stage did."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.running: list[str] = []
        self.restored: list[str] = []
        self.pulling: list[str] = []
        self.not_pulled: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg, args = str(record.msg), record.args
        if not isinstance(args, tuple) or not args:
            return
        name = str(getattr(args[0], "addressing", args[0]))  # the pull messages carry the Stage itself
        if msg.startswith("Running stage"):
            self.running.append(name)
        elif "is cached - skipping run" in msg:
            self.restored.append(name)
        elif msg.startswith("Pulling data for"):
            self.pulling.append(name)
        elif msg.startswith("Unable to pull data for"):
            self.not_pulled.append(name)


@contextmanager
def dvc_events() -> Iterator[_StageEvents]:
    dvc_logger = logging.getLogger("dvc")
    handler, level = _StageEvents(), dvc_logger.level
    dvc_logger.addHandler(handler)
    if dvc_logger.getEffectiveLevel() > logging.INFO:
        dvc_logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        dvc_logger.removeHandler(handler)
        dvc_logger.setLevel(level)


class _Tail:
    """The last bytes written to a set of file descriptors (thread-safe ring of chunks)."""

    def __init__(self, limit: int = 64 * 1024) -> None:
        self.chunks: deque[bytes] = deque()
        self.size, self.limit, self.lock = 0, limit, threading.Lock()

    def add(self, chunk: bytes) -> None:
        with self.lock:
            self.chunks.append(chunk)
            self.size += len(chunk)
            while self.size > self.limit and len(self.chunks) > 1:
                self.size -= len(self.chunks.popleft())

    def text(self, lines: int = TAIL_LINES) -> str:
        with self.lock:
            data = b"".join(self.chunks)
        return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _pump(read_fd: int, write_fd: int, tail: _Tail) -> None:
    while chunk := os.read(read_fd, 65536):
        tail.add(chunk)
        with suppress(OSError):
            os.write(write_fd, chunk)
    os.close(read_fd)


def _flush(stream: Any) -> None:
    with suppress(AttributeError, OSError, ValueError):
        stream.flush()


@contextmanager
def tee_output() -> Iterator[_Tail]:
    """Merge stdout and stderr (descriptors 1 and 2, so child processes too) into stderr, keeping their tail.

    One pipe keeps the order in which they were written (as a terminal shows it). Without usable descriptors
    (a detached daemon) nothing is captured and the tail stays empty.
    """
    tail = _Tail()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield tail
        return
    _flush(sys.stdout)
    _flush(sys.stderr)
    read_fd, write_fd = os.pipe()
    pump = threading.Thread(target=_pump, args=(read_fd, saved[1], tail), daemon=True)
    pump.start()
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield tail
    finally:
        _flush(sys.stdout)
        _flush(sys.stderr)
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)  # the pipe's last write end is gone: the pump sees EOF
        os.close(saved[0])
        pump.join(timeout=10)
        if not pump.is_alive():  # a child still holding the pipe keeps the pump (and its descriptor) alive
            os.close(saved[1])
