"""Inductor's caches as versioned artifacts (tasks/train/compile_cache.py): a second compiled run with the same key
starts warm (restored cache, measurably shorter first step, "warm" in the log); a changed key starts cold."""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import pytest
from transformers import BertConfig

from tasks.core.artifacts import read_result
from tasks.core.config import QAFlowConfig
from tasks.core.layout import TrainPaths, compile_cache_dir
from tasks.train.compile_cache import (
    LocalCompileCacheStore,
    active_store,
    compile_cache_key,
    inductor_cache,
    pack_directory,
    unpack_directory,
)
from tests.test_train import run_env, train_argv


def key_for(**changes: object):  # noqa: ANN201
    cfg = QAFlowConfig()
    model = {"hidden_size": 32, "num_hidden_layers": 1}
    for name, value in changes.items():
        if name in model:
            model[name] = value
        else:
            setattr(cfg.train, name, value)
    config = BertConfig(**model, num_attention_heads=1, intermediate_size=32)
    return compile_cache_key(cfg.train, "cpu", config, width=128, packed_rows=(), packing=False)


def test_the_key_follows_what_changes_the_compiled_code_only() -> None:
    base = key_for().digest
    for change in ({"per_device_train_batch_size": 7}, {"torch_compile_mode": "max-autotune"}, {"bf16": True},
                   {"torch_compile_dynamic": True}, {"num_hidden_layers": 2}):  # fmt: skip
        assert key_for(**change).digest != base, change
    for same in ({"learning_rate": 1e-3}, {"output_dir": "elsewhere"}, {"seed": 7}, {"num_train_epochs": 9.0}):
        assert key_for(**same).digest == base, same


def test_a_stored_cache_round_trips_and_a_changed_one_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "cache"
    (source / "fxgraph" / "ab").mkdir(parents=True)
    (source / "fxgraph" / "ab" / "entry").write_bytes(b"compiled")
    (source / "locks").mkdir()
    (source / "locks" / "x.lock").write_text("")
    store = LocalCompileCacheStore(tmp_path / "store")
    store.store("k1", pack_directory(source), {"torch": "x"})
    restored = tmp_path / "restored"
    unpack_directory(store.fetch("k1").blob, restored)
    assert (restored / "fxgraph" / "ab" / "entry").read_bytes() == b"compiled"
    assert not (restored / "locks").exists()  # lock files are not part of a cache
    assert store.fetch("k2") is None
    archive = tmp_path / "store" / "k1.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-8] + b"tampered")
    assert store.fetch("k1") is None  # its SHA-256 no longer matches: never loaded


def test_an_archive_member_outside_the_cache_is_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"x"
        info = tarfile.TarInfo("../escaped")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(tarfile.TarError):
        unpack_directory(buffer.getvalue(), tmp_path / "cache")
    assert not (tmp_path / "escaped").exists()


def test_compile_cache_false_neither_reads_nor_writes_a_store(tmp_path: Path) -> None:
    store = LocalCompileCacheStore(tmp_path / "store")
    cfg = QAFlowConfig()
    assert active_store(cfg.train, store) is store
    cfg.train.compile_cache = False
    assert active_store(cfg.train, store) is None


def test_a_changed_key_starts_cold(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = LocalCompileCacheStore(tmp_path / "store")
    with inductor_cache(store, key_for()) as first:
        pass
    assert not first.warm and first.stored
    with caplog.at_level("INFO"), inductor_cache(store, key_for()) as again:
        pass
    assert again.warm and "compile cache: warm" in caplog.text
    caplog.clear()
    with caplog.at_level("INFO"), inductor_cache(store, key_for(per_device_train_batch_size=3)) as changed:
        pass
    assert not changed.warm and "compile cache: cold" in caplog.text


@pytest.mark.slow
def test_a_second_compiled_run_with_the_same_key_starts_warm(tmp_path: Path) -> None:
    from tests.conftest import build_tiny_bert

    model = build_tiny_bert(tmp_path / "model")
    runs = {}
    for name in ("cold", "warm"):
        out = tmp_path / name
        argv = train_argv(model, out, "--max_steps", "3", "--torch_compile", "true", "--save_strategy", "no")
        done = subprocess.run(argv, env=run_env(), capture_output=True, text=True, timeout=900, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        runs[name] = (read_result(TrainPaths(out).result_file).metrics, done.stderr)
    (cold, cold_log), (warm, warm_log) = runs["cold"], runs["warm"]
    assert "compile cache: cold" in cold_log and "compile cache: warm" in warm_log
    assert cold["compile_cache_warm"] == 0.0 and warm["compile_cache_warm"] == 1.0
    assert warm["first_step_seconds"] < 0.5 * cold["first_step_seconds"]
    assert len(list(compile_cache_dir(tmp_path).glob("*.tar.gz"))) == 1  # one key, stored once


def test_the_tracking_store_keeps_caches_by_key_and_refuses_a_changed_archive(tmp_path: Path) -> None:
    from tasks.tracking.compile_cache import TrackedCompileCacheStore
    from tasks.tracking.tracker import Tracker

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "qaflow", "qaflow-qa", tmp_path / "artifacts")
    store = TrackedCompileCacheStore(tracker)
    assert store.fetch("k1") is None
    store.store("k1", b"packed cache", {"torch": "2.13", "device": "cpu"})
    fetched = store.fetch("k1")
    assert fetched is not None and fetched.blob == b"packed cache" and fetched.source.startswith("run ")
    assert store.fetch("k2") is None
    cache_runs = tracker.client.search_runs([store.tracker.experiment_id])
    assert [r.data.tags["qaflow.compile_cache.field.device"] for r in cache_runs] == ["cpu"]
    assert tracker.search_runs() == []  # training runs' experiment untouched
    archive = next((tmp_path / "artifacts").rglob("k1.tar.gz"))
    archive.write_bytes(b"something else")
    assert store.fetch("k1") is None  # the recorded SHA-256 no longer matches: never handed out
