"""Configs from YAML: named files in ``configs/`` or a path, dotted ``--set`` overrides,
and type checking of every value against the schema's hints (lists become tuples, ints
become floats where a float is declared). Unknown keys get a did-you-mean.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from oreal_core.config.schema import ConfigError, OrealConfig

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_CONFIG = "tiny-cpu"


def load_config(source: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> OrealConfig:
    """Load a config by name (``tiny-cpu``) or path, then apply ``key.sub=value`` overrides."""
    path = resolve_config_path(source)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    return from_dict(OrealConfig, raw)


def resolve_config_path(source: str | Path | None) -> Path:
    if source is None:
        source = DEFAULT_CONFIG
    path = Path(source)
    if path.is_file():
        return path
    named = CONFIG_DIR / f"{source}.yaml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {str(source)!r}: no such file, and not one of the named configs {known}")


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one ``section.key=value`` override in place; the value is parsed as YAML."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected key.path=value")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(text) if text.strip() else ""


def from_dict(cls: type, raw: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a plain mapping, checking keys and types on the way."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(str(key), fields, n=1)
        suggestion = f" (did you mean '{prefix}{hint[0]}'?)" if hint else ""
        raise ConfigError(f"{prefix}{key}: unknown key{suggestion}; known keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(hints[name], value, f"{prefix}{name}") for name, value in raw.items()}
    try:
        return cls(**values)
    except ConfigError as exc:  # a range check of this section: name it by its full path
        raise ConfigError(f"{prefix}{exc}") from None


def _coerce(tp: Any, value: Any, name: str) -> Any:
    """Check ``value`` against type hint ``tp`` and convert lists to tuples and ints to floats."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, prefix=f"{name}.")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name}={value!r}: must be one of {list(args)}")
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, name)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{name}={value!r}: does not match {tp}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}={value!r}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{name}={value!r}: expected {len(args)} items")
        return tuple(_coerce(a, v, f"{name}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    return _coerce_scalar(tp, value, name)


def _coerce_scalar(tp: Any, value: Any, name: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}={value!r}: expected an integer")
        return value
    if tp is float:
        # YAML 1.1 reads "1e-6" (no dot) as a string: accept any text float() accepts.
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name}={value!r}: expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}={value!r}: expected a string")
        return value
    raise ConfigError(f"{name}: unsupported config type {tp}")  # pragma: no cover
