"""The exception types of freshlink.

Every error derives from :class:`FreshlinkError` *and* from the builtin it is closest to, so
callers who never heard of freshlink can keep catching ``ValueError`` or ``TypeError``::

    FreshlinkError
    ├── ConfigurationError(ValueError)      bad option, URL, serializer or secret
    ├── KeyTemplateError(ValueError)        a key/tag template that does not fit the signature
    ├── KeyEncodingError(TypeError)         an argument freshlink cannot turn into a stable key
    ├── InvalidTagError(ValueError)         a tag with whitespace, control characters or empty
    ├── SerializationError(TypeError)       a value the serializer cannot encode or decode
    ├── ValueTooLargeError(ValueError)      a serialized value over ``max_value_size``
    ├── TamperedPayloadError(ValueError)    a signed payload whose MAC does not verify
    ├── MissingDependencyError(ImportError) an optional extra is not installed
    ├── RemoteLoaderError(RuntimeError)     the other process loading this value failed
    └── BackendError(ConnectionError)       the backend could not be reached or answered badly
        └── InvalidationError               an invalidation that could not be confirmed
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "CircuitOpenError",
    "ConfigurationError",
    "FreshlinkError",
    "InvalidTagError",
    "InvalidationError",
    "KeyEncodingError",
    "KeyTemplateError",
    "MissingDependencyError",
    "RemoteLoaderError",
    "SerializationError",
    "TamperedPayloadError",
    "ValueTooLargeError",
]


class FreshlinkError(Exception):
    """Base class of every error raised by freshlink."""


class ConfigurationError(FreshlinkError, ValueError):
    """An option, URL, serializer or secret that cannot work."""


class KeyTemplateError(FreshlinkError, ValueError):
    """A key or tag template that does not match the decorated function's signature."""


class KeyEncodingError(FreshlinkError, TypeError):
    """An argument that cannot be encoded into a stable cache key."""


class InvalidTagError(FreshlinkError, ValueError):
    """A tag that is empty or contains whitespace or control characters."""


class SerializationError(FreshlinkError, TypeError):
    """A value the serializer cannot encode, or a payload it cannot decode."""


class ValueTooLargeError(FreshlinkError, ValueError):
    """A serialized value larger than the cache's ``max_value_size``; nothing was stored."""


class TamperedPayloadError(FreshlinkError, ValueError):
    """A signed payload whose MAC does not verify; it is never returned."""


class MissingDependencyError(FreshlinkError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""


class RemoteLoaderError(FreshlinkError, RuntimeError):
    """The process loading a value this call waited for failed; the message says how."""


class BackendError(FreshlinkError, ConnectionError):
    """The backend could not be reached or gave an unexpected answer."""


class InvalidationError(BackendError):
    """An invalidation that could not be confirmed; other processes may still hold old data."""


class CircuitOpenError(BackendError):
    """The circuit breaker is open: the backend is not called until it has healed."""
