"""What every serializer shares: the protocol, the refusal errors and the split of clock values."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Final, Protocol, TypeVar, cast
from uuid import UUID

from freshlink.errors import SerializationError


class Serializer(Protocol):
    """What freshlink needs from a serializer: a name and a bytes round trip."""

    name: str

    def dumps(self, value: object) -> bytes:
        """Return ``value`` as bytes; raise ``SerializationError`` if it cannot."""

    def loads(self, data: bytes) -> object:
        """Return the value ``data`` encodes; raise ``SerializationError`` if it cannot."""


_SUPPORTED: Final = (
    "None, bool, int, float, str, bytes, list, tuple, dict, set, frozenset, Decimal, "
    "datetime, date, time, timedelta and UUID"
)
# The isinstance() check behind the "is a subclass of" hint in the unsupported-type error.
_SUPPORTED_BASES: Final = (
    bool, int, float, str, bytes, list, tuple, dict, set, frozenset, Decimal,
    datetime, date, time, timedelta, UUID,
)  # fmt: skip


def type_name(value: object) -> str:
    """The name of ``value``'s type, as error messages show it."""
    return type(value).__name__


def _cannot(value: object, serializer: str) -> str:
    # The opening every "will not encode this value" error shares.
    return f"cannot serialize value of type {type_name(value)!r} with the {serializer} serializer"


def unsupported(value: object, serializer: str) -> SerializationError:
    """The error for a value of a type ``serializer`` does not round-trip."""
    message = _cannot(value, serializer)
    base = next((b for b in _SUPPORTED_BASES if isinstance(value, b)), None)
    if base is not None:
        # Accepting a subclass would silently hand back the base class on a hit.
        message += f": it is a subclass of {base.__name__!r}, and only the exact types round-trip"
    return SerializationError(
        f"{message} (supported: {_SUPPORTED}; use serializer='pickle' with a secret for "
        f"arbitrary objects)"
    )


def circular(value: object, serializer: str) -> SerializationError:
    """The error for a value that contains itself."""
    return SerializationError(
        f"{_cannot(value, serializer)}: it contains itself (circular reference)"
    )


def too_deep(value: object, serializer: str) -> SerializationError:
    """The error for a value nested deeper than the encoder can go."""
    return SerializationError(f"{_cannot(value, serializer)}: it is nested too deeply")


def encode_error(value: object, serializer: str, exc: BaseException) -> SerializationError:
    """The error for a value ``serializer`` failed to encode (``exc`` says why)."""
    return SerializationError(f"{_cannot(value, serializer)}: {type(exc).__name__}: {exc}")


def recursion_error(value: object, serializer: str) -> SerializationError:
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
    return too_deep(value, serializer) if culprit is None else circular(culprit, serializer)


_MICROSECOND: Final = timedelta(microseconds=1)
Clock = TypeVar("Clock", datetime, time)


def split_clock(value: datetime | time) -> tuple[str, int | None]:
    """Return the naive ISO text of ``value`` and its UTC offset in microseconds, if aware."""
    # The offset travels as a number rather than inside the ISO text because Python 3.11's
    # fromisoformat() reads an offset like "+00:00:00.000001" (zero h:m:s) as UTC.
    offset = value.utcoffset()
    return (
        value.replace(tzinfo=None, fold=0).isoformat(),
        None if offset is None else offset // _MICROSECOND,
    )


def join_clock(value: Clock, offset: int | None, fold: object) -> Clock:
    """Undo :func:`split_clock` (the zone comes back as a fixed-offset ``timezone``)."""
    if offset is not None:
        value = value.replace(tzinfo=timezone(offset * _MICROSECOND))
    # fold picks the second of two repeated wall times; isoformat() has no place for it.
    return value.replace(fold=1) if fold else value


def decode_error(serializer: str, exc: BaseException) -> SerializationError:
    """The error for a payload ``serializer`` could not decode (``exc`` says why)."""
    return SerializationError(
        f"cannot decode payload with the {serializer} serializer: {type(exc).__name__}: {exc}"
    )
