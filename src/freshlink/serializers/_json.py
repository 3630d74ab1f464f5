"""The JSON serializer: plain JSON for plain data, tagged objects for the types JSON lacks."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

from freshlink.errors import SerializationError

from ._base import (
    circular,
    decode_error,
    join_clock,
    recursion_error,
    split_clock,
    too_deep,
    type_name,
    unsupported,
)
from ._objects import OBJECT_TAG, build_object, describe_object

# Tagged values are one-key-plus-payload objects, {"$fl": <tag>, "v": <payload>}. A user dict
# that has a "$fl" key of its own is written as a tagged "dict" (a list of pairs), so every
# object with a "$fl" key in the output is a tag and loads never has to guess.
_TAG: Final = "$fl"
_TAG_BYTES: Final = b'"$fl"'
_JSON_NATIVE: Final = frozenset({str, int, float, bool, type(None)})
_STR_ONLY: Final = frozenset({str})


def _json_items(value: Any, active: set[int]) -> Any:
    marker = id(value)
    if marker in active:
        raise circular(value, "json")
    if set(map(type, value)) <= _JSON_NATIVE:
        # Only leaves (checked in C): reuse the items instead of walking them one by one.
        return value if type(value) is list else list(value)
    active.add(marker)
    # Leaves are tested inline: a function call per str/int is most of the cost of the walk.
    items = [v if type(v) in _JSON_NATIVE else _json_tree(v, active) for v in value]
    active.discard(marker)
    return items


def _json_tree(value: Any, active: set[int]) -> Any:
    """Return ``value`` as JSON-native objects; ``active`` holds the containers above it."""
    kind = type(value)
    if kind in _JSON_NATIVE:
        return value
    if kind is list:
        return _json_items(value, active)
    if kind is dict:
        marker = id(value)
        if marker in active:
            raise circular(value, "json")
        # set(map(type, ...)) runs in C; most dicts in cached data have only str keys.
        plain_keys = _TAG not in value and set(map(type, value)) <= _STR_ONLY
        if plain_keys and set(map(type, value.values())) <= _JSON_NATIVE:
            return value  # only leaves: json.dumps can take it as it is
        active.add(marker)
        tree: Any
        if plain_keys:
            tree = {
                k: v if type(v) in _JSON_NATIVE else _json_tree(v, active) for k, v in value.items()
            }
        else:
            tree = {
                _TAG: "dict",
                "v": [[_json_tree(k, active), _json_tree(v, active)] for k, v in value.items()],
            }
        active.discard(marker)
        return tree
    encoder = _JSON_ENCODERS.get(kind)
    if encoder is None:
        found = describe_object(value, "json")
        if found is None:
            raise unsupported(value, "json")
        return {_TAG: OBJECT_TAG, "t": found[0], "v": _json_tree(found[1], active)}
    return encoder(value, active)


def _json_clock(tag: str, value: datetime | time) -> dict[str, Any]:
    text, offset = split_clock(value)
    tree: dict[str, Any] = {_TAG: tag, "v": text}
    if offset is not None:
        tree["tz"] = offset
    if value.fold:
        tree["fold"] = 1
    return tree


_JSON_ENCODERS: Final[dict[type, Callable[[Any, set[int]], Any]]] = {
    tuple: lambda v, a: {_TAG: "tuple", "v": _json_items(v, a)},
    set: lambda v, a: {_TAG: "set", "v": _json_items(v, a)},
    frozenset: lambda v, a: {_TAG: "frozenset", "v": _json_items(v, a)},
    # str(Decimal) is exact: sign, digits and exponent (so "1.10" stays "1.10"), NaN, sNaN.
    Decimal: lambda v, a: {_TAG: "decimal", "v": str(v)},
    datetime: lambda v, a: _json_clock("datetime", v),
    date: lambda v, a: {_TAG: "date", "v": v.isoformat()},
    time: lambda v, a: _json_clock("time", v),
    timedelta: lambda v, a: {_TAG: "timedelta", "v": [v.days, v.seconds, v.microseconds]},
    UUID: lambda v, a: {_TAG: "uuid", "v": str(v)},
    bytes: lambda v, a: {_TAG: "bytes", "v": base64.b64encode(v).decode("ascii")},
}


def _array(payload: Any) -> list[Any]:
    # tuple("abc") or set({"a": 1}) would "work" on a malformed payload and hide the damage.
    if type(payload) is not list:
        raise TypeError(f"expected an array payload, got {type_name(payload)!r}")
    return payload


_JSON_DECODERS: Final[dict[str, Callable[[Any, dict[str, Any]], object]]] = {
    "dict": lambda v, t: dict(_array(v)),  # dict() checks that every pair has two items
    "tuple": lambda v, t: tuple(_array(v)),
    "set": lambda v, t: set(_array(v)),
    "frozenset": lambda v, t: frozenset(_array(v)),
    "decimal": lambda v, t: Decimal(v),
    "datetime": lambda v, t: join_clock(datetime.fromisoformat(v), t.get("tz"), t.get("fold")),
    "date": lambda v, t: date.fromisoformat(v),
    "time": lambda v, t: join_clock(time.fromisoformat(v), t.get("tz"), t.get("fold")),
    "timedelta": lambda v, t: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": lambda v, t: UUID(v),
    "bytes": lambda v, t: base64.b64decode(v, validate=True),
    OBJECT_TAG: lambda v, t: build_object(t.get("t"), v),
}


def _json_object_hook(obj: dict[str, Any]) -> object:
    if _TAG not in obj:
        return obj
    tag = obj[_TAG]
    decoder = _JSON_DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        raise SerializationError(
            f"cannot decode payload with the json serializer: unknown tag {tag!r}"
        )
    return decoder(obj["v"], obj)


class JsonSerializer:
    """The default serializer: compact UTF-8 JSON, tagged so every supported type round-trips."""

    name = "json"

    def dumps(self, value: object) -> bytes:
        """Return ``value`` as compact UTF-8 JSON; plain JSON data stays plain JSON."""
        try:
            tree = _json_tree(value, set())
        except RecursionError:
            raise recursion_error(value, "json") from None
        try:
            # The walk rejected cycles and copied every container that holds another one, so
            # json's own circular check would find nothing.
            text = json.dumps(tree, ensure_ascii=False, separators=(",", ":"), check_circular=False)
        except ValueError as exc:  # an int longer than sys.get_int_max_str_digits()
            raise SerializationError(
                f"cannot serialize value of type 'int' with the json serializer: {exc}"
            ) from None
        except RecursionError:
            raise too_deep(value, "json") from None
        # surrogatepass: a str with a lone surrogate is a valid Python str; json.loads decodes
        # bytes with surrogatepass too, so it comes back unchanged.
        return text.encode("utf-8", "surrogatepass")

    def loads(self, data: bytes) -> object:
        """Return the value that :meth:`dumps` encoded into ``data``."""
        try:
            # Every tag is written as the object key "$fl", so a payload without those bytes
            # holds plain JSON and skips the object hook (half of the decoding time). A string
            # that merely contains "$fl" only costs the slower path, never a wrong decode.
            if _TAG_BYTES not in data:
                return json.loads(data)
            return json.loads(data, object_hook=_json_object_hook)
        except SerializationError:
            raise
        except MemoryError:
            raise
        except Exception as exc:  # JSONDecodeError, bad tag payloads, RecursionError, ...
            raise decode_error("json", exc) from None
