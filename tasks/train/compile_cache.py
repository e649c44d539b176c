"""Inductor's compile and autotune caches as versioned artifacts: a retrain with the same key starts warm.

A compiled run works in a private Inductor cache directory (`TORCHINDUCTOR_CACHE_DIR`, with Triton's beside it),
so what it compiles and autotunes is exactly what ends up there. Before training, the directory is filled from
a store entry under the run's key (warm) or left empty (cold); after a successful run it is packed (tar.gz) and
stored under that key. Stores (`tasks.core.artifacts.CompileCacheStore`): the tracking store
(`tasks.tracking.compile_cache`, for the flows) or a local folder (`LocalCompileCacheStore`, for `qaflow train`).

The key is a digest of what decides the compiled code: torch / transformers / Python versions, the device name,
the model config (architecture only), compile mode and dynamic shapes, precision, and the batch shapes. Inductor
keys its own entries by content too, so a stale entry can only be unused, never wrong.

Torch's `save_cache_artifacts` / `load_cache_artifacts` (the "mega-cache") was measured first: on the CPU it
does not carry the compiled C++ kernels, and a warm first step still took 61 % of a cold one; the directory
takes 10 %. The directory it is.

A cache is compiled code. It is only loaded from qaflow's own stores, and only when its SHA-256 matches the one
recorded when it was stored (a changed artifact is refused and the run starts cold); `train.compile_cache false`
turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import platform
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers

from tasks.core.artifacts import CompileCacheStore, StoredCache
from tasks.core.config import TrainConfig
from tasks.core.io import write_bytes_atomic

log = logging.getLogger(__name__)

VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "architectures")
CACHE_ENV = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


@dataclass(frozen=True)
class CompileCacheKey:
    """What decides the compiled code (`fields`) and its short digest, the key entries are stored under."""

    fields: dict[str, str]

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.fields, sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class CacheUse:
    """What a run did with the cache: `warm` (restored) or cold, and the key."""

    key: CompileCacheKey
    warm: bool = False
    stored: bool = False
    restored_bytes: int = 0
    notes: list[str] = field(default_factory=list)


def device_name(backend: str) -> str:
    if backend == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return platform.processor() or platform.machine()


def model_config_digest(config: Any) -> str:
    """The architecture of `config` (a transformers config), without names and versions that do not change it."""
    values = {k: v for k, v in config.to_dict().items() if k not in VOLATILE_CONFIG_KEYS}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def compile_cache_key(
    t: TrainConfig, backend: str, model_config: Any, *, width: int, packed_rows: tuple[int, ...], packing: bool
) -> CompileCacheKey:
    """The key of a compiled training run (see the module docstring)."""
    precision = "bf16" if t.bf16 else "fp16" if t.fp16 and backend == "cuda" else "fp32"
    fields = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "backend": backend,
        "device": device_name(backend),
        "model_config": model_config_digest(model_config),
        "compile_mode": t.torch_compile_mode or "default",
        "dynamic": str(bool(t.torch_compile_dynamic)),
        "precision": precision,
        "batch": str(t.per_device_train_batch_size),
        "width": str(width),
        "packing": str(packing),
        "packed_rows": ",".join(map(str, packed_rows)),
    }
    return CompileCacheKey(fields)


def active_store(t: TrainConfig, store: CompileCacheStore | None) -> CompileCacheStore | None:
    """The store a compiled run reads and writes: none with `train.compile_cache false` (every run cold, nothing
    kept)."""
    return store if t.compile_cache else None


def pack_directory(path: Path) -> bytes:
    """`path`'s files as a tar.gz (lock files left out), names relative to `path`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for item in sorted(path.rglob("*")):
            if item.is_file() and not item.is_symlink() and "locks" not in item.relative_to(path).parts:
                tar.add(item, arcname=str(item.relative_to(path)), recursive=False)
    return buffer.getvalue()


def unpack_directory(blob: bytes, path: Path) -> None:
    """Extract a `pack_directory` archive into `path`; members that would land outside it, links and devices
    are refused (tarfile's `data` filter)."""
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        tar.extractall(path, filter="data")


def sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


class LocalCompileCacheStore:
    """Packed caches as `<root>/<key>.tar.gz`, each with `<key>.json` (its fields and SHA-256)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def fetch(self, key: str) -> StoredCache | None:
        archive, meta = self.root / f"{key}.tar.gz", self.root / f"{key}.json"
        if not (archive.is_file() and meta.is_file()):
            return None
        blob = archive.read_bytes()
        expected = json.loads(meta.read_text()).get("sha256")
        if sha256(blob) != expected:
            log.warning("compile cache: %s does not match its recorded SHA-256; ignored (starting cold)", archive)
            return None
        return StoredCache(blob, str(archive))

    def store(self, key: str, blob: bytes, fields: dict[str, str]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(blob, self.root / f"{key}.tar.gz")
        meta = {"sha256": sha256(blob), "fields": fields}
        write_bytes_atomic(json.dumps(meta, indent=1).encode(), self.root / f"{key}.json")


@contextlib.contextmanager
def inductor_cache(store: CompileCacheStore | None, key: CompileCacheKey, *, save: bool = True) -> Iterator[CacheUse]:
    """Compile in a private cache directory filled from `store` under `key` (warm) or empty (cold); after a
    successful block, store it under `key` (`save`: only rank 0 of a distributed run stores)."""
    use = CacheUse(key)
    directory = Path(tempfile.mkdtemp(prefix="qaflow-inductor-"))
    stored = store.fetch(key.digest) if store is not None else None
    if stored is not None:
        unpack_directory(stored.blob, directory)
        use.warm, use.restored_bytes = True, len(stored.blob)
        log.info("compile cache: warm (key %s, %.1f MB from %s)", key.digest, len(stored.blob) / 2**20, stored.source)
    else:
        log.info("compile cache: cold (key %s: nothing stored yet)", key.digest)
    previous = {name: os.environ.get(name) for name in CACHE_ENV}
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(directory)
    os.environ["TRITON_CACHE_DIR"] = str(directory / "triton")
    try:
        yield use
        if store is not None and save:
            blob = pack_directory(directory)
            if not use.warm or len(blob) != use.restored_bytes:  # new entries (a new shape, a recompile)
                store.store(key.digest, blob, key.fields)
                use.stored = True
                log.info("compile cache: stored %.1f MB under key %s", len(blob) / 2**20, key.digest)
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(directory, ignore_errors=True)
