"""Hooks: subscribe to what the cache does (hits, loads, invalidations, errors).

A hook is a callable taking one :class:`Event`. Emitting costs nothing when no hook is
registered for that event (the call sites test a tuple for truth first), and a hook that raises
is logged on the ``freshlink`` logger and never breaks the call that emitted the event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from .errors import ConfigurationError

__all__ = ["EVENT_NAMES", "Event", "Events", "Hook", "logger"]

logger = logging.getLogger("freshlink")

EVENT_NAMES = (
    "hit",
    "miss",
    "load",
    "refresh",
    "stale_served",
    "error",
    "invalidation",
    "circuit_open",
    "circuit_close",
    "expiring",
    "remote_failure",
)


@dataclass(frozen=True, slots=True)
class Event:
    """What happened, where, and how long it took."""

    name: str
    function: str | None = None
    key: str | None = None
    tier: str | None = None
    duration: float | None = None
    tags: tuple[str, ...] = ()
    error: BaseException | None = None
    ttl_left: float | None = None


Hook = Callable[[Event], Any]
H = TypeVar("H", bound=Hook)


class Events:
    """Per-cache hook registry. ``events.hit`` etc. are tuples of hooks (empty when unused)."""

    hit: tuple[Hook, ...]
    miss: tuple[Hook, ...]
    load: tuple[Hook, ...]
    refresh: tuple[Hook, ...]
    stale_served: tuple[Hook, ...]
    error: tuple[Hook, ...]
    invalidation: tuple[Hook, ...]
    circuit_open: tuple[Hook, ...]
    circuit_close: tuple[Hook, ...]
    expiring: tuple[Hook, ...]
    remote_failure: tuple[Hook, ...]

    def __init__(self) -> None:
        for name in EVENT_NAMES:
            setattr(self, name, ())

    @overload
    def on(self, name: str) -> Callable[[H], H]: ...
    @overload
    def on(self, name: str, hook: H) -> H: ...
    def on(self, name: str, hook: H | None = None) -> H | Callable[[H], H]:
        """Register ``hook`` for event ``name``; usable as a decorator."""
        self._check(name)

        def register(fn: H) -> H:
            setattr(self, name, (*getattr(self, name), fn))
            return fn

        return register if hook is None else register(hook)

    def off(self, name: str, hook: Hook) -> None:
        """Unregister a hook (no error if it was not registered)."""
        self._check(name)
        setattr(self, name, tuple(h for h in getattr(self, name) if h is not hook))

    def emit(self, event: Event) -> None:
        """Call every hook registered for ``event.name``; log hooks that raise."""
        for hook in getattr(self, event.name):
            try:
                hook(event)
            except Exception:
                logger.exception(
                    "freshlink hook %r raised on %s",
                    hook,
                    event.name,
                    extra={"freshlink_event": event.name, "freshlink_key": event.key},
                )

    @staticmethod
    def _check(name: str) -> None:
        if name not in EVENT_NAMES:
            raise ConfigurationError(
                f"unknown event {name!r}; events are: {', '.join(EVENT_NAMES)}"
            )
