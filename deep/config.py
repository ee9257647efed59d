"""Training configs: frozen, keyword-only, validated dataclasses; ``--set key=value`` overrides.

A trainer's config subclasses :class:`Config`::

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class ToyConfig(Config):
        steps: int = 400
        \"\"\"Optimiser steps.\"\"\"
        lr: float = 1e-2
        \"\"\"Adam step size.\"\"\"

        def validate(self) -> None:
            check_int("steps", self.steps, low=1)
            check_scalar("lr", self.lr, low=0.0, low_inclusive=False)

:class:`Config` checks every field against its annotation when the object is built (``int``,
``float`` (ints accepted and converted), ``bool``, ``str``, ``Literal[...]``, ``tuple[X, ...]``,
``X | None`` and nested ``Config`` fields) and then calls ``validate()`` for range checks; a bad
value raises ``ValueError`` naming the field. Presets are plain functions returning configs
(``def small() -> ToyConfig: return ToyConfig(hidden=32)``). The docstring under each field
(a string literal after it, as in cleanrl's ``Args``) is its help text, shown by
``fixpoint train <algorithm> --show-config``.

:func:`apply_overrides` turns ``["lr=0.1", "hidden=64,64", "model.layers=4"]`` into a new config,
coercing each text value to the field's annotated type.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import inspect
import json
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypeVar, Union

from fixpoint_rl.envs.checks import describe
from fixpoint_rl.tabular.core.records import jsonable

__all__ = [
    "Config",
    "apply_overrides",
    "coerce",
    "config_to_dict",
    "config_from_dict",
    "config_digest",
    "field_docs",
]

C = TypeVar("C")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Base class of training configs: type checks from the annotations, then ``validate()``.

    Subclasses are ``@dataclasses.dataclass(frozen=True, kw_only=True)`` and override
    :meth:`validate` (raise ``ValueError`` naming the field) rather than ``__post_init__``.
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for field in dataclasses.fields(self):
            if not field.init:
                continue
            value = getattr(self, field.name)
            checked = _check_type(field.name, value, hints[field.name])
            if checked is not value:
                object.__setattr__(self, field.name, checked)
        self.validate()

    def validate(self) -> None:
        """Range and consistency checks of the fields (override; raise ``ValueError``)."""


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _check_type(name: str, value: Any, tp: Any) -> Any:
    """``value`` if it matches annotation ``tp`` (int -> float widened), else ValueError."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if _is_union(tp):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(name, value, arg)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(f"{name} must be {_type_name(tp)}, got {describe(value)}")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices or type(value) not in {type(c) for c in choices}:
            raise ValueError(f"{name} must be one of {choices}, got {describe(value)}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (tuple, list)):
            raise ValueError(f"{name} must be a tuple ({_type_name(tp)}), got {describe(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            items = [_check_type(f"{name}[{i}]", v, args[0]) for i, v in enumerate(value)]
        elif args:
            if len(value) != len(args):
                raise ValueError(f"{name} must have {len(args)} entries, got {describe(value)}")
            items = [_check_type(f"{name}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args))]
        else:
            items = list(value)
        return tuple(items)
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be a bool, got {describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an int, got {describe(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a float, got {describe(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a str, got {describe(value)}")
        return value
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise ValueError(f"{name} must be a {tp.__name__}, got {describe(value)}")
        return value
    return value  # annotations this checker does not know are left to validate()


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def coerce(name: str, text: str, tp: Any) -> Any:
    """The value of type ``tp`` written as ``text`` on the command line (``name`` for errors).

    bool: true/false/1/0/yes/no/on/off; int: ``10``, ``1_000``, ``1e6`` (if integral); float;
    str; ``Literal``; ``X | None``: ``none``/``null`` or an X; tuples: comma-separated
    (``64,64``; empty text = empty tuple) or a Python literal ``(64, 64)``.
    """
    origin = typing.get_origin(tp)
    stripped = text.strip()
    if tp is Any or tp is str:
        return text
    if _is_union(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if type(None) in typing.get_args(tp) and stripped.lower() in ("none", "null"):
            return None
        for arg in args:
            try:
                return coerce(name, text, arg)
            except ValueError:
                continue
        raise ValueError(f"{name} must be {_type_name(tp)}, got {text!r}")
    if origin is Literal:
        for choice in typing.get_args(tp):
            if isinstance(choice, str) and choice == stripped:
                return choice
            if not isinstance(choice, str):
                try:
                    if coerce(name, stripped, type(choice)) == choice:
                        return choice
                except ValueError:
                    pass
        raise ValueError(f"{name} must be one of {typing.get_args(tp)}, got {text!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if stripped.startswith(("(", "[")):
            try:
                parsed = ast.literal_eval(stripped)
            except (ValueError, SyntaxError):
                raise ValueError(f"{name} must be a tuple ({_type_name(tp)}), got {text!r}") from None
            parts = [str(p) for p in parsed] if isinstance(parsed, (tuple, list)) else [stripped]
        else:
            parts = [p for p in stripped.split(",")] if stripped else []
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(f"{name}[{i}]", p, args[0]) for i, p in enumerate(parts))
        if args and len(parts) != len(args):
            raise ValueError(f"{name} must have {len(args)} comma-separated entries, got {text!r}")
        return tuple(coerce(f"{name}[{i}]", p, a) if args else p.strip()
                     for i, (p, a) in enumerate(zip(parts, args or [str] * len(parts))))
    if tp is bool:
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
        raise ValueError(f"{name} must be a bool (true/false), got {text!r}")
    if tp is int:
        try:
            return int(stripped.replace("_", ""))
        except ValueError:
            pass
        try:
            number = float(stripped)
        except ValueError:
            raise ValueError(f"{name} must be an int, got {text!r}") from None
        if number.is_integer():
            return int(number)
        raise ValueError(f"{name} must be an int, got {text!r}")
    if tp is float:
        try:
            return float(stripped)
        except ValueError:
            raise ValueError(f"{name} must be a float, got {text!r}") from None
    raise ValueError(f"{name}: cannot set a field of type {_type_name(tp)} from the command line")


def _valid_keys(config: Any, prefix: str = "") -> list[str]:
    keys = []
    for field in dataclasses.fields(config):
        if not field.init:
            continue
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            keys.extend(_valid_keys(value, f"{prefix}{field.name}."))
        else:
            keys.append(prefix + field.name)
    return keys


def _set(config: Any, path: list[str], text: str, full: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(config) if f.init}
    head = path[0]
    if head not in fields:
        raise KeyError(head)
    hints = typing.get_type_hints(type(config))
    current = getattr(config, head)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise KeyError(head)
        return dataclasses.replace(config, **{head: _set(current, path[1:], text, full)})
    if dataclasses.is_dataclass(current):
        raise ValueError(f"{full} is a group of settings; set its fields ({full}.<name>=...)")
    return dataclasses.replace(config, **{head: coerce(full, text, hints[head])})


def apply_overrides(config: C, overrides: Sequence[str]) -> C:
    """A copy of ``config`` with ``key=value`` settings applied in order (validated again).

    Keys are field names, dotted for nested configs (``model.layers=4``); values are coerced to
    the field's annotated type (:func:`coerce`).

    Raises:
      ValueError: a malformed item, an unknown key (the message lists the valid keys) or a
        value of the wrong type or range (the message names the field).
    """
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ValueError(f"config must be a dataclass instance, got {describe(config)}")
    if isinstance(overrides, str):
        raise ValueError(f"overrides must be a list of 'key=value' strings, got {overrides!r}")
    for item in overrides:
        if not isinstance(item, str) or "=" not in item:
            raise ValueError(f"override must look like key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip()
        try:
            config = _set(config, key.split("."), text, key)
        except KeyError:
            raise ValueError(
                f"unknown setting {key!r} for {type(config).__name__}; valid keys: "
                + ", ".join(_valid_keys(config))
            ) from None
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """The fields of a config as JSON-able values (tuples become lists), nested configs as dicts."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ValueError(f"config must be a dataclass instance, got {describe(config)}")
    return jsonable(dataclasses.asdict(config))


def config_from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
    """Rebuild a config of class ``cls`` from :func:`config_to_dict` output (validated)."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        if field.name not in values or not field.init:
            continue
        value = values[field.name]
        tp = hints[field.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            value = config_from_dict(tp, value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[field.name] = value
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"values has unknown keys {sorted(unknown)} for {cls.__name__}")
    return cls(**kwargs)


def config_digest(config: Any, length: int = 8) -> str:
    """A short hex digest of the config's values (stable across processes and machines)."""
    text = json.dumps(config_to_dict(config), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of a dataclass (``field: T = v`` then ``\"\"\"...\"\"\"``),
    for this class and its bases; fields without one map to ``""``."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, following in zip(body, body[1:] + [None]):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)):
                docs[node.target.id] = inspect.cleandoc(following.value.value)
    return {f.name: docs.get(f.name, "") for f in dataclasses.fields(cls)}
