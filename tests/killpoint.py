"""Run a Python module as `python -m`, SIGKILLing itself just before its K-th file rename (os.replace/os.rename).

Usage: `python tests/killpoint.py K module [args...]`. Renames are the commit points of every atomic write in
qaflow, so killing before each one in turn walks a command through every state a crash can leave behind.
Exits 0 untouched when the command makes fewer than K renames (the caller then knows it has walked them all).
"""

from __future__ import annotations

import os
import runpy
import signal
import sys


def _arm(kill_at: int) -> None:
    calls = {"n": 0}

    def wrap(real):  # noqa: ANN001, ANN202 - a thin shim over os.replace / os.rename
        def renamed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            calls["n"] += 1
            if calls["n"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        return renamed

    os.replace = wrap(os.replace)
    os.rename = wrap(os.rename)


if __name__ == "__main__":
    _arm(int(sys.argv[1]))
    module = sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as done:
        sys.exit(done.code)
