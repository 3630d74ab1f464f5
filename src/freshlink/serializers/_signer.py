"""HMAC-SHA256 signing of payloads, bound to a context, with key rotation."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Final

from freshlink.errors import ConfigurationError, TamperedPayloadError

from ._base import type_name

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
                    f"item {position} is a {type_name(secret)!r}"
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
