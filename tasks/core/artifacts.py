"""Typed artifacts passed between pipeline steps: the data snapshot a run trains on, what training leaves, and where
compiled runs keep their Inductor caches (`CompileCacheStore`: a local folder in tasks.train.compile_cache, the
tracking store in tasks.tracking.compile_cache)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tasks.core.io import write_json_atomic


@dataclass(frozen=True)
class StoredCache:
    """A packed (tar.gz) Inductor cache directory, and where it came from (a run id or a path), for the log."""

    blob: bytes
    source: str


class CompileCacheStore(Protocol):
    """Packed compile caches by key digest. `fetch` returns None when nothing (valid) is stored: an entry whose
    SHA-256 differs from the one recorded with it is never returned (a cache is compiled code)."""

    def fetch(self, key: str) -> StoredCache | None: ...

    def store(self, key: str, blob: bytes, fields: dict[str, str]) -> None: ...


@dataclass
class DeviceInfo:
    backend: str
    device_name: str
    device_count: int
    world_size: int = 1

    def as_params(self) -> dict[str, Any]:
        return {f"device_{k}" if k != "backend" else k: v for k, v in asdict(self).items()}


@dataclass
class TrainResult:
    """What a training run leaves behind: the final model directory, metrics and where it resumed from."""

    model_dir: Path
    metrics: dict[str, float]
    device: DeviceInfo
    resumed_from: str | None = None
    log_history: list[dict[str, Any]] = field(default_factory=list)
    artifacts: dict[str, Path] = field(default_factory=dict)
    model: Any = field(default=None, repr=False, compare=False)  # the trained model in memory, when kept; not saved

    def to_json(self) -> dict[str, Any]:
        return {
            "model_dir": str(self.model_dir),
            "metrics": self.metrics,
            "device": asdict(self.device),
            "resumed_from": self.resumed_from,
            "log_history": self.log_history,
            "artifacts": {k: str(v) for k, v in self.artifacts.items()},
        }


def write_result(result: TrainResult, path: Path) -> None:
    write_json_atomic(result.to_json(), path, indent=2)


def read_result(path: Path) -> TrainResult:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return TrainResult(
        model_dir=Path(raw["model_dir"]),
        metrics=raw["metrics"],
        device=DeviceInfo(**raw["device"]),
        resumed_from=raw.get("resumed_from"),
        log_history=raw.get("log_history", []),
        artifacts={k: Path(v) for k, v in raw.get("artifacts", {}).items()},
    )


@dataclass(frozen=True)
class DataSnapshot:
    """One data version's stage outputs, copied out of the shared workspace for a run (`outputs/data/<id>`)."""

    version: str  # 12-hex id from dvc.lock (tasks.versioning.data_version)
    hashes: dict[str, str]
    dir: Path
    stages_ran: tuple[str, ...] = ()
    stages_pulled: tuple[str, ...] = ()  # outputs downloaded from the DVC remote instead of recomputed

    @property
    def train_json(self) -> Path:
        return self.dir / "train.json"

    @property
    def eval_json(self) -> Path:
        return self.dir / "eval.json"

    @property
    def train_features(self) -> Path:
        return self.dir / "train.npz"

    @property
    def data_report(self) -> Path:
        return self.dir / "data_report.json"

    @property
    def features_report(self) -> Path:
        return self.dir / "features_report.json"
