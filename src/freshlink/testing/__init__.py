"""Testing kit: a throwaway redis-server and the backend conformance suite."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]


def __getattr__(name: str) -> Any:
    """Import ``RedisServer`` / ``free_port`` on first use: the pytest plugin, a submodule,
    is loaded into every pytest run and must not import the server module with it."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import server

    value = getattr(server, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's attributes, ``RedisServer`` and ``free_port`` included."""
    return sorted(set(globals()) | set(__all__))
