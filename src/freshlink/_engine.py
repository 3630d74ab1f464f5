"""The engine behind a :class:`~freshlink.Cache`: state, wiring, and the read entry points.

The public class only configures and delegates; everything a read or a write needs lives
here and in the parts it wires together: the backend (guarded by a circuit breaker when it is
shared), the L1, the events, the clocks and the RNG, :class:`~freshlink._entries.Entries`
(stamping, codec, L1 fill), :class:`~freshlink._outcomes.Outcomes` (events, logs, back-off),
:class:`~freshlink._writes.Writes` (confirmed invalidation, write-through) and the read path
(:mod:`freshlink.readpath`).

The read path, in order (each step only when the previous one did not answer):

1. **L1** (:class:`~freshlink.local.NearCache`): a decoded value whose stamps equal the
   generations this process knows, within its TTL and while the channel is trusted.
2. **L2** (the backend): one generation-aware read returns the entry if its stamps are current,
   and otherwise the current generations, read *before* the loader starts.
3. **Load** under single-flight keyed by ``(key, generations)``; the entry is stamped with the
   generations from step 2 and stored only if they are still current.

Stamping with generations read before loading is what makes the cache-aside "stale set" race
harmless: a loader that read old data stamps old generations, and the write's invalidation has
already made those generations old.
"""

from __future__ import annotations

import math
import os
import weakref
from collections.abc import Callable, Coroutine, Hashable, Sequence
from typing import Any, Final

from ._entries import UNREADABLE, Entries
from ._outcomes import Outcomes
from ._writes import Writes
from .backends.base import Backend, Read
from .backends.guard import GuardedBackend
from .breaker import CircuitBreaker
from .errors import BackendError
from .events import Events, logger
from .flight import AsyncFlight, Flight
from .keyspace import Keyspace
from .local import Local, NearCache
from .policy import Action, Freshness
from .readpath import ReadPath, arun, run
from .refresh import AsyncRefresher, Refresher
from .serializers import Codec

__all__ = ["Engine"]

_NOT_FRESH: Final = object()  # the direct L2 read found no fresh entry: take the read path


class Engine:
    """Everything one cache reads and writes with (see the module docstring)."""

    def __init__(
        self,
        raw: Backend,
        *,
        keyspace: Keyspace,
        codec: Codec,
        local: Local | None,
        name: str,
        breaker: CircuitBreaker | None,
        refresh_workers: int,
        max_pending_refreshes: int,
        lease_ttl: float,
        clock: Callable[[], float],
        monotonic: Callable[[], float],
        rng: Callable[[], float],
    ) -> None:
        self.keyspace = keyspace
        self.lease_ttl = lease_ttl
        self.monotonic = monotonic
        self.events = Events()
        self.outcomes = Outcomes(self.events, name, monotonic, rng)
        self.breaker: CircuitBreaker | None = None
        if raw.synchronous:
            self.backend: Backend = raw  # in-process: nothing to break or retry
        else:
            self.breaker = breaker or CircuitBreaker(clock=monotonic)
            _listen(self.breaker, self.outcomes.circuit_changed)
            self.backend = GuardedBackend(raw, self.breaker, rng=rng)
        self.near = self._wire_near(local)
        # Strict L1 over a shared backend: every L1 candidate is confirmed by reading its
        # generations (one small round trip, no payload transfer or decoding).
        self.verify_near = (
            local is not None and local.mode == "strict" and not self.backend.synchronous
        )
        self.entries = Entries(codec, self.events, self.near, clock, monotonic, rng)
        self.writes = Writes(self.backend, self.entries, self.near, self.events, keyspace)
        self.flight = Flight()
        self.aflight = AsyncFlight()
        self.refresher = Refresher(refresh_workers, max_pending_refreshes)
        self.arefresher = AsyncRefresher(max_pending_refreshes)
        self.path = ReadPath(self)
        # Set in a forked child whose L1 needs the channel: the first read there starts it.
        self.reopen = False
        self.closed = False
        _reset_in_forked_children(self)

    def _wire_near(self, local: Local | None) -> NearCache | None:
        """The L1 store for ``local``, subscribed to what keeps it coherent."""
        if local is None:
            return None
        near = NearCache(local, clock=self.monotonic)
        if self.backend.synchronous:
            self.backend.subscribe(near.heard)
        elif local.mode == "bounded":
            # Trusted only once the channel has proved it delivers (see backends.channel).
            near.trusted_until = -math.inf
            bound = local.max_staleness
            self.backend.on_channel(alive=lambda t: near.trust(t + bound), reset=near.distrust)
            self.backend.subscribe(near.heard)
        else:
            near.trusted_until = -math.inf
        return near

    # ------------------------------------------------------------------ reads

    def fetch(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        load: Callable[[], Any],
        policy: Freshness,
        near_key: Hashable | None = None,
    ) -> Any:
        """Return the cached value for ``key`` or load, stamp and store it (sync)."""
        if self.reopen:
            self._reopen_channel()
        nk = key if near_key is None else near_key
        first: Read | BackendError | None = None
        if self.near is None:
            # Strict without L1, the common L2 hit: one read and a fresh entry need none of the
            # read path's machinery. Anything else continues there with this read in hand.
            try:
                first = self.backend.read(self.keyspace.entry(key), names)
            except BackendError as exc:
                first = exc
            else:
                value = self._fresh_hit(fname, key, first, policy)
                if value is UNREADABLE:
                    first = Read(None, first.gens)  # already reported: a miss from here on
                elif value is not _NOT_FRESH:
                    return value
        return run(self, self.path.fetch(fname, key, names, policy, nk, first), load)

    async def afetch(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        load: Callable[[], Coroutine[Any, Any, Any]],
        policy: Freshness,
        near_key: Hashable | None = None,
    ) -> Any:
        """Async :meth:`fetch`: the same steps with the backend's async methods."""
        if self.reopen:
            self._reopen_channel()
        nk = key if near_key is None else near_key
        first: Read | BackendError | None = None
        if self.near is None:
            try:
                first = await self.backend.aread(self.keyspace.entry(key), names)
            except BackendError as exc:
                first = exc
            else:
                value = self._fresh_hit(fname, key, first, policy)
                if value is UNREADABLE:
                    first = Read(None, first.gens)
                elif value is not _NOT_FRESH:
                    return value
        return await arun(self, self.path.fetch(fname, key, names, policy, nk, first), load)

    def _fresh_hit(self, fname: str, key: str, read: Read, policy: Freshness) -> Any:
        """The value of a valid, fresh entry in ``read`` (reported as an L2 hit), or not."""
        entry = read.entry
        if entry is None:
            return _NOT_FRESH
        if entry.ttl is not None:
            action, left = self.entries.judge(entry, policy)
            if action is not Action.SERVE:
                return _NOT_FRESH
        else:
            left = None
        value = self.entries.value(fname, key, entry)
        if value is not UNREADABLE:
            self.outcomes.served(fname, key, "l2", Action.SERVE, policy, left)
        return value

    # ------------------------------------------------------------------ lifecycle

    def after_fork(self) -> None:
        """Start afresh in a forked child (threads did not survive; their locks stay held)."""
        # gunicorn --preload, Celery prefork, multiprocessing: the backend drops the parent's
        # channel and connections and flushes a bounded L1 through its reset hook.
        self.flight = Flight()
        self.aflight = AsyncFlight()
        self.refresher = Refresher(self.refresher.workers, self.refresher.max_pending)
        self.arefresher = AsyncRefresher(self.arefresher.max_pending)
        if self.breaker is not None:
            self.breaker.after_fork()
        if self.near is not None:
            self.near.after_fork()
        if self.closed:
            return
        self.backend.after_fork()
        self.reopen = (
            self.near is not None
            and self.near.config.mode == "bounded"
            and not self.backend.synchronous
        )

    def _reopen_channel(self) -> None:
        self.reopen = False
        try:
            self.backend.ensure_listener()  # type: ignore[attr-defined]
        except Exception:  # retried by the next read; L1 stays untrusted meanwhile
            self.reopen = True
            logger.warning("freshlink: could not reopen the invalidation channel", exc_info=True)

    def close(self) -> None:
        """Release the backend's connections and threads (background refreshes are dropped)."""
        self.closed = True
        self.refresher.close()
        self.backend.close()

    async def aclose(self) -> None:
        """Async :meth:`close` (running async refreshes are awaited first)."""
        self.closed = True
        await self.arefresher.drain()
        self.refresher.close()
        await self.backend.aclose()


def _listen(breaker: CircuitBreaker, ours: Callable[[str], None]) -> None:
    """Have ``breaker`` report state changes to ``ours`` too (a caller's listener stays)."""
    theirs = breaker.on_change
    if theirs is None:
        breaker.on_change = ours
        return

    def both(state: str) -> None:
        ours(state)
        theirs(state)  # type: ignore[arg-type]

    breaker.on_change = both


def _reset_in_forked_children(engine: Engine) -> None:
    """Have ``engine`` start afresh in every forked child (it is not kept alive for it)."""
    ref = weakref.ref(engine)

    def after_in_child() -> None:
        alive = ref()
        if alive is not None:
            alive.after_fork()

    os.register_at_fork(after_in_child=after_in_child)
