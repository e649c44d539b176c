"""`params.yaml` edited in place: overrides of the DVC-tracked sections written as the user's file keeps its layout.

Kept apart from `tasks.core.config` (which only reads and validates) so that reading a configuration needs no
round-trip YAML library.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

from tasks.core.config import SECTIONS, ConfigError, QAFlowConfig, coerce, field_types, owner_of
from tasks.core.io import write_bytes_atomic
from tasks.core.safe_yaml import YAMLInputError, load_yaml

DVC_SECTIONS = ("data", "model", "features")  # params.yaml sections the DVC stages depend on (dvc.yaml)


def persist_stage_overrides(params_path: str | Path, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """Write overrides of DVC-tracked sections into `params.yaml` (as `dvc exp run -S` does); return what changed.

    The DVC stages read `params.yaml` only, so an override of, say, `max_seq_length` must land there for the
    features (and the data version) to follow it. Overrides of other sections stay in memory. The file is edited
    in place through ruamel.yaml's round trip (DVC's own YAML library): comments, key order and layout stay as
    the user wrote them; only the overridden values change.
    """
    path = Path(params_path)
    yaml_rt = _round_trip_yaml()
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        load_yaml(text, str(path))  # refused here as load_config refuses it: duplicate keys, alias bombs, syntax
    except YAMLInputError as exc:
        raise ConfigError(str(exc)) from None
    raw = yaml_rt.load(text) or CommentedMap()
    changed: dict[str, Any] = {}
    for key, value in (overrides or {}).items():
        section, _, name = key.rpartition(".")
        section = section or owner_of(name)
        if section not in DVC_SECTIONS:
            continue
        types_ = field_types(SECTIONS[section])
        if name not in types_:
            raise ConfigError(f"override: unknown parameter '{section}.{name}'")
        typed = coerce(value, types_[name], f"override: {section}.{name}")
        current = raw.get(section) if isinstance(raw.get(section), dict) else None
        if (current or {}).get(name, getattr(getattr(QAFlowConfig(), section), name)) != typed:
            if current is None:
                raw[section] = current = CommentedMap()
            current[name] = typed
            changed[f"{section}.{name}"] = typed
    if changed:
        buffer = io.StringIO()
        yaml_rt.dump(raw, buffer)
        write_bytes_atomic(buffer.getvalue().encode("utf-8"), path)
    return changed


def _round_trip_yaml() -> YAML:
    yaml_rt = YAML(typ="rt")
    yaml_rt.preserve_quotes = True
    yaml_rt.width = 4096  # never re-wrap a long line the user wrote
    yaml_rt.representer.add_representer(type(None), _represent_null)  # `null`, as written, not an empty value
    return yaml_rt


def _represent_null(representer: Any, _: None) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:null", "null")
