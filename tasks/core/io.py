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


def file_digest(path: str | Path) -> str:
    """A content id for an evaluation file (short sha256), so scores name exactly what they were computed on."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]
