"""freshlink: a coherent cache for the functions that read your data.

Entries are stamped with the generations of their tags read before loading, so an
invalidation is one O(1) increment and a stale fill can never become readable.
"""

from __future__ import annotations

from .cache import Cache
from .errors import (
    BackendError,
    ConfigurationError,
    FreshlinkError,
    InvalidationError,
    InvalidTagError,
    KeyEncodingError,
    KeyTemplateError,
    MissingDependencyError,
    RemoteLoaderError,
    SerializationError,
    TamperedPayloadError,
    ValueTooLargeError,
)
from .events import Event
from .handles import AsyncCached, Cached
from .local import Local

__all__ = [
    "AsyncCached",
    "BackendError",
    "Cache",
    "Cached",
    "ConfigurationError",
    "Event",
    "FreshlinkError",
    "InvalidTagError",
    "InvalidationError",
    "KeyEncodingError",
    "KeyTemplateError",
    "Local",
    "MissingDependencyError",
    "RemoteLoaderError",
    "SerializationError",
    "TamperedPayloadError",
    "ValueTooLargeError",
    "__version__",
]

__version__ = "0.1.0.dev0"
