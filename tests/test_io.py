"""`tasks.core.io`: atomic writes leave either the old file or the complete new one, and no temp files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.io import atomic_path, write_bytes_atomic, write_json_atomic


def test_atomic_path_yields_a_hidden_sibling_and_renames_it(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".out.txt.") and tmp.name.endswith(".tmp")
        assert not tmp.exists()
        tmp.write_text("new", encoding="utf-8")
        assert not target.exists()  # nothing visible before the block ends
    assert target.read_text(encoding="utf-8") == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_path_creates_parent_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "c.bin"
    write_bytes_atomic(b"\x00\x01", target)
    assert target.read_bytes() == b"\x00\x01"


def test_exception_leaves_previous_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "data.json"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("half-writ", encoding="utf-8")
        raise RuntimeError("boom")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_keyboard_interrupt_also_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as tmp:
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_nothing_written_is_an_error(tmp_path: Path) -> None:
    target = tmp_path / "x.txt"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match="nothing was written"), atomic_path(target):
        pass
    assert target.read_text(encoding="utf-8") == "old"


def test_a_temp_directory_is_removed_on_failure(tmp_path: Path) -> None:
    with pytest.raises(ValueError), atomic_path(tmp_path / "dir") as tmp:
        tmp.mkdir()
        (tmp / "f").write_text("x", encoding="utf-8")
        raise ValueError
    assert list(tmp_path.iterdir()) == []


def test_write_bytes_atomic_replaces_and_returns_path(tmp_path: Path) -> None:
    target = tmp_path / "blob"
    target.write_bytes(b"a much longer old content")
    assert write_bytes_atomic(b"short", target) == target
    assert target.read_bytes() == b"short"  # replaced, not overwritten in place
    assert write_bytes_atomic(b"", str(target)) == target
    assert target.read_bytes() == b""
    assert [p.name for p in tmp_path.iterdir()] == ["blob"]


def test_write_bytes_atomic_replaces_a_hard_linked_file_without_touching_the_other_link(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    other = tmp_path / "link"
    other.hardlink_to(target)
    write_bytes_atomic(b"new", target)
    assert target.read_bytes() == b"new"
    assert other.read_bytes() == b"old"  # a new inode was renamed in; the old one was never written to


def test_write_json_atomic_compact_unicode_and_newline(tmp_path: Path) -> None:
    obj = {"answer": "Zürich", "n": [1, 2], "none": None}
    path = write_json_atomic(obj, tmp_path / "a.json")
    text = path.read_text(encoding="utf-8")
    assert text == '{"answer": "Zürich", "n": [1, 2], "none": null}\n'
    assert json.loads(text) == obj


def test_write_json_atomic_indent(tmp_path: Path) -> None:
    path = write_json_atomic({"a": {"b": 1}}, tmp_path / "a.json", indent=2)
    assert path.read_text(encoding="utf-8") == '{\n  "a": {\n    "b": 1\n  }\n}\n'


def test_write_json_atomic_unserialisable_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "a.json"
    write_json_atomic({"ok": 1}, target)
    with pytest.raises(TypeError):
        write_json_atomic({"bad": object()}, target)
    assert json.loads(target.read_text(encoding="utf-8")) == {"ok": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_a_dead_writers_temp_file_is_swept_by_the_next_write(tmp_path: Path) -> None:
    """A process killed mid-write leaves `.<name>.pid<N>.<hex>.tmp`; the next write of that target removes it,
    while a live process's temp file (this one's) is left alone."""
    target = tmp_path / "out.json"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".out.json.pid{int(dead.stdout)}.abc.tmp"
    orphan.write_text("half")
    alive = tmp_path / f".out.json.pid{os.getpid()}.def.tmp"
    alive.write_text("in progress")
    write_json_atomic({"ok": True}, target)
    assert not orphan.exists() and alive.exists() and json.loads(target.read_text()) == {"ok": True}
