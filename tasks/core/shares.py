"""Prediction shared by the ranks of a torchrun job: which batches each rank runs, and how its outputs travel.

A family plans the batches of a chunk's features (`ModelFamily.batches`, the same on every rank: it depends on the
features and the recipe only); rank r runs batches r, r + size, r + 2 * size, ... (longest first for the
extractive family, so the ranks get similar work), each exactly as one process batches it, so a window's outputs
do not change. Every rank then sends rank 0 its rows of the family's outputs (`take_rows`: the dataclass's
per-row arrays, strings as UTF-8 bytes), and rank 0 writes them into its own (`put_rows`) and post-processes the
chunk as one process does. The transport is a `Ranks` (`tasks.train.ddp.TorchRanks`: the process group's tensors,
so no filesystem is shared). Numpy only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

T = TypeVar("T")


class Ranks(Protocol):
    """The workers one prediction is shared by; rank 0 gathers."""

    rank: int
    size: int

    def gather(self, arrays: list[np.ndarray]) -> list[list[np.ndarray]] | None:
        """Rank 0: every rank's `arrays` (same count, dtypes and dimensions on every rank; lengths may differ),
        indexed by rank. The other ranks send theirs and get None."""
        ...

    def failed_rank(self, ok: bool) -> int | None:
        """Every rank says whether its step succeeded; all learn a rank that failed, or None."""
        ...


class SharedPredictionFailed(RuntimeError):
    """Another rank's step of a shared prediction failed (its own error is raised and logged there)."""


def together(ranks: Ranks | None, step: Callable[[], T]) -> T:
    """Run `step` on this rank; when it fails on any rank, every rank raises (the failed rank its own error), so
    no rank is left waiting for a peer that stopped."""
    if ranks is None:
        return step()
    try:
        value, error = step(), None
    except Exception as exc:  # noqa: BLE001 - the other ranks learn of it first, then it is raised
        value, error = None, exc
    failed = ranks.failed_rank(error is None)
    if error is not None:
        raise error
    if failed is not None:
        raise SharedPredictionFailed(f"shared prediction failed on rank {failed}")
    return value  # type: ignore[return-value]


@dataclass(frozen=True)
class Share:
    """One chunk's batch plan (row indices per batch) split over `size` ranks, round robin."""

    plan: Sequence[np.ndarray]
    size: int

    def batches(self, rank: int) -> list[np.ndarray]:
        return list(self.plan[rank :: self.size])

    def rows(self, rank: int) -> np.ndarray:
        mine = self.batches(rank)
        return np.concatenate(mine).astype(np.int64) if mine else np.zeros(0, np.int64)

    @property
    def n_rows(self) -> int:
        return sum(len(rows) for rows in self.plan)


def _row_fields(outputs: Any, n_rows: int) -> list[tuple[str, Any]]:
    """The per-row fields of a family's outputs (arrays with `n_rows` rows, lists of `n_rows` strings), in order;
    None and scalar fields (e.g. beam sizes) are the same on every rank and stay."""
    if not dataclasses.is_dataclass(outputs):
        raise TypeError(f"{type(outputs).__name__}: a shared forward needs outputs that are a dataclass")
    found = []
    for f in dataclasses.fields(outputs):
        value = getattr(outputs, f.name)
        if isinstance(value, np.ndarray | list):
            if len(value) != n_rows or (isinstance(value, list) and not all(isinstance(v, str) for v in value)):
                raise ValueError(f"{type(outputs).__name__}.{f.name}: not one array row or string per row")
            found.append((f.name, value))
    return found


def take_rows(outputs: Any, rows: np.ndarray, n_rows: int) -> list[np.ndarray]:
    """The `rows` of every per-row field as arrays (a string list as UTF-8 bytes and their lengths)."""
    parts: list[np.ndarray] = []
    for _, value in _row_fields(outputs, n_rows):
        if isinstance(value, list):
            encoded = [value[i].encode("utf-8") for i in rows]
            parts.append(np.array([len(b) for b in encoded], dtype=np.int64))
            parts.append(np.frombuffer(b"".join(encoded), dtype=np.uint8).copy())
        else:
            parts.append(np.ascontiguousarray(value[rows]))
    return parts


def put_rows(outputs: Any, rows: np.ndarray, parts: list[np.ndarray], n_rows: int) -> None:
    """Write another rank's `take_rows(outputs, rows, n_rows)` into `outputs`."""
    queue = list(parts)
    for _, value in _row_fields(outputs, n_rows):
        if isinstance(value, list):
            lengths, data = queue.pop(0), queue.pop(0).tobytes()
            ends = np.cumsum(lengths)
            for i, end, length in zip(rows, ends, lengths, strict=True):
                value[int(i)] = data[int(end - length) : int(end)].decode("utf-8")
        else:
            value[rows] = queue.pop(0)
    if queue:
        raise ValueError(f"{len(queue)} arrays left over: the ranks' outputs differ in their fields")
