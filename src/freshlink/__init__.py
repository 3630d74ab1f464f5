"""freshlink: a coherent cache for the functions that read your data.

Entries are stamped with the generations of their tags read before loading, so an
invalidation is one O(1) increment and a stale fill can never become readable.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# The module each public name lives in, imported on first use: importing any submodule
# (``freshlink.testing.pytest_plugin``, which pytest loads in every run of every project
# that has freshlink installed) runs this file first, so it must import nothing itself.
_HOMES = {
    "AsyncCached": "handles",
    "Cache": "cache",
    "Cached": "handles",
    "Event": "events",
    "Local": "local",
    **dict.fromkeys(
        (
            "BackendError",
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
        ),
        "errors",
    ),
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562)."""
    home = _HOMES.get(name)
    if home is None:
        # ``freshlink.errors.X`` after a bare ``import freshlink`` worked while this file
        # imported its modules eagerly: a submodule is still one attribute access away.
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # the submodule exists but needs a missing dependency: say which
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # the next lookup is a plain module attribute
    return value


def __dir__() -> list[str]:
    """The module's attributes, the public names not imported yet included."""
    return sorted(set(globals()) | set(__all__))
