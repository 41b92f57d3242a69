"""Declared payload shapes: frozen dataclasses validated at enqueue and again at run."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Self, Union

from jobs.errors import PayloadError


@dataclasses.dataclass(frozen=True)
class Payload:
    """Base for payload shapes; fields must be JSON types (str, int, float, bool, list, dict)."""

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise PayloadError(f"payload must be an object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise PayloadError(f"unknown payload field(s): {', '.join(unknown)}")
        for field in dataclasses.fields(cls):
            missing = (
                field.default is dataclasses.MISSING
                and field.default_factory is dataclasses.MISSING
            )
            if field.name not in data:
                if missing:
                    raise PayloadError(f"payload field {field.name!r} is required")
                continue
            if not _matches(data[field.name], hints[field.name]):
                raise PayloadError(
                    f"payload field {field.name!r} must be {_describe(hints[field.name])}, "
                    f"got {data[field.name]!r}"
                )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class EmptyPayload(Payload):
    """A kind that takes no payload."""


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(hint) or (Any,)
        return isinstance(value, list) and all(_matches(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
