"""The engine behind a :class:`~freshlink.Cache`: its state, wired together once.

The public class only configures and delegates; everything a read or a write needs lives
here and in the parts it wires together: the backend (guarded by a circuit breaker when it is
shared), the L1, the events, the clocks and the RNG, :class:`~freshlink._entries.Entries`
(stamping, codec, L1 fill), :class:`~freshlink._outcomes.Outcomes` (events, logs, back-off),
:class:`~freshlink._writes.Writes` (confirmed invalidation, write-through). The read path
(:mod:`freshlink.readpath`) and the decorators work on it; it knows neither.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections.abc import Callable, Sequence

from ._entries import Entries
from ._outcomes import Outcomes
from ._writes import Writes
from .backends.base import Backend, Read
from .backends.guard import GuardedBackend
from .breaker import CircuitBreaker
from .events import Events, logger
from .flight import AsyncFlight, Flight
from .gate import AsyncReadGate, ReadGate
from .keyspace import Keyspace
from .local import Local, NearCache
from .refresh import AsyncRefresher, Refresher
from .serializers import Codec
from .tracing import Tracer

__all__ = ["Engine"]


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
        #: Opens spans around reads, loads, invalidations and refreshes (see tracing.py).
        self.tracer: Tracer | None = None
        self.flight = Flight()
        self.aflight = AsyncFlight()
        self.gate = ReadGate()
        self.agate = AsyncReadGate()
        #: Fill leases a miss's read took (entry key -> token), until a fill takes them up.
        self.held: dict[str, str] = {}
        self._held_lock = threading.Lock()
        self.refresher = Refresher(refresh_workers, max_pending_refreshes)
        self.arefresher = AsyncRefresher(max_pending_refreshes)
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
            # A busy thread's hits drain the channel themselves (see local.POLL_EVERY).
            poll = getattr(self.backend, "poll_channel", None)
            if poll is not None:
                near.poll_with(poll)
        else:
            near.trusted_until = -math.inf
        return near

    def trace(self, tracer: Tracer | None) -> None:
        """Install ``tracer`` (None: tracing off) where reads and writes look for it."""
        self.tracer = self.writes.tracer = tracer
        self.backend.observe_commands(tracer is not None)

    # ------------------------------------------------------------------ lifecycle

    def read_key(self, ekey: str, names: Sequence[str], keep: float = 0.0) -> Read:
        """The backend's read of an entry; on a miss it takes the fill's lease (if leases
        exist), held for whichever caller leads the fill. ``keep``: seconds the fill would
        keep the entry (0: unknown or for ever), so generations made on a miss outlive it."""
        backend = self.backend
        if not backend.supports_leases:
            return backend.read(ekey, names)
        read = backend.read_lease(ekey, names, self.lease_ttl, keep)
        if read.token is not None:
            self.hold(ekey, read.token)
        return read

    async def aread_key(self, ekey: str, names: Sequence[str], keep: float = 0.0) -> Read:
        """Async :meth:`read_key`."""
        backend = self.backend
        if not backend.supports_leases:
            return await backend.aread(ekey, names)
        read = await backend.aread_lease(ekey, names, self.lease_ttl, keep)
        if read.token is not None:
            self.hold(ekey, read.token)
        return read

    def hold(self, ekey: str, token: str) -> None:
        """Keep the lease a miss's read took, for whichever caller leads the key's fill."""
        with self._held_lock:
            self.held[ekey] = token

    def take_held(self, ekey: str, token: str | None = None) -> str:
        """The lease held for ``ekey`` (only if it is ``token``, when given), now the caller's."""
        with self._held_lock:
            held = self.held.get(ekey)
            if held is None or (token is not None and held != token):
                return ""
            del self.held[ekey]
            return held

    def after_fork(self) -> None:
        """Start afresh in a forked child (threads did not survive; their locks stay held)."""
        # gunicorn --preload, Celery prefork, multiprocessing: the backend drops the parent's
        # channel and connections and flushes a bounded L1 through its reset hook.
        self.flight = Flight()
        self.aflight = AsyncFlight()
        self.gate = ReadGate()
        self.agate = AsyncReadGate()
        self.held = {}  # the parent's leases are the parent's to use
        self._held_lock = threading.Lock()
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

    def reopen_channel(self) -> None:
        """Start the channel again in a forked child (retried by the next read if it fails)."""
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
