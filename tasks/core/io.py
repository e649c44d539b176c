"""Atomic file writes: write beside the target, fsync, then `os.replace` into place.

A reader never sees a half-written file, and a crash leaves either the old file or the new one.
Imports nothing else of qaflow.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_OWNER = re.compile(r"\.pid(\d+)[.-]")


def _temp_sibling(target: Path) -> Path:
    """A fresh hidden name in the target's directory (same filesystem, so the rename is atomic), naming its owner."""
    return target.with_name(f".{target.name}.pid{os.getpid()}.{secrets.token_hex(6)}.tmp")


def owner_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(directory: Path, pattern: str) -> int:
    """Delete temp files/directories matching `pattern` whose owning process (`.pid<N>.` in the name) is dead.

    A process killed mid-write leaves its temp sibling behind; the next writer of the same target sweeps it.
    """
    removed = 0
    for path in Path(directory).glob(pattern):
        owner = _OWNER.search(path.name)
        if owner and not owner_alive(int(owner.group(1))):
            _remove(path)
            removed += 1
    return removed


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is fsynced and renamed to `path`.

    The caller creates the file at the yielded path (it does not exist yet, so it gets normal permissions).
    On any exception the temporary file is removed and the exception propagates; `path` is left untouched.
    Parent directories are created as needed.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(target.parent, f".{glob.escape(target.name)}.pid*.tmp")
    tmp = _temp_sibling(target)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{target}: nothing was written to the temporary path {tmp}")
        _fsync(tmp)
        os.replace(tmp, target)
    except OSError as exc:
        _remove(tmp)
        if exc.errno is not None and exc.filename in (None, str(tmp)):  # name the file being written, not its temp
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(target)) from exc
        raise
    except BaseException:
        _remove(tmp)
        raise
    with contextlib.suppress(OSError):  # durability of the rename itself; not possible everywhere
        _fsync(target.parent)


def write_bytes_atomic(data: bytes, path: str | os.PathLike[str]) -> Path:
    """Atomically replace `path` with `data`; returns the target path."""
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
    return Path(path)


def write_json_atomic(obj: Any, path: str | os.PathLike[str], *, indent: int | None = None) -> Path:
    """Atomically write `obj` as UTF-8 JSON (non-ASCII kept as is, trailing newline); returns the path."""
    text = json.dumps(obj, ensure_ascii=False, indent=indent) + "\n"
    return write_bytes_atomic(text.encode("utf-8"), path)


# ------------------------------------------------------------------------------------ output paths


class OutputPathError(ValueError):
    """An output path that cannot be written: named with the flag or parameter it came from."""


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def _check_writable_dir(directory: Path, shown: str) -> None:
    if not directory.is_dir():
        raise OutputPathError(f"{shown}: {directory} is not a directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        why = "on a read-only file system" if os.statvfs(directory).f_flag & os.ST_RDONLY else "not writable"
        raise OutputPathError(f"{shown}: {directory} is {why}")


def check_output_dir(path: str | os.PathLike[str], name: str) -> None:
    """`path` can be an output directory: it is one (or can be created) and is writable; else one OutputPathError
    line naming `name` (the flag or parameter). Cheap: run before any model work."""
    target = Path(path)
    shown = f"{name} {target}"
    if target.exists() and not target.is_dir():
        raise OutputPathError(f"{shown}: exists and is not a directory")
    _check_writable_dir(_nearest_existing(target), shown)


def check_output_file(path: str | os.PathLike[str], name: str) -> None:
    """`path` can be an output file: not a directory, and its directory is (or can be created) writable."""
    target = Path(path)
    shown = f"{name} {target}"
    if target.is_dir():
        raise OutputPathError(f"{shown}: is a directory (a file path is expected)")
    _check_writable_dir(_nearest_existing(target.parent), shown)


# ------------------------------------------------------------------------------------ output sets

_SET_PREFIX = ".outputs"
_MANIFEST = ".manifest.json"


class OutputSet:
    """Files and directories of one output directory that are replaced together, never partly.

    Members are written into a staging directory beside them (`stage(name)`). `commit()` records the set in a
    journal (the staging directory renamed to `*.commit`: one atomic step), then moves each member into place and
    removes the members of the set this run did not write (a v1 run leaves no stale `null_odds.json`). A process
    killed before the journal exists leaves the previous outputs; one killed after it is rolled forward by
    `recover_outputs`, which every writer and reader of the directory calls first. So a reader sees the previous
    set or the new one, never a mix.
    """

    def __init__(self, out_dir: str | os.PathLike[str], members: tuple[str, ...]) -> None:
        self.out_dir = Path(out_dir)
        self.members = members
        self.out_dir.mkdir(parents=True, exist_ok=True)
        recover_outputs(self.out_dir)
        self._stage = self.out_dir / f"{_SET_PREFIX}.pid{os.getpid()}.{secrets.token_hex(6)}.tmp"
        self._stage.mkdir()

    def stage(self, name: str) -> Path:
        """Where to write member `name` (it does not exist yet)."""
        if name not in self.members:
            raise ValueError(f"{name!r} is not a member of this output set {self.members}")
        return self._stage / name

    def final(self, name: str) -> Path:
        return self.out_dir / name

    def commit(self) -> dict[str, Path]:
        """Swap the staged members in (and drop unwritten members); returns name -> final path of those written."""
        written = [name for name in self.members if (self._stage / name).exists()]
        for name in written:
            if (self._stage / name).is_file():
                _fsync(self._stage / name)
        manifest = {"members": list(self.members), "written": written}
        (self._stage / _MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
        _fsync(self._stage / _MANIFEST)
        journal = self._stage.with_suffix(".commit")
        os.rename(self._stage, journal)
        with contextlib.suppress(OSError):
            _fsync(self.out_dir)
        _apply_journal(journal)
        return {name: self.out_dir / name for name in written}

    def abort(self) -> None:
        _remove(self._stage)


def _apply_journal(journal: Path) -> None:
    """Move a committed set's members into place (idempotent: a re-run after a kill finishes the job)."""
    out_dir = journal.parent
    manifest = json.loads((journal / _MANIFEST).read_text(encoding="utf-8"))
    retired = journal / ".retired"
    retired.mkdir(exist_ok=True)
    for name in manifest["members"]:
        staged, target = journal / name, out_dir / name
        if name in manifest["written"] and not staged.exists():
            continue  # already moved in
        if target.exists() or target.is_symlink():
            if (retired / name).exists():
                _remove(target)
            else:
                os.replace(target, retired / name)
        if name in manifest["written"]:
            os.replace(staged, target)
    with contextlib.suppress(OSError):
        _fsync(out_dir)
    _remove(journal)


def recover_outputs(out_dir: str | os.PathLike[str]) -> int:
    """Finish output sets whose writer died after committing; drop those it died staging. Returns how many."""
    directory = Path(out_dir)
    if not directory.is_dir():
        return 0
    done = 0
    for journal in sorted(directory.glob(f"{_SET_PREFIX}.pid*.commit")):
        owner = _OWNER.search(journal.name)
        if owner and not owner_alive(int(owner.group(1))) and (journal / _MANIFEST).exists():
            _apply_journal(journal)
            done += 1
    return done + remove_orphans(directory, f"{_SET_PREFIX}.pid*.tmp")


def file_digest(path: str | Path) -> str:
    """A content id for an evaluation file (short sha256), so scores name exactly what they were computed on."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]
