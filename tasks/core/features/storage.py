"""Features on disk: one `.npz` per split, written atomically (`save_features`), read back with `load_features`
(format 2: compact dtypes; format-1 int64 files still load)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tasks.core.features.settings import ARRAY_FIELDS, Features
from tasks.core.io import atomic_path

_FORMAT_VERSION = 2  # 2: compact dtypes (below), training features without offsets; 1: int64 arrays (still read)
_READABLE_VERSIONS = (1, 2)
_REQUIRED_FIELDS = ("input_ids", "attention_mask", "example_index", "cls_index")


def save_features(features: Features, path: str | os.PathLike[str], *, compress: bool = False) -> Path:
    """Write all arrays (in their compact dtypes) to one `.npz` atomically (temp file beside `path`, then
    rename); returns the path."""
    arrays = {name: getattr(features, name) for name in ARRAY_FIELDS if getattr(features, name) is not None}
    arrays["format_version"] = np.array(_FORMAT_VERSION)
    saver = np.savez_compressed if compress else np.savez
    with atomic_path(path) as tmp, open(tmp, "xb") as handle:
        saver(handle, **arrays)
    return Path(path)


def load_features(path: str | os.PathLike[str]) -> Features:
    """Read features written by `save_features` (absent optional arrays come back as None); format-1 files
    (int64 arrays) load as they were stored."""
    with np.load(path, allow_pickle=False) as data:
        names = set(data.files)
        missing = [name for name in _REQUIRED_FIELDS if name not in names]
        if "format_version" not in names or missing:
            raise ValueError(f"{path}: not a qaflow features file (missing {missing or ['format_version']})")
        version = int(data["format_version"])
        if version not in _READABLE_VERSIONS:
            raise ValueError(f"{path}: features format {version} is not supported (expected {_FORMAT_VERSION})")
        return Features(**{name: (data[name] if name in names else None) for name in ARRAY_FIELDS})
