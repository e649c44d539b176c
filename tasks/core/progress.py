"""Progress of long loops (featurization, prediction, beam search, generation): a tqdm bar on a terminal, plain log
lines elsewhere (files, CI, Prefect), so logs stay readable and still say how far a job got.

`QAFLOW_PROGRESS` = `bar` | `log` | `off` overrides the choice (default: `bar` when stderr is a terminal).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from types import TracebackType
from typing import Any, Protocol

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

LOG_EVERY = 0.1  # log lines at every 10 % of the total
MODES = ("bar", "log", "off")


class Progress(Protocol):
    def update(self, n: int = 1) -> Any: ...
    def close(self) -> None: ...
    def __enter__(self) -> Progress: ...
    def __exit__(self, *exc: Any) -> Any: ...


class LogProgress:
    """Logs `desc: done/total unit (pct %, rate/s)` each time another `every` of the total is done, and at the end."""

    def __init__(self, total: int, desc: str, unit: str, level: int = logging.INFO, every: float = LOG_EVERY) -> None:
        self.total, self.desc, self.unit, self.level = int(total), desc, unit, level
        self.step = max(1, int(self.total * every))
        self.done = 0
        self._next = self.step
        self._t0 = time.perf_counter()
        self._closed = False

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.done >= self._next and self.done < self.total:
            self._line()
            self._next = (self.done // self.step + 1) * self.step

    def close(self) -> None:
        if not self._closed and self.total and self.done >= self.total:
            self._line()
        self._closed = True

    def _line(self) -> None:
        elapsed = time.perf_counter() - self._t0
        rate = self.done / elapsed if elapsed > 0 else 0.0
        pct = 100.0 * self.done / self.total if self.total else 100.0
        log.log(self.level, "%s: %d/%d %s (%.0f %%, %.1f/s)", self.desc, self.done, self.total, self.unit, pct, rate)

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def progress_mode() -> str:
    """`QAFLOW_PROGRESS` when set to a known mode, else `bar` on a terminal and `log` elsewhere."""
    mode = os.environ.get("QAFLOW_PROGRESS", "").strip().lower()
    if mode in MODES:
        return mode
    return "bar" if sys.stderr.isatty() else "log"


def progress(total: int, desc: str, unit: str = "it", *, inner: bool = False) -> Progress:
    """A progress counter over `total` units: a tqdm bar, or log lines. `inner` loops (the batches of one chunk)
    leave no bar behind and log at DEBUG, so an outer loop's lines are not drowned."""
    mode = progress_mode()
    if mode == "bar":
        return tqdm(total=total, desc=desc, unit=f" {unit}", leave=not inner, dynamic_ncols=True)
    if mode == "off":
        return tqdm(total=total, disable=True)
    return LogProgress(total, desc, unit, level=logging.DEBUG if inner else logging.INFO)
