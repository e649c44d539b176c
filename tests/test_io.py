"""`tasks.core.io`: atomic writes leave either the old file or the complete new one, and no temp files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.core.io import OutputSet, atomic_path, recover_outputs, write_bytes_atomic, write_json_atomic


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


# ------------------------------------------------------------------------------------ output sets


def _tree(directory: Path) -> dict[str, str]:
    """Visible files (not hidden staging/journal entries) -> content."""
    return {
        str(p.relative_to(directory)): p.read_text(encoding="utf-8")
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(directory).parts)
    }


def _write_set(out: Path, tag: str, with_extra: bool) -> None:
    outputs = OutputSet(out, ("a.json", "b.json", "extra.json", "raw"))
    outputs.stage("a.json").write_text(f"a-{tag}", encoding="utf-8")
    write_bytes_atomic(f"b-{tag}".encode(), outputs.stage("b.json"))
    if with_extra:
        outputs.stage("extra.json").write_text(f"extra-{tag}", encoding="utf-8")
    outputs.stage("raw").mkdir()
    (outputs.stage("raw") / "part-0").write_text(f"raw-{tag}", encoding="utf-8")
    outputs.commit()


def test_output_set_swaps_members_together_and_drops_unwritten_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write_set(out, "old", with_extra=True)
    (out / "mine.txt").write_text("not a member", encoding="utf-8")
    assert _tree(out)["extra.json"] == "extra-old"
    _write_set(out, "new", with_extra=False)
    assert _tree(out) == {"a.json": "a-new", "b.json": "b-new", "raw/part-0": "raw-new", "mine.txt": "not a member"}
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json", "mine.txt", "raw"], "no staging left"


def test_output_set_rejects_non_members_and_abort_keeps_the_old_set(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _write_set(out, "old", with_extra=False)
    before = _tree(out)
    outputs = OutputSet(out, ("a.json",))
    with pytest.raises(ValueError, match="not a member"):
        outputs.stage("other.json")
    outputs.stage("a.json").write_text("half", encoding="utf-8")
    outputs.abort()
    assert _tree(out) == before and not list(out.glob(".*"))


_SET_WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_io import _write_set
_write_set(Path({out!r}), "new", with_extra=False)
"""


def test_a_kill_before_any_rename_leaves_the_old_or_the_new_set_never_a_mix(tmp_path: Path) -> None:
    """SIGKILL before each rename of a commit in turn; after recovery the set is wholly old or wholly new."""
    old = {"a.json": "a-old", "b.json": "b-old", "extra.json": "extra-old", "raw/part-0": "raw-old"}
    new = {"a.json": "a-new", "b.json": "b-new", "raw/part-0": "raw-new"}
    script = tmp_path / "writer.py"
    outcomes = []
    for kill_at in range(1, 30):
        out = tmp_path / f"out{kill_at}"
        _write_set(out, "old", with_extra=True)
        script.write_text(_SET_WRITER.format(tests=str(Path(__file__).parent), out=str(out)), encoding="utf-8")
        done = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "killpoint.py"), str(kill_at), "writer"],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        recover_outputs(out)
        state = _tree(out)
        assert state in (old, new), f"kill before rename {kill_at}: a mix {state}"
        assert not list(out.glob(".*")), f"kill before rename {kill_at}: staging or journal left after recovery"
        outcomes.append((done.returncode, state == new))
        if done.returncode == 0:
            break
    assert outcomes[-1] == (0, True), "the writer never ran to the end: raise the kill range"
    killed = [is_new for rc, is_new in outcomes if rc == -9]
    assert False in killed and True in killed, "kills landed both before and after the commit point"
