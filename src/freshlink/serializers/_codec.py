"""The codec (serializer + optional signer + size limit) and :func:`make_codec`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from freshlink.errors import (
    ConfigurationError,
    FreshlinkError,
    SerializationError,
    ValueTooLargeError,
)

from ._base import Serializer, decode_error, encode_error, type_name
from ._json import JsonSerializer
from ._msgpack import MsgpackSerializer
from ._pickle import PickleSerializer
from ._signer import Signer


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
            raise encode_error(value, serializer.name, exc) from exc
        if not isinstance(body, bytes):
            raise SerializationError(
                f"the {serializer.name} serializer returned {type_name(body)!r}, not bytes"
            )
        limit = self.max_value_size
        if limit is not None and len(body) > limit:
            raise ValueTooLargeError(
                f"serialized value of type {type_name(value)!r} is {len(body):,} bytes, over "
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
            raise decode_error(serializer.name, exc) from exc


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
