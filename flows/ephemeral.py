"""Ctrl-C and Prefect's ephemeral API server.

Without a `PREFECT_API_URL`, Prefect starts a temporary API server as a child process, in our process group. Ctrl-C
on a terminal signals the whole group: the server shut down at once, and the interrupted flow run then spent minutes
retrying to report its crash to it before failing with a connection traceback. `shield_ephemeral_server` starts that
child with SIGINT blocked (a signal mask survives fork and exec; a handler the child installs does not unblock it):
Ctrl-C reaches only qaflow, the crash is reported, and Prefect stops the server at exit (SIGTERM) as before. A kill of
the whole group still takes the server with it.
"""

from __future__ import annotations

import functools
import signal
from typing import Any


def shield_ephemeral_server() -> None:
    """Make Prefect's ephemeral server deaf to Ctrl-C (idempotent; a no-op where signal masks do not exist)."""
    if not hasattr(signal, "pthread_sigmask"):
        return
    from prefect.server.api.server import SubprocessASGIServer

    start = SubprocessASGIServer._run_uvicorn_command
    if getattr(start, "shielded", False):
        return

    @functools.wraps(start)
    def start_without_sigint(self: Any) -> Any:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            return start(self)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    start_without_sigint.shielded = True  # type: ignore[attr-defined]
    SubprocessASGIServer._run_uvicorn_command = start_without_sigint  # type: ignore[method-assign]
