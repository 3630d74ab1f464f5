"""The msgpack serializer: msgpack with ExtTypes for the types msgpack lacks."""

from __future__ import annotations

import struct
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final
from uuid import UUID

from freshlink.errors import MissingDependencyError, SerializationError

from ._base import (
    Clock,
    decode_error,
    encode_error,
    join_clock,
    recursion_error,
    split_clock,
    unsupported,
)
from ._objects import build_object, describe_object

# Application ExtType codes. Scalars carry their payload in the ext's data; containers are
# msgpack arrays whose first element is an empty ext "marker", so their items are packed by
# msgpack itself (no nested packb per tuple) and a cycle hits msgpack's nesting limit.
_EXT_TUPLE: Final = 1
_EXT_SET: Final = 2
_EXT_FROZENSET: Final = 3
_EXT_DECIMAL: Final = 4
_EXT_DATETIME: Final = 5
_EXT_DATE: Final = 6
_EXT_TIME: Final = 7
_EXT_TIMEDELTA: Final = 8
_EXT_UUID: Final = 9
_EXT_BIGINT: Final = 10  # ints outside msgpack's 64-bit range
# A dataclass or pydantic model: [ext(_EXT_OBJECT, name), fields] (see _objects.py).
_EXT_OBJECT: Final = 11
_TIMEDELTA: Final = struct.Struct(">iii")


class _Marker:
    """The decoded form of a container marker: it turns the rest of its array into the type."""

    __slots__ = ("build",)

    def __init__(self, build: Callable[[list[Any]], object]) -> None:
        self.build = build


_MARKERS: Final = {
    _EXT_TUPLE: _Marker(tuple),
    _EXT_SET: _Marker(set),
    _EXT_FROZENSET: _Marker(frozenset),
}


# Datetime and time ext data: a flags byte (1 = fold, 2 = aware), for an aware value its UTC
# offset in microseconds (8 bytes, big-endian, signed), then the naive ISO text.
_FOLD: Final = 1
_AWARE: Final = 2
_OFFSET: Final = struct.Struct(">q")


def _pack_clock(value: datetime | time) -> bytes:
    text, offset = split_clock(value)
    flags = _FOLD if value.fold else 0
    if offset is None:
        return bytes((flags,)) + text.encode("ascii")
    return bytes((flags | _AWARE,)) + _OFFSET.pack(offset) + text.encode("ascii")


def _int_to_bytes(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)


def _msgpack_list_hook(items: list[Any]) -> object:
    if items and type(items[0]) is _Marker:
        return items[0].build(items[1:])
    return items


def _unpack_clock(parse: Callable[[str], Clock], data: bytes) -> Clock:
    flags = data[0]
    if flags & _AWARE:
        (offset,) = _OFFSET.unpack_from(data, 1)
        return join_clock(parse(data[1 + _OFFSET.size :].decode("ascii")), offset, flags & _FOLD)
    return join_clock(parse(data[1:].decode("ascii")), None, flags & _FOLD)


_MSGPACK_DECODERS: Final[dict[int, Callable[[bytes], object]]] = {
    _EXT_DECIMAL: lambda d: Decimal(d.decode("ascii")),
    _EXT_DATETIME: lambda d: _unpack_clock(datetime.fromisoformat, d),
    _EXT_DATE: lambda d: date.fromisoformat(d.decode("ascii")),
    _EXT_TIME: lambda d: _unpack_clock(time.fromisoformat, d),
    _EXT_TIMEDELTA: lambda d: timedelta(*_TIMEDELTA.unpack(d)),
    _EXT_UUID: lambda d: UUID(bytes=d),
    _EXT_BIGINT: lambda d: int.from_bytes(d, "big", signed=True),
}


def _msgpack_ext_hook(code: int, data: bytes) -> object:
    marker = _MARKERS.get(code)
    if marker is not None and not data:
        return marker
    if code == _EXT_OBJECT:
        name = data.decode("utf-8")
        return _Marker(lambda items: build_object(name, items[0] if len(items) == 1 else None))
    decoder = _MSGPACK_DECODERS.get(code)
    if decoder is None:
        raise SerializationError(
            f"cannot decode payload with the msgpack serializer: unknown ext type {code}"
        )
    return decoder(data)


class MsgpackSerializer:
    """Compact binary msgpack with ExtTypes for the types msgpack lacks (``freshlink[msgpack]``)."""

    name = "msgpack"

    def __init__(self) -> None:
        try:
            import msgpack  # an optional extra: imported only when it is chosen
        except ImportError as exc:
            raise MissingDependencyError(
                "the msgpack serializer needs the msgpack package: pip install 'freshlink[msgpack]'"
            ) from exc
        self._msgpack: Any = msgpack
        ext = msgpack.ExtType
        self._encoders: dict[type, Callable[[Any], object]] = {
            tuple: lambda v: [ext(_EXT_TUPLE, b""), *v],
            set: lambda v: [ext(_EXT_SET, b""), *v],
            frozenset: lambda v: [ext(_EXT_FROZENSET, b""), *v],
            # With strict_types, msgpack hands ints it cannot fit in 64 bits to default().
            int: lambda v: ext(_EXT_BIGINT, _int_to_bytes(v)),
            Decimal: lambda v: ext(_EXT_DECIMAL, str(v).encode("ascii")),
            datetime: lambda v: ext(_EXT_DATETIME, _pack_clock(v)),
            date: lambda v: ext(_EXT_DATE, v.isoformat().encode("ascii")),
            time: lambda v: ext(_EXT_TIME, _pack_clock(v)),
            timedelta: lambda v: ext(
                _EXT_TIMEDELTA, _TIMEDELTA.pack(v.days, v.seconds, v.microseconds)
            ),
            UUID: lambda v: ext(_EXT_UUID, v.bytes),
        }

    def _default(self, value: Any) -> object:
        encoder = self._encoders.get(type(value))
        if encoder is None:
            found = describe_object(value, "msgpack")
            if found is None:
                raise unsupported(value, "msgpack")
            return [self._msgpack.ExtType(_EXT_OBJECT, found[0].encode("utf-8")), found[1]]
        return encoder(value)

    def dumps(self, value: object) -> bytes:
        """Return ``value`` as msgpack bytes."""
        try:
            data: bytes = self._msgpack.packb(
                value,
                default=self._default,
                use_bin_type=True,
                # strict_types: tuples and subclasses go to default() instead of being
                # silently packed as lists or as their base type.
                strict_types=True,
                datetime=False,
                unicode_errors="surrogatepass",
            )
        except SerializationError:
            raise
        except RecursionError:
            raise recursion_error(value, "msgpack") from None
        except Exception as exc:
            if isinstance(exc, ValueError) and "recursion limit" in str(exc):
                # msgpack's own nesting limit (511 levels): a cycle or very deep data.
                raise recursion_error(value, "msgpack") from None
            raise encode_error(value, "msgpack", exc) from None
        return data

    def loads(self, data: bytes) -> object:
        """Return the value that :meth:`dumps` encoded into ``data``."""
        try:
            return self._msgpack.unpackb(
                data,
                use_list=True,  # arrays are lists; tuples carry a marker (see _EXT_TUPLE)
                list_hook=_msgpack_list_hook,
                ext_hook=_msgpack_ext_hook,
                raw=False,
                strict_map_key=False,  # int, tuple, ... keys are allowed
                unicode_errors="surrogatepass",
            )
        except SerializationError:
            raise
        except MemoryError:
            raise
        except Exception as exc:  # ExtraData, FormatError, StackError, bad ext payloads, ...
            raise decode_error("msgpack", exc) from None
