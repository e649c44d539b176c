"""`tasks.core.raw_logits`: shards are written beside the target and swapped in whole; the reader checks the set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tasks.core.raw_logits import (
    META_FILE,
    RAW_FORMAT,
    RawLogitsWriter,
    RawShard,
    iter_raw_shards,
    read_raw_meta,
)


def make_shard(seed: int, features: int = 3, length: int = 8, ids: tuple[str, ...] = ("q1", "q2")) -> RawShard:
    """A shard of `features` windows of `length` tokens over examples `ids`, with random float64 logits."""
    rng = np.random.default_rng(seed)
    return RawShard(
        example_ids=list(ids),
        example_index=np.arange(features) % len(ids),
        offsets=rng.integers(-1, 100, size=(features, length, 2), dtype=np.int64),
        cls_index=np.zeros(features, dtype=np.int32),
        start_logits=rng.normal(size=(features, length)),
        end_logits=rng.normal(size=(features, length)),
    )


def write_set(raw_dir: Path, shards: list[RawShard]) -> Path:
    writer = RawLogitsWriter(raw_dir)
    for shard in shards:
        writer.add(shard)
    return writer.commit()


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_round_trip_is_exact(tmp_path: Path) -> None:
    shards = [make_shard(0), make_shard(1, features=2, ids=("q3", "long-id-ünï"))]
    raw_dir = write_set(tmp_path / "raw", shards)
    assert raw_dir == tmp_path / "raw"
    assert sorted(p.name for p in raw_dir.iterdir()) == ["part-00000.npz", "part-00001.npz", META_FILE]
    back = list(iter_raw_shards(raw_dir))
    assert len(back) == 2
    for original, read in zip(shards, back, strict=True):
        assert read.example_ids == original.example_ids and all(isinstance(i, str) for i in read.example_ids)
        assert read.example_index.dtype == np.int64 and read.cls_index.dtype == np.int64
        np.testing.assert_array_equal(read.example_index, original.example_index)
        np.testing.assert_array_equal(read.cls_index, original.cls_index)
        np.testing.assert_array_equal(read.offsets, original.offsets)
        for name in ("start_logits", "end_logits"):
            logits = getattr(read, name)
            assert logits.dtype == np.float32
            np.testing.assert_array_equal(logits, getattr(original, name).astype(np.float32))


def test_meta_counts(tmp_path: Path) -> None:
    raw_dir = write_set(tmp_path / "raw", [make_shard(0, features=3), make_shard(1, features=5, ids=("a",))])
    meta = read_raw_meta(raw_dir)
    assert meta == {"format": RAW_FORMAT, "shards": 2, "features": 8, "examples": 3}


def test_nothing_visible_before_commit(tmp_path: Path) -> None:
    raw_dir = tmp_path / "raw"
    writer = RawLogitsWriter(raw_dir)
    writer.add(make_shard(0))
    assert not raw_dir.exists()
    assert [p.name.startswith(".raw.pid") for p in tmp_path.iterdir()] == [True]
    writer.commit()
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_commit_replaces_previous_set(tmp_path: Path) -> None:
    raw_dir = write_set(tmp_path / "raw", [make_shard(0), make_shard(1), make_shard(2)])
    writer = RawLogitsWriter(raw_dir)
    writer.add(make_shard(9, ids=("new",)))
    assert len(list(iter_raw_shards(raw_dir))) == 3  # the old set is intact until commit
    writer.commit()
    back = list(iter_raw_shards(raw_dir))
    assert len(back) == 1 and back[0].example_ids == ["new"]
    assert read_raw_meta(raw_dir)["shards"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]  # no old or temp directory left


def test_abort_keeps_previous_set_byte_identical(tmp_path: Path) -> None:
    raw_dir = write_set(tmp_path / "raw", [make_shard(0), make_shard(1)])
    before = snapshot(raw_dir)
    writer = RawLogitsWriter(raw_dir)
    writer.add(make_shard(5))
    writer.add(make_shard(6))
    writer.add(make_shard(7))
    writer.abort()
    assert snapshot(raw_dir) == before
    assert [p.name for p in tmp_path.iterdir()] == ["raw"]


def test_new_writer_discards_a_stale_temp_dir(tmp_path: Path) -> None:
    raw_dir = tmp_path / "raw"
    RawLogitsWriter(raw_dir).add(make_shard(0))  # a killed prediction: never committed nor aborted
    writer = RawLogitsWriter(raw_dir)  # same process id, same temp name
    writer.add(make_shard(1, ids=("only",)))
    writer.commit()
    assert [s.example_ids for s in iter_raw_shards(raw_dir)] == [["only"]]


def test_read_raw_meta_requires_meta_file(tmp_path: Path) -> None:
    (tmp_path / "part-00000.npz").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=META_FILE):
        read_raw_meta(tmp_path)
    with pytest.raises(FileNotFoundError, match=META_FILE):
        list(iter_raw_shards(tmp_path))


def test_read_raw_meta_rejects_wrong_format(tmp_path: Path) -> None:
    raw_dir = write_set(tmp_path / "raw", [make_shard(0)])
    meta = read_raw_meta(raw_dir)
    (raw_dir / META_FILE).write_text(json.dumps({**meta, "format": "other/1"}), encoding="utf-8")
    with pytest.raises(ValueError, match="format 'other/1' is not"):
        read_raw_meta(raw_dir)


def test_read_raw_meta_rejects_missing_shard(tmp_path: Path) -> None:
    raw_dir = write_set(tmp_path / "raw", [make_shard(0), make_shard(1), make_shard(2)])
    (raw_dir / "part-00001.npz").unlink()
    with pytest.raises(ValueError, match="lists 3 shards but 2 are present"):
        read_raw_meta(raw_dir)
    with pytest.raises(ValueError, match="lists 3 shards"):
        next(iter_raw_shards(raw_dir))


def test_reader_rejects_a_shard_missing_arrays(tmp_path: Path) -> None:
    raw_dir = write_set(tmp_path / "raw", [make_shard(0)])
    np.savez(raw_dir / "part-00000.npz", example_ids=np.asarray(["x"]))
    with pytest.raises(ValueError, match="missing"):
        list(iter_raw_shards(raw_dir))


def test_empty_commit_is_readable(tmp_path: Path) -> None:
    raw_dir = RawLogitsWriter(tmp_path / "raw").commit()
    assert read_raw_meta(raw_dir)["shards"] == 0
    assert list(iter_raw_shards(raw_dir)) == []
