"""The engine as the read path and the decorators see it: a narrow Protocol.

:mod:`freshlink.readpath` and :mod:`freshlink.decorators` depend on this, not on the engine
class, so the engine can build them without an import circle.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Hashable, Sequence
from typing import Any, Protocol

from ._entries import Entries
from ._outcomes import Outcomes
from ._writes import Writes
from .backends.base import Backend
from .events import Events
from .flight import AsyncFlight, Flight
from .keyspace import Keyspace
from .local import NearCache
from .policy import Freshness
from .refresh import AsyncRefresher, Refresher

__all__ = ["EngineView"]


class EngineView(Protocol):
    """What one cache's read path and decorated functions use of its engine."""

    backend: Backend
    near: NearCache | None
    events: Events
    keyspace: Keyspace
    entries: Entries
    outcomes: Outcomes
    writes: Writes
    monotonic: Callable[[], float]
    lease_ttl: float
    #: Strict L1 over a shared backend: each L1 candidate's generations are read first.
    verify_near: bool
    flight: Flight
    aflight: AsyncFlight
    refresher: Refresher
    arefresher: AsyncRefresher

    def fetch(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        load: Callable[[], Any],
        policy: Freshness,
        near_key: Hashable | None = None,
    ) -> Any:
        """The cached value of ``key``, or load, stamp and store it."""

    async def afetch(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        load: Callable[[], Coroutine[Any, Any, Any]],
        policy: Freshness,
        near_key: Hashable | None = None,
    ) -> Any:
        """Async :meth:`fetch`."""
