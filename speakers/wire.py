"""Typed JSON wire messages (stdlib only): symmetric ``to_dict``/``from_dict`` for frozen dataclasses
and the strict decoder. ``speakers.protocol`` defines the messages on top of this.

Decoding validates every field against the dataclass annotations (``bool``, ``int``, ``float``,
``str``, ``Literal``, ``X | None``, ``tuple[X, ...]`` and nested message dataclasses); anything
else is a :class:`ProtocolError`, never another exception.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
import typing
from typing import Any, ClassVar, Literal

PROTOCOL_VERSION = 1


class ProtocolError(ValueError):
    """A payload or topic that does not follow the protocol."""


def _check_type(name: str, value: Any, hint: Any) -> Any:
    """Validate one JSON value against a simple annotation; return the converted value."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(name, value, arg)
            except ProtocolError as exc:
                errors.append(str(exc))
        raise ProtocolError("; ".join(errors))
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise ProtocolError(f"{name}: {value!r} not one of {typing.get_args(hint)}")
        return value
    if origin in (list, tuple):
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            raise ProtocolError(f"{name}: expected a list")
        return tuple(_check_type(f"{name}[]", v, item) for v in value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ProtocolError(f"{name}: expected an object")
        return _from_dict(hint, value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ProtocolError(f"{name}: expected true/false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ProtocolError(f"{name}: expected an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ProtocolError(f"{name}: expected a number")
        try:
            number = float(value)
        except OverflowError as exc:
            raise ProtocolError(f"{name}: number out of range") from exc
        if not math.isfinite(number):  # 1e999 parses as inf
            raise ProtocolError(f"{name}: must be a finite number")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ProtocolError(f"{name}: expected a string")
        return value
    raise TypeError(f"unsupported annotation {hint!r}")


@functools.cache
def _hints(cls: Any) -> dict[str, Any]:
    # Resolving the (string) annotations is the slow part of decoding: do it once per class.
    return typing.get_type_hints(cls)


def _from_dict(cls: Any, data: dict[str, Any]) -> Any:
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init or f.name in ("v", "type"):
            continue
        if f.name in data:
            kwargs[f.name] = _check_type(f.name, data[f.name], hints[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ProtocolError(f"{cls.__name__}: missing field {f.name!r}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"{cls.__name__}: {exc}") from exc


def _to_json_value(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_json_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_to_json_value(v) for v in value]
    return value


class Message:
    """Base of every JSON message: ``to_dict``/``from_dict`` are symmetric."""

    TYPE: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        body = _to_json_value(self)
        return {"v": PROTOCOL_VERSION, "type": self.TYPE, **body}

    def encode(self) -> bytes:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Any:
        if not isinstance(data, dict):
            raise ProtocolError("message is not a JSON object")
        return _from_dict(cls, data)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a finite number")


def decode_message(payload: bytes | str, allowed: dict[str, type[Message]]) -> Any:
    """Parse one JSON message of one of the ``allowed`` types (by ``"type"``); raise
    :class:`ProtocolError` on anything malformed. A newer ``"v"`` is accepted (unknown fields
    are ignored)."""
    try:
        data = json.loads(payload, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise ProtocolError("not JSON: nested too deeply") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digit limits
        raise ProtocolError(f"not JSON: {str(exc)[:200]}") from exc
    if not isinstance(data, dict):
        raise ProtocolError("message is not a JSON object")
    version = data.get("v")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ProtocolError(f"missing or bad protocol version: {version!r}")
    kind = data.get("type")
    cls = allowed.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError(f"unexpected message type: {kind!r}")
    return cls.from_dict(data)
