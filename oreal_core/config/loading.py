"""Configs from YAML: named files in ``configs/`` or a path, dotted ``--set`` overrides,
and type checking of every value against the schema's hints (lists become tuples, ints
become floats where a float is declared). Unknown keys get a did-you-mean.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from oreal_core.config.schema import SHOWN_CHARS, ConfigError, OrealConfig, shown

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DEFAULT_CONFIG = "tiny-cpu"


def load_config(source: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> OrealConfig:
    """Load a config by name (``tiny-cpu``) or path, then apply ``key.sub=value`` overrides."""
    path = resolve_config_path(source)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(exc)}") from None
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
    if not isinstance(item, str):  # Prefect deployment parameters can carry any JSON value
        raise ConfigError(f"override {shown(item)}: expected a 'key.path=value' string")
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {shown(item)}: expected key.path=value")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {shown(item)}: {shown(part)} is a value, not a section")
        node = child
    node[parts[-1]] = parse_override_value(key.strip()[:SHOWN_CHARS], text)


def parse_override_value(key: str, text: str) -> Any:
    """One override's value as YAML, without anchors or aliases.

    An alias repeats a node by reference, so a few hundred bytes of nested aliases expand to
    gigabytes once the value is walked or printed (the "billion laughs"); no setting needs one.
    """
    if not text.strip():
        return ""
    try:
        if any(isinstance(token, yaml.AnchorToken | yaml.AliasToken) for token in yaml.scan(text)):
            raise ConfigError(f"{key}: YAML anchors and aliases ('&', '*') are not allowed in an override")
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{key}={shown(text)}: not valid YAML: {yaml_problem(exc)}") from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A PyYAML error on one line: its problem and where (PyYAML's own text spans several lines)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return f"{exc.problem}{where}"
    return " ".join(str(exc).split())


def from_dict(cls: type, raw: Any, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a plain mapping, checking keys and types on the way."""
    where = prefix.rstrip(".") or "config"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {shown(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in raw if k not in fields]
    if unknown:
        key = unknown[0]
        hint = difflib.get_close_matches(str(key), fields, n=1)
        suggestion = f" (did you mean '{prefix}{hint[0]}'?)" if hint else ""
        raise ConfigError(f"{prefix}{str(key)[:SHOWN_CHARS]}: unknown key{suggestion}; known keys: {sorted(fields)}")
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
            raise ConfigError(f"{name}={shown(value)}: must be one of {list(args)}")
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
        raise ConfigError(errors[0] if len(errors) == 1 else f"{name}={shown(value)}: does not match {tp}")
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}={shown(value)}: expected a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{name}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{name}={shown(value)}: expected {len(args)} items")
        return tuple(_coerce(a, v, f"{name}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    return _coerce_scalar(tp, value, name)


def _coerce_scalar(tp: Any, value: Any, name: str) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{name}={shown(value)}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name}={shown(value)}: expected an integer")
        return value
    if tp is float:
        return _coerce_float(value, name)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}={shown(value)}: expected a string")
        return value
    raise ConfigError(f"{name}: unsupported config type {tp}")  # pragma: no cover


def _coerce_float(value: Any, name: str) -> float:
    """A finite float. Every float setting is a rate, a scale or a time: NaN and inf are always
    wrong, and comparisons with NaN pass the range checks (NaN < 0 is False)."""
    number = value
    if isinstance(value, str):  # YAML 1.1 reads "1e-6" (no dot) as a string: accept what float() accepts
        with contextlib.suppress(ValueError):
            number = float(value)
    if isinstance(number, bool) or not isinstance(number, int | float):
        raise ConfigError(f"{name}={shown(value)}: expected a number")
    try:
        number = float(number)
    except OverflowError:  # an int beyond the float range
        number = math.inf
    if not math.isfinite(number):
        raise ConfigError(f"{name}={shown(value)}: must be a finite number (not NaN or infinity)")
    return number
