"""Serializers, payload signing and the codec that turns cached values into bytes and back.

Three serializers ship with freshlink:

* :class:`JsonSerializer` (``"json"``, the default): plain JSON for plain data, and tagged
  objects for the Python types JSON lacks, so a value comes back with its exact types.
* :class:`MsgpackSerializer` (``"msgpack"``, needs ``freshlink[msgpack]``): the same types in a
  more compact binary form.
* :class:`PickleSerializer` (``"pickle"``): anything picklable, but only together with a secret,
  because unpickling bytes an attacker wrote runs the attacker's code.

The JSON and msgpack serializers round-trip exactly these types, and refuse anything else with
:class:`~freshlink.errors.SerializationError` rather than returning a look-alike:
``None``, ``bool``, ``int``, ``float`` (NaN and infinities too), ``str``, ``bytes``, ``list``,
``tuple``, ``dict`` (any hashable supported keys), ``set``, ``frozenset``, ``Decimal``,
``datetime`` (naive or aware; an aware one comes back with a fixed-offset ``timezone`` of the same
UTC offset), ``date``, ``time``, ``timedelta`` and ``UUID``. Types are matched exactly: a subclass
(an ``IntEnum``, a ``namedtuple``, an ``OrderedDict``) would come back as its base class, so it is
refused too. (One exception: msgpack itself packs ``bytearray`` and ``memoryview`` as binary,
so with the msgpack serializer they come back as ``bytes``.)

A :class:`Signer` prepends an HMAC-SHA256 of the body and a caller-chosen *context* (freshlink
uses the cache key and its generations), and a :class:`Codec` combines a serializer, an optional
signer and a size limit. :func:`make_codec` builds one from the options ``Cache`` accepts.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import pickle
import struct
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Final, Protocol, TypeVar, cast
from uuid import UUID

from freshlink.errors import (
    ConfigurationError,
    FreshlinkError,
    MissingDependencyError,
    SerializationError,
    TamperedPayloadError,
    ValueTooLargeError,
)

__all__ = [
    "Codec",
    "JsonSerializer",
    "MsgpackSerializer",
    "PickleSerializer",
    "Serializer",
    "Signer",
    "make_codec",
]


class Serializer(Protocol):
    """What freshlink needs from a serializer: a name and a bytes round trip."""

    name: str

    def dumps(self, value: object) -> bytes:
        """Return ``value`` as bytes; raise ``SerializationError`` if it cannot."""

    def loads(self, data: bytes) -> object:
        """Return the value ``data`` encodes; raise ``SerializationError`` if it cannot."""


# ---------------------------------------------------------------------------------- shared

_SUPPORTED: Final = (
    "None, bool, int, float, str, bytes, list, tuple, dict, set, frozenset, Decimal, "
    "datetime, date, time, timedelta and UUID"
)
# The isinstance() check behind the "is a subclass of" hint in the unsupported-type error.
_SUPPORTED_BASES: Final = (
    bool, int, float, str, bytes, list, tuple, dict, set, frozenset, Decimal,
    datetime, date, time, timedelta, UUID,
)  # fmt: skip


def _type_name(value: object) -> str:
    return type(value).__name__


def _unsupported(value: object, serializer: str) -> SerializationError:
    message = (
        f"cannot serialize value of type {_type_name(value)!r} with the {serializer} serializer"
    )
    base = next((b for b in _SUPPORTED_BASES if isinstance(value, b)), None)
    if base is not None:
        # Accepting a subclass would silently hand back the base class on a hit.
        message += f": it is a subclass of {base.__name__!r}, and only the exact types round-trip"
    return SerializationError(
        f"{message} (supported: {_SUPPORTED}; use serializer='pickle' with a secret for "
        f"arbitrary objects)"
    )


def _circular(value: object, serializer: str) -> SerializationError:
    return SerializationError(
        f"cannot serialize value of type {_type_name(value)!r} with the {serializer} "
        f"serializer: it contains itself (circular reference)"
    )


def _too_deep(value: object, serializer: str) -> SerializationError:
    return SerializationError(
        f"cannot serialize value of type {_type_name(value)!r} with the {serializer} "
        f"serializer: it is nested too deeply"
    )


def _recursion_error(value: object, serializer: str) -> SerializationError:
    """Tell a circular value from a merely deep one after an encoder gave up on its depth."""
    path: set[int] = set()

    def find(node: object) -> object | None:
        children: Iterable[object]
        if type(node) is dict:
            children = [*node.keys(), *node.values()]
        elif type(node) in (list, tuple, set, frozenset):
            children = cast("Iterable[object]", node)
        else:
            return None
        if id(node) in path:
            return node
        path.add(id(node))
        for child in children:
            found = find(child)
            if found is not None:
                return found
        path.discard(id(node))
        return None

    try:
        culprit = find(value)
    except RecursionError:
        culprit = None
    return _too_deep(value, serializer) if culprit is None else _circular(culprit, serializer)


_MICROSECOND: Final = timedelta(microseconds=1)
_Clock = TypeVar("_Clock", datetime, time)


def _split_clock(value: datetime | time) -> tuple[str, int | None]:
    """Return the naive ISO text of ``value`` and its UTC offset in microseconds, if aware."""
    # The offset travels as a number rather than inside the ISO text because Python 3.11's
    # fromisoformat() reads an offset like "+00:00:00.000001" (zero h:m:s) as UTC.
    offset = value.utcoffset()
    return (
        value.replace(tzinfo=None, fold=0).isoformat(),
        None if offset is None else offset // _MICROSECOND,
    )


def _join_clock(value: _Clock, offset: int | None, fold: object) -> _Clock:
    """Undo :func:`_split_clock` (the zone comes back as a fixed-offset ``timezone``)."""
    if offset is not None:
        value = value.replace(tzinfo=timezone(offset * _MICROSECOND))
    # fold picks the second of two repeated wall times; isoformat() has no place for it.
    return value.replace(fold=1) if fold else value


def _decode_error(serializer: str, exc: BaseException) -> SerializationError:
    return SerializationError(
        f"cannot decode payload with the {serializer} serializer: {type(exc).__name__}: {exc}"
    )


# ------------------------------------------------------------------------------------ json

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
        raise _circular(value, "json")
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
            raise _circular(value, "json")
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
        raise _unsupported(value, "json")
    return encoder(value, active)


def _json_clock(tag: str, value: datetime | time) -> dict[str, Any]:
    text, offset = _split_clock(value)
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
        raise TypeError(f"expected an array payload, got {_type_name(payload)!r}")
    return payload


_JSON_DECODERS: Final[dict[str, Callable[[Any, dict[str, Any]], object]]] = {
    "dict": lambda v, t: dict(_array(v)),  # dict() checks that every pair has two items
    "tuple": lambda v, t: tuple(_array(v)),
    "set": lambda v, t: set(_array(v)),
    "frozenset": lambda v, t: frozenset(_array(v)),
    "decimal": lambda v, t: Decimal(v),
    "datetime": lambda v, t: _join_clock(datetime.fromisoformat(v), t.get("tz"), t.get("fold")),
    "date": lambda v, t: date.fromisoformat(v),
    "time": lambda v, t: _join_clock(time.fromisoformat(v), t.get("tz"), t.get("fold")),
    "timedelta": lambda v, t: timedelta(days=v[0], seconds=v[1], microseconds=v[2]),
    "uuid": lambda v, t: UUID(v),
    "bytes": lambda v, t: base64.b64decode(v, validate=True),
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
            raise _recursion_error(value, "json") from None
        try:
            # The walk rejected cycles and copied every container that holds another one, so
            # json's own circular check would find nothing.
            text = json.dumps(tree, ensure_ascii=False, separators=(",", ":"), check_circular=False)
        except ValueError as exc:  # an int longer than sys.get_int_max_str_digits()
            raise SerializationError(
                f"cannot serialize value of type 'int' with the json serializer: {exc}"
            ) from None
        except RecursionError:
            raise _too_deep(value, "json") from None
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
            raise _decode_error("json", exc) from None


# --------------------------------------------------------------------------------- msgpack

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
    text, offset = _split_clock(value)
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


def _unpack_clock(parse: Callable[[str], _Clock], data: bytes) -> _Clock:
    flags = data[0]
    if flags & _AWARE:
        (offset,) = _OFFSET.unpack_from(data, 1)
        return _join_clock(parse(data[1 + _OFFSET.size :].decode("ascii")), offset, flags & _FOLD)
    return _join_clock(parse(data[1:].decode("ascii")), None, flags & _FOLD)


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
            raise _unsupported(value, "msgpack")
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
            raise _recursion_error(value, "msgpack") from None
        except Exception as exc:
            if isinstance(exc, ValueError) and "recursion limit" in str(exc):
                # msgpack's own nesting limit (511 levels): a cycle or very deep data.
                raise _recursion_error(value, "msgpack") from None
            raise SerializationError(
                f"cannot serialize value of type {_type_name(value)!r} with the msgpack "
                f"serializer: {type(exc).__name__}: {exc}"
            ) from None
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
            raise _decode_error("msgpack", exc) from None


# ---------------------------------------------------------------------------------- pickle


class PickleSerializer:
    """Any picklable value; :func:`make_codec` only allows it together with a secret."""

    name = "pickle"

    def dumps(self, value: object) -> bytes:
        """Return ``pickle.dumps(value)`` with the highest protocol."""
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            raise
        except Exception as exc:  # PicklingError, TypeError, AttributeError, RecursionError
            raise SerializationError(
                f"cannot serialize value of type {_type_name(value)!r} with the pickle "
                f"serializer: {type(exc).__name__}: {exc}"
            ) from None

    def loads(self, data: bytes) -> object:
        """Return ``pickle.loads(data)``; only ever called on payloads whose MAC verified."""
        try:
            return pickle.loads(data)  # safe only because the Codec verified the MAC
        except MemoryError:
            raise
        except Exception as exc:
            raise _decode_error("pickle", exc) from None


# ---------------------------------------------------------------------------------- signer

# Signed payload: magic/version (3 bytes) + HMAC-SHA256 (32 bytes) + body. The MAC covers the
# magic, the context length (8 bytes, big-endian), the context and the body; the length prefix
# keeps (context=b"ab", body=b"c") and (context=b"a", body=b"bc") from sharing a MAC.
_MAGIC: Final = b"fl\x01"
_MAC_SIZE: Final = hashlib.sha256().digest_size
_HEADER_SIZE: Final = len(_MAGIC) + _MAC_SIZE
# Keys are derived from the secrets so that a secret shared with other code (a Django
# SECRET_KEY, say) never produces MACs that are valid in another protocol.
_KEY_PURPOSE: Final = b"freshlink.serializers.Signer/v1"


class Signer:
    """HMAC-SHA256 signing of payloads, bound to a context, with key rotation."""

    __slots__ = ("_keys",)

    def __init__(self, secrets: str | bytes | Sequence[str | bytes]) -> None:
        candidates: Sequence[object] = (
            [secrets] if isinstance(secrets, str | bytes) else list(secrets)
        )
        if not candidates:
            raise ConfigurationError("secret= must be a non-empty str or bytes, or a list of them")
        keys: list[hmac.HMAC] = []
        for position, secret in enumerate(candidates):
            if isinstance(secret, str):
                raw = secret.encode("utf-8")
            elif isinstance(secret, bytes):
                raw = secret
            else:
                raise ConfigurationError(
                    f"secret= must be str or bytes (or a list of them, newest first); "
                    f"item {position} is a {_type_name(secret)!r}"
                )
            if not raw.strip():
                raise ConfigurationError(
                    f"secret= must not be empty or blank (item {position} of the secrets is)"
                )
            key = hmac.new(raw, _KEY_PURPOSE, hashlib.sha256).digest()
            # A keyed HMAC is copied per message, which skips re-hashing the key every time.
            keys.append(hmac.new(key, digestmod=hashlib.sha256))
        self._keys: tuple[hmac.HMAC, ...] = tuple(keys)

    def __repr__(self) -> str:
        return f"<Signer with {len(self._keys)} secret(s)>"  # never the secrets themselves

    @staticmethod
    def _mac(key: hmac.HMAC, context: bytes, body: bytes) -> bytes:
        mac = key.copy()
        mac.update(_MAGIC)
        mac.update(len(context).to_bytes(8, "big"))
        mac.update(context)
        mac.update(body)
        return mac.digest()

    def sign(self, context: bytes, body: bytes) -> bytes:
        """Return ``body`` prefixed with a version tag and its MAC under the newest secret."""
        return _MAGIC + self._mac(self._keys[0], context, body) + body

    def verify(self, context: bytes, payload: bytes) -> bytes:
        """Return the body of ``payload`` if its MAC verifies under any secret, else raise."""
        if len(payload) < _HEADER_SIZE or payload[: len(_MAGIC)] != _MAGIC:
            raise TamperedPayloadError(
                "payload is not a signed freshlink payload (wrong version tag or truncated)"
            )
        mac = payload[len(_MAGIC) : _HEADER_SIZE]
        body = payload[_HEADER_SIZE:]
        for key in self._keys:
            if hmac.compare_digest(self._mac(key, context, body), mac):
                return body
        raise TamperedPayloadError(
            "payload MAC does not verify: it was modified or truncated, signed with a secret "
            "that is not configured, or stored under another key or generation"
        )


# ----------------------------------------------------------------------------------- codec


def _is_pickle(serializer: object) -> bool:
    # A custom serializer that calls itself "pickle" gets the same scrutiny as ours.
    return isinstance(serializer, PickleSerializer) or getattr(serializer, "name", None) == "pickle"


_PICKLE_NEEDS_SECRET: Final = (
    "the pickle serializer requires secret=: unpickling bytes that an attacker managed to "
    "write into the cache backend executes arbitrary code, so every pickled payload must be "
    "signed (pass secret='...', or use serializer='json' or 'msgpack')"
)


def _check_serializer(serializer: object) -> None:
    if isinstance(serializer, type):
        raise ConfigurationError(
            f"serializer= must be a serializer instance, not the class {serializer.__name__!r}"
        )
    name = getattr(serializer, "name", None)
    if (
        not isinstance(name, str)
        or not name
        or not callable(getattr(serializer, "dumps", None))
        or not callable(getattr(serializer, "loads", None))
    ):
        raise ConfigurationError(
            f"serializer= must be one of {_valid_names()} or an object with a str 'name' and "
            f"dumps(value) -> bytes / loads(bytes) -> value methods; got {serializer!r}"
        )


class Codec:
    """Serialize, size-check and (optionally) sign values, and verify and deserialize them."""

    __slots__ = ("max_value_size", "serializer", "signer")

    def __init__(
        self,
        serializer: Serializer,
        signer: Signer | None = None,
        *,
        max_value_size: int | None = None,
    ) -> None:
        _check_serializer(serializer)
        if signer is None and _is_pickle(serializer):
            raise ConfigurationError(_PICKLE_NEEDS_SECRET)
        if max_value_size is not None and (
            not isinstance(max_value_size, int)
            or isinstance(max_value_size, bool)
            or max_value_size < 1
        ):
            raise ConfigurationError(
                f"max_value_size must be a positive int (bytes) or None, got {max_value_size!r}"
            )
        self.serializer: Serializer = serializer
        self.signer: Signer | None = signer
        self.max_value_size: int | None = max_value_size

    @property
    def signed(self) -> bool:
        """Whether payloads carry a MAC that :meth:`decode` verifies."""
        return self.signer is not None

    def __repr__(self) -> str:
        return (
            f"<Codec serializer={self.serializer.name!r} signed={self.signed} "
            f"max_value_size={self.max_value_size!r}>"
        )

    def encode(self, value: object, context: bytes) -> bytes:
        """Return the payload to store for ``value``; ``context`` is what the MAC binds it to."""
        serializer = self.serializer
        try:
            body = serializer.dumps(value)
        except FreshlinkError:
            raise
        except Exception as exc:  # a custom serializer's own error types
            raise SerializationError(
                f"cannot serialize value of type {_type_name(value)!r} with the "
                f"{serializer.name} serializer: {type(exc).__name__}: {exc}"
            ) from exc
        if not isinstance(body, bytes):
            raise SerializationError(
                f"the {serializer.name} serializer returned {_type_name(body)!r}, not bytes"
            )
        limit = self.max_value_size
        if limit is not None and len(body) > limit:
            raise ValueTooLargeError(
                f"serialized value of type {_type_name(value)!r} is {len(body):,} bytes, over "
                f"max_value_size={limit:,} bytes; it was not stored"
            )
        return body if self.signer is None else self.signer.sign(context, body)

    def decode(self, payload: bytes, context: bytes) -> object:
        """Return the value in ``payload``, verifying its MAC against ``context`` if signed."""
        body = payload if self.signer is None else self.signer.verify(context, payload)
        serializer = self.serializer
        try:
            return serializer.loads(body)
        except FreshlinkError:
            raise
        except Exception as exc:  # a custom serializer's own error types
            raise SerializationError(
                f"cannot decode payload with the {serializer.name} serializer: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


_SERIALIZERS: Final[dict[str, Callable[[], Serializer]]] = {
    "json": JsonSerializer,
    "msgpack": MsgpackSerializer,
    "pickle": PickleSerializer,
}


def _valid_names() -> str:
    return ", ".join(repr(name) for name in _SERIALIZERS)


def make_codec(
    serializer: str | Serializer = "json",
    *,
    secret: str | bytes | Sequence[str | bytes] | None = None,
    max_value_size: int | None = 1_048_576,
) -> Codec:
    """Build the :class:`Codec` for a cache's ``serializer=``, ``secret=`` and size options."""
    if isinstance(serializer, str):
        factory = _SERIALIZERS.get(serializer)
        if factory is None:
            raise ConfigurationError(
                f"unknown serializer {serializer!r}; valid names are {_valid_names()} "
                f"(or pass an object implementing freshlink.serializers.Serializer)"
            )
        if secret is None and serializer == "pickle":
            raise ConfigurationError(_PICKLE_NEEDS_SECRET)
        instance = factory()
    else:
        _check_serializer(serializer)
        if secret is None and _is_pickle(serializer):
            raise ConfigurationError(_PICKLE_NEEDS_SECRET)
        instance = serializer
    signer = None if secret is None else Signer(secret)
    return Codec(instance, signer, max_value_size=max_value_size)
