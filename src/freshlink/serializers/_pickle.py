"""The pickle serializer: anything picklable, only ever used behind a signer."""

from __future__ import annotations

import pickle

from ._base import decode_error, encode_error


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
            raise encode_error(value, "pickle", exc) from None

    def loads(self, data: bytes) -> object:
        """Return ``pickle.loads(data)``; only ever called on payloads whose MAC verified."""
        try:
            return pickle.loads(data)  # safe only because the Codec verified the MAC
        except MemoryError:
            raise
        except Exception as exc:
            raise decode_error("pickle", exc) from None
