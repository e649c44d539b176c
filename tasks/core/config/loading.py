"""Building a configuration: `params.yaml` and overrides applied to the defaults, each value coerced to its
field's type (evaluation suites parsed into members), then validated; `save_params` writes one back."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from tasks.core.config.sections import SECTIONS, ConfigError, QAFlowConfig, SuiteMember
from tasks.core.config.validation import validate
from tasks.core.safe_yaml import YAMLInputError, load_yaml


def field_types(section_cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section_cls)
    return {f.name: hints[f.name] for f in fields(section_cls)}


def owner_of(key: str, where: str = "override") -> str:
    """The section that owns a flat field name."""
    for name, cls in SECTIONS.items():
        if key in field_types(cls):
            return name
    raise ConfigError(f"{where}: unknown parameter '{key}'")


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Coerce a YAML/CLI value to a field's annotated type, or raise a ConfigError naming `where`."""
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    args = typing.get_args(annotation) if is_union else ()
    optional = type(None) in args
    if value is None or (optional and isinstance(value, str) and value.lower() in {"none", "null", ""}):
        if optional:
            return None
        raise ConfigError(f"{where}: must not be null")
    base = next(a for a in args if a is not type(None)) if is_union else annotation
    origin = typing.get_origin(base)
    try:
        if base is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in {"1", "true", "yes", "on"}:
                return True
            if str(value).lower() in {"0", "false", "no", "off"}:
                return False
            raise ValueError(value)
        if base is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(value)
            return int(value)
        if base is float:
            if isinstance(value, bool) or math.isnan(number := float(value)):
                raise ValueError(value)
            return number
        if base is str:
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise ConfigError(f"{where}: expected a string, got {_kind(value)}")
            return str(value)
        if origin is list:
            if isinstance(value, str):
                value = load_yaml(value, where)
            if not isinstance(value, list | tuple):
                raise ConfigError(f"{where}: expected a list, got {_kind(value)}")
            (item,) = typing.get_args(base)
            return [coerce(v, item, where) for v in value]
    except YAMLInputError as exc:
        raise ConfigError(str(exc)) from None
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"{where}: cannot read {_shown(value)} as {getattr(base, '__name__', base)}") from None
    return value


def _kind(value: Any) -> str:
    """The YAML name of a value's type, for messages."""
    if isinstance(value, bool):
        return "a boolean (quote it to mean the word)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _apply(cfg: QAFlowConfig, section: str, key: str, value: Any, where: str) -> None:
    if section not in SECTIONS:
        raise ConfigError(f"{where}: unknown section '{section}' (in '{section}.{key}')")
    section_obj = getattr(cfg, section)
    types_ = field_types(type(section_obj))
    if key not in types_:
        raise ConfigError(f"{where}: unknown parameter '{section}.{key}'")
    if (section, key) == ("evaluation", "suites"):
        setattr(section_obj, key, parse_suites(value, f"{where}: evaluation.suites"))
        return
    setattr(section_obj, key, coerce(value, types_[key], f"{where}: {section}.{key}"))


_MEMBER_FIELDS = {f.name: f for f in fields(SuiteMember) if f.name != "name"}
_HEX12 = frozenset("0123456789abcdef")


def parse_suites(value: Any, where: str) -> dict[str, list[SuiteMember]]:
    """`{suite: {member: {data, weight, margin, version}}}` (a mapping, or its YAML text) into typed members."""
    if isinstance(value, str):
        try:
            value = load_yaml(value, where)
        except YAMLInputError as exc:
            raise ConfigError(str(exc)) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: must map suite names to their members")
    suites: dict[str, list[SuiteMember]] = {}
    for suite, members in value.items():
        if isinstance(members, list) and all(isinstance(m, dict) and "name" in m for m in members):
            members = {m["name"]: {k: v for k, v in m.items() if k != "name"} for m in members}  # `to_dict()` form
        if not isinstance(members, dict) or not members:
            raise ConfigError(f"{where}.{suite}: must map member names to {{data, weight, margin, version}}")
        suites[str(suite)] = [_member(str(suite), str(m), spec, f"{where}.{suite}.{m}") for m, spec in members.items()]
    return suites


def _member(suite: str, name: str, spec: Any, where: str) -> SuiteMember:
    if isinstance(spec, str):
        spec = {"data": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a data file or a mapping with 'data'")
    unknown = sorted(set(spec) - set(_MEMBER_FIELDS))
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(_MEMBER_FIELDS)})")
    if not spec.get("data"):
        raise ConfigError(f"{where}.data: missing (a data file)")
    hints = typing.get_type_hints(SuiteMember)
    values = {k: coerce(v, hints[k], f"{where}.{k}") for k, v in spec.items()}
    member = SuiteMember(name=name, **values)
    if member.weight <= 0 or not math.isfinite(member.weight):
        raise ConfigError(f"{where}.weight: {member.weight!r} must be > 0")
    if member.margin is not None and (member.margin < 0 or not math.isfinite(member.margin)):
        raise ConfigError(f"{where}.margin: {member.margin!r} must be >= 0 (or null: not guarded)")
    if member.version is not None and (len(member.version) != 12 or not set(member.version) <= _HEX12):
        raise ConfigError(f"{where}.version: {member.version!r} must be 12 lower-case hex (the file's sha256 prefix)")
    return member


def load_config(
    params_path: str | Path | None = "params.yaml", overrides: dict[str, Any] | None = None
) -> QAFlowConfig:
    """Defaults ← `params.yaml` (if it exists) ← overrides (flat `key` or dotted `section.key`)."""
    cfg = QAFlowConfig()
    if params_path is not None and Path(params_path).exists():
        try:
            raw = load_yaml(Path(params_path).read_text(encoding="utf-8"), str(params_path)) or {}
        except YAMLInputError as exc:
            raise ConfigError(str(exc)) from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{params_path}: not UTF-8 text (byte {exc.start})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{params_path}: top level must be a mapping of sections")
        for section, values in raw.items():
            if section not in SECTIONS:
                raise ConfigError(f"{params_path}: unknown section '{section}'")
            if values is not None and not isinstance(values, dict):
                raise ConfigError(f"{params_path}: section '{section}' must be a mapping of parameters")
            for key, value in (values or {}).items():
                _apply(cfg, section, key, value, str(params_path))
    for key, value in (overrides or {}).items():
        section, _, name = key.rpartition(".")
        _apply(cfg, section or owner_of(name), name, value, "override")
    validate(cfg)
    return cfg


def save_params(cfg: QAFlowConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False), encoding="utf-8")
