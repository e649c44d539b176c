"""Hugging Face `datasets`: a `save_to_disk` directory or a hub dataset (from the cache when the hub is
unreachable), one split picked, its rows validated like flat records."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.core.data.examples import SQUAD_COLUMNS, ColumnMap, DataError, Labels, Policy, QADataset
from tasks.core.data.records import Collector, check_policy, load_records
from tasks.core.hub_access import hub_reachable


def load_from_disk(path: Path) -> Any:
    if not ((path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()):
        raise DataError(f"{path}: is a directory but not a Hugging Face datasets save_to_disk directory")
    import datasets  # slow import; only needed here

    try:
        return datasets.load_from_disk(str(path))
    except Exception as e:  # any failure becomes one clear line
        raise DataError(f"{path}: cannot load the datasets directory ({type(e).__name__}: {e})") from None


def _pick_split(obj: Any, split: str | None, source: str) -> tuple[Any, str]:
    """A single `datasets.Dataset` out of a Dataset or DatasetDict, and the source label."""
    if not isinstance(obj, dict):  # a Dataset; a DatasetDict is a dict of splits
        return obj, source if split is None else f"{source}[{split}]"
    splits = list(obj.keys())
    if split is None and len(splits) == 1:
        split = splits[0]
    if split not in splits:
        wanted = "no split given" if split is None else f"split {split!r} not found"
        raise DataError(f"{source}: {wanted}; available splits: {', '.join(splits)}")
    return obj[split], f"{source}[{split}]"


def load_hf_object(
    obj: Any,
    source: str,
    split: str | None,
    cols: ColumnMap,
    policy: Policy,
    max_samples: int | None,
    labels: Labels = "required",
) -> QADataset:
    ds, source = _pick_split(obj, split, source)
    needed = (cols.id, cols.context, cols.question) + ((cols.answers,) if labels == "required" else ())
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise DataError(
            f"{source}: column(s) {', '.join(map(repr, missing))} not found "
            f"(columns: {', '.join(ds.column_names)}); map them with ColumnMap"
        )
    collector = Collector(source, policy, labels_optional=labels == "optional")
    load_records(((None, row) for row in ds.to_list()), cols, collector)
    return collector.finish(source, None, max_samples)


def load_hf_dataset(
    name_or_dir: str | Path,
    split: str | None = None,
    *,
    config: str | None = None,
    revision: str | None = None,
    columns: ColumnMap | None = None,
    policy: Policy = "error",
    max_samples: int | None = None,
    labels: Labels = "required",
) -> QADataset:
    """Load a `save_to_disk` directory (when `name_or_dir` exists locally) or a hub dataset, then validate it.

    `split` picks from a DatasetDict (may be omitted when there is only one); records are validated like flat
    records. A hub name is read from the `datasets` cache when the hub is unreachable (or HF_HUB_OFFLINE is set);
    if it is not cached either, one DataError line says so within seconds instead of a minute of retries.
    """
    check_policy(policy, max_samples)
    cols = columns or SQUAD_COLUMNS
    path = Path(name_or_dir)
    if path.exists():
        if not path.is_dir():
            raise DataError(f"{path}: is a file; use load_dataset_file for data files")
        return load_hf_object(load_from_disk(path), str(path), split, cols, policy, max_samples, labels)
    name = str(name_or_dir)
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0") or not hub_reachable()
    obj = _load_from_hub(name, config, split, revision, offline=offline)
    return load_hf_object(obj, name, split, cols, policy, max_samples, labels)


def _load_from_hub(name: str, config: str | None, split: str | None, revision: str | None, *, offline: bool) -> Any:
    """`datasets.load_dataset`, from its cache only when `offline` (DataError lines for every failure)."""
    import datasets

    try:
        with _offline_mode(offline):
            return datasets.load_dataset(name, config, split=split, revision=revision)
    except Exception as e:  # hub/network/cache failures become one clear line
        first = str(e).splitlines()[0] if str(e) else ""
        if offline:
            raise DataError(
                f"{name}: not a local directory and not in the datasets cache, and the Hugging Face hub is "
                f"unreachable (offline); run once where the hub is reachable, or pass a save_to_disk directory "
                f"({type(e).__name__}: {first})"
            ) from None
        raise DataError(f"{name}: loading it from the Hugging Face hub failed ({type(e).__name__}: {first})") from None


@contextlib.contextmanager
def _offline_mode(offline: bool) -> Iterator[None]:
    """datasets' and huggingface_hub's offline switches on for one call (read at call time), then restored."""
    import datasets
    from huggingface_hub import constants

    switches = [(datasets.config, "HF_HUB_OFFLINE"), (datasets.config, "HF_DATASETS_OFFLINE"),
                (constants, "HF_HUB_OFFLINE")]  # fmt: skip
    saved = [getattr(module, name) for module, name in switches]
    try:
        if offline:
            for module, name in switches:
                setattr(module, name, True)
        yield
    finally:
        for (module, name), value in zip(switches, saved, strict=True):
            setattr(module, name, value)
