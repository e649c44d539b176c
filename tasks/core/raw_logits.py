"""The one raw-logits format: a directory of per-chunk `.npz` shards plus `raw_meta.json`, one writer, one reader.

`qaflow predict` saves the extractive model's start/end logits with the feature metadata n-best needs, so
post-processing can be re-run later with other settings and no model (`qaflow postprocess --raw DIR`).

The writer fills a sibling temp directory and swaps it into place only when every shard is written, so a killed
prediction never destroys the previous good raw logits and never leaves a half set behind. The reader refuses a
directory whose `raw_meta.json` does not match its shards.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.core.io import atomic_path, recover_outputs, remove_orphans, write_json_atomic

RAW_FORMAT = "qaflow-raw-logits/1"
META_FILE = "raw_meta.json"
SHARD_KEYS = ("example_ids", "example_index", "offsets", "cls_index", "start_logits", "end_logits")


@dataclass
class RawShard:
    """One chunk's logits [F, L] and the metadata of its F features over its examples (`example_ids`)."""

    example_ids: list[str]
    example_index: np.ndarray
    offsets: np.ndarray
    cls_index: np.ndarray
    start_logits: np.ndarray
    end_logits: np.ndarray


class RawLogitsWriter:
    """Writes shards beside `raw_dir`; `commit()` swaps the complete set in, `abort()` drops it.

    With `staged_in` (a member path of an `OutputSet`), the shards go there and `commit()` only finalises the
    directory: the output set swaps it in together with the predictions made from it.
    """

    def __init__(self, raw_dir: Path, *, staged_in: Path | None = None) -> None:
        self.raw_dir = Path(raw_dir)
        self._swap = staged_in is None
        if staged_in is None:
            self.raw_dir.parent.mkdir(parents=True, exist_ok=True)
            remove_orphans(self.raw_dir.parent, f".{self.raw_dir.name}.pid*")  # left by a killed run
            self._tmp = self.raw_dir.with_name(f".{self.raw_dir.name}.pid{os.getpid()}.tmp")
        else:
            self._tmp = Path(staged_in)
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(parents=True)
        self.shards = 0
        self._features = 0
        self._examples = 0

    def add(self, shard: RawShard) -> None:
        with atomic_path(self._tmp / f"part-{self.shards:05d}.npz") as tmp, open(tmp, "xb") as handle:
            np.savez(
                handle,
                example_ids=np.asarray(list(shard.example_ids), dtype=str),
                example_index=np.asarray(shard.example_index, dtype=np.int64),
                offsets=shard.offsets,
                cls_index=np.asarray(shard.cls_index, dtype=np.int64),
                start_logits=np.asarray(shard.start_logits, dtype=np.float32),
                end_logits=np.asarray(shard.end_logits, dtype=np.float32),
            )
        self.shards += 1
        self._features += len(shard.example_index)
        self._examples += len(shard.example_ids)

    def commit(self) -> Path:
        meta = {"format": RAW_FORMAT, "shards": self.shards, "features": self._features, "examples": self._examples}
        write_json_atomic(meta, self._tmp / META_FILE)
        if not self._swap:
            return self.raw_dir
        old = self.raw_dir.with_name(f".{self.raw_dir.name}.pid{os.getpid()}.old")
        if self.raw_dir.exists():
            self.raw_dir.rename(old)
        self._tmp.rename(self.raw_dir)
        shutil.rmtree(old, ignore_errors=True)
        return self.raw_dir

    def abort(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


def read_raw_meta(raw_dir: Path) -> dict:
    """The directory's `raw_meta.json`, checked against its shards; ValueError names what is wrong."""
    recover_outputs(Path(raw_dir).parent)  # finish a prediction set whose writer was killed mid-swap
    meta_path = Path(raw_dir) / META_FILE
    if not meta_path.exists():
        raise FileNotFoundError(f"{raw_dir}: not a raw-predictions directory (no {META_FILE})")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format") != RAW_FORMAT:
        raise ValueError(f"{meta_path}: format {meta.get('format')!r} is not {RAW_FORMAT!r}")
    found = len(list(Path(raw_dir).glob("part-*.npz")))
    if "shards" in meta and found != meta["shards"]:
        raise ValueError(f"{raw_dir}: {META_FILE} lists {meta['shards']} shards but {found} are present")
    return meta


def iter_raw_shards(raw_dir: Path) -> Iterator[RawShard]:
    """The shards of a directory written by `RawLogitsWriter`, in order."""
    read_raw_meta(raw_dir)
    for part in sorted(Path(raw_dir).glob("part-*.npz")):
        with np.load(part, allow_pickle=False) as z:
            missing = [k for k in SHARD_KEYS if k not in z.files]
            if missing:
                raise ValueError(f"{part}: not a raw-logits shard (missing {missing})")
            yield RawShard(
                example_ids=[str(i) for i in z["example_ids"].tolist()],
                **{k: z[k] for k in SHARD_KEYS[1:]},
            )
