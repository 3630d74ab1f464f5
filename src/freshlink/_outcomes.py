"""What a read's outcome tells the world: hit/stale events, failure logs and loader back-off.

Pure bookkeeping over the cache's events and a clock: no backend, no codec. The read path and
the engine call these at the point where the outcome is known.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import BackendError, CircuitOpenError
from .events import Event, Events, logger
from .policy import Action, Freshness, backoff

if TYPE_CHECKING:
    from .stats import CacheStats

__all__ = ["Outcomes", "Stale"]

#: Keys whose back-off is remembered; beyond it the map is wiped (forgetting a back-off only
#: costs an early retry, and a key-cardinality attack cannot grow it without bound).
_MAX_BACKOFFS = 10_000


class Stale:
    """A valid but expired value kept in hand in case the loader fails (stale-if-error)."""

    __slots__ = ("left", "value")

    def __init__(self, value: Any, left: float | None) -> None:
        self.value = value
        self.left = left  # seconds of freshness left (negative: expired that long ago)

    def usable(self, policy: Freshness) -> bool:
        """Whether stale-if-error still allows serving it."""
        return self.left is not None and -self.left <= policy.stale_if_error


class Outcomes:
    """Events, logs and per-key loader back-off of one cache."""

    def __init__(
        self,
        events: Events,
        name: str,
        monotonic: Callable[[], float],
        rng: Callable[[], float],
    ) -> None:
        self.events = events
        self.name = name
        self.monotonic = monotonic
        self.rng = rng
        #: Counters, when the cache's stats are enabled.
        self.stats: CacheStats | None = None
        # key -> (failed attempts, monotonic time of the next try): stale-if-error back-off.
        self._retry_at: dict[str, tuple[int, float]] = {}

    def served(
        self, fname: str, key: str, tier: str, action: Action, policy: Freshness, left: float | None
    ) -> None:
        """Emit hit / stale_served / expiring for a value about to be served."""
        ev = self.events
        if action is Action.SERVE_STALE_AND_REFRESH:
            if ev.stale_served:
                ev.emit(Event("stale_served", fname, key, tier, ttl_left=left))
        else:
            if self.stats is not None:
                self.stats.hit(fname, tier)
            if ev.hit:
                ev.emit(Event("hit", fname, key, tier, ttl_left=left))
        within = policy.expiring_within
        if within is not None and left is not None and left < within and ev.expiring:
            ev.emit(Event("expiring", fname, key, tier, ttl_left=left))

    def missed(self, fname: str, key: str) -> None:
        """Emit a miss."""
        if self.events.miss:
            self.events.emit(Event("miss", fname, key))

    def loaded(
        self, fname: str, key: str, took: float, *, emit: bool = True, settled: bool = True
    ) -> None:
        """A loader returned: emit the load (not for a refresh), and end its key's back-off
        once the value is ``settled`` (a load while the backend is down settles nothing)."""
        if settled:
            self._retry_at.pop(key, None)
        if emit and self.events.load:
            self.events.emit(Event("load", fname, key, duration=took))

    def taken_over(self, fname: str, key: str) -> None:
        """Count and emit an L2 hit on a value another process just filled."""
        if self.stats is not None:
            self.stats.hit(fname, "l2")
        if self.events.hit:
            self.events.emit(Event("hit", fname, key, "l2"))

    def backend_failed(self, fname: str, key: str, exc: BackendError, doing: str) -> None:
        """Log (and emit) a backend failure the caller is shielded from."""
        if isinstance(exc, CircuitOpenError):
            # Announced once by the circuit_open event and log line; one line per read
            # during an outage would flood the logs.
            logger.debug("freshlink: circuit open, %s of %s skipped", doing, key)
            return
        logger.warning(
            "freshlink: %s failed for %s, serving from the loader: %s",
            doing,
            key,
            exc,
            extra={"freshlink_key": key, "freshlink_function": fname},
        )
        if self.events.error:
            self.events.emit(Event("error", fname, key, "l2", error=exc))

    def backing_off(self, key: str) -> bool:
        """True while a key whose loader failed waits for its next retry."""
        due = self._retry_at.get(key)
        return due is not None and self.monotonic() < due[1]

    def _back_off(self, key: str, policy: Freshness) -> None:
        attempts = self._retry_at.get(key, (0, 0.0))[0] + 1
        if len(self._retry_at) > _MAX_BACKOFFS:
            self._retry_at.clear()
        self._retry_at[key] = (
            attempts,
            self.monotonic() + backoff(attempts, policy.retry_base, policy.retry_cap, self.rng),
        )

    def loader_failed(
        self, fname: str, key: str, exc: Exception, policy: Freshness, stale: Stale | None
    ) -> Any:
        """Stale-if-error: serve a still-usable old value and back off, or re-raise."""
        self._back_off(key, policy)
        if self.events.error:
            self.events.emit(Event("error", fname, key, error=exc))
        if stale is None or not stale.usable(policy):
            raise exc
        logger.warning(
            "freshlink: loader of %s failed (%s: %s); serving the last value",
            key,
            type(exc).__name__,
            exc,
            extra={"freshlink_key": key, "freshlink_function": fname},
        )
        if self.events.stale_served:
            self.events.emit(Event("stale_served", fname, key, error=exc, ttl_left=stale.left))
        return stale.value

    def refresh_failed(self, fname: str, key: str, exc: Exception, policy: Freshness) -> None:
        """A background refresh failed: back off and log; the old value stays served."""
        self._back_off(key, policy)
        logger.warning(
            "freshlink: background refresh of %s failed: %s: %s",
            key,
            type(exc).__name__,
            exc,
            extra={"freshlink_key": key},
        )
        if self.events.error:
            self.events.emit(Event("error", fname, key, error=exc))

    def refreshed(self, fname: str, key: str, took: float) -> None:
        """Emit a stored background refresh."""
        if self.events.refresh:
            self.events.emit(Event("refresh", fname, key, duration=took))

    def circuit_changed(self, state: str) -> None:
        """Log and emit a circuit breaker's state change."""
        name = "circuit_open" if state == "open" else "circuit_close" if state == "closed" else ""
        if not name:
            return
        log = logger.error if state == "open" else logger.warning
        log(
            "freshlink: backend circuit %s",
            "opened: calls go to the loaders" if state == "open" else "closed again",
            extra={"freshlink_event": name, "freshlink_cache": self.name},
        )
        if getattr(self.events, name):
            self.events.emit(Event(name))
