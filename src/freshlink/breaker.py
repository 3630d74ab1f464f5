"""A circuit breaker: stop hammering a backend that keeps failing, probe it, heal by itself.

Pure state: the clock is passed in and nothing here does I/O, so the transitions are tested
exactly (tests/unit/test_breaker.py). :class:`~freshlink.backends.guard.GuardedBackend` applies it.

    closed --(``failures`` in a row)--> open --(``reset_after`` passed)--> half-open
    half-open --(the one probe succeeds)--> closed
    half-open --(the probe fails)--> open again, waiting twice as long (up to ``max_reset``)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from .errors import ConfigurationError

__all__ = ["CircuitBreaker", "State"]

State = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts consecutive failures and decides whether the next call may go through."""

    def __init__(
        self,
        failures: int = 3,
        reset_after: float = 0.5,
        max_reset: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[State], None] | None = None,
    ) -> None:
        if failures < 1 or reset_after <= 0 or max_reset < reset_after:
            raise ConfigurationError(
                "CircuitBreaker needs failures >= 1 and 0 < reset_after <= max_reset"
            )
        self.threshold = failures
        self.base_reset = reset_after
        self.max_reset = max_reset
        self.clock = clock
        self.on_change = on_change
        self._lock = threading.Lock()
        self.state: State = "closed"
        self.failures = 0
        self.reset_after = reset_after
        self.opened_at = 0.0
        self._probing = False

    def after_fork(self) -> None:
        """In a forked child: a lock held by a parent's thread at the fork is never released."""
        self._lock = threading.Lock()
        self._probing = False

    def allow(self) -> bool:
        """May a call go to the backend now? (In half-open state only one probe at a time.)"""
        if self.state == "closed":
            return True
        with self._lock:
            changes = []
            if self.state == "open" and self.clock() - self.opened_at >= self.reset_after:
                changes.append(self._set("half_open"))
            allowed = self.state == "half_open" and not self._probing
            if allowed:
                self._probing = True
        self._announce(changes)
        return allowed

    def success(self) -> None:
        """A call succeeded."""
        if self.state == "closed" and not self.failures:
            return
        with self._lock:
            self.failures = 0
            self._probing = False
            self.reset_after = self.base_reset
            changes = [self._set("closed")]
        self._announce(changes)

    def failure(self) -> None:
        """A call failed (connection error or timeout)."""
        with self._lock:
            self.failures += 1
            self._probing = False
            changes = []
            if self.state == "half_open":
                self.reset_after = min(self.reset_after * 2, self.max_reset)
                changes.append(self._open())
            elif self.state == "closed" and self.failures >= self.threshold:
                changes.append(self._open())
        self._announce(changes)

    def abandon(self) -> None:
        """A call ended without a verdict (cancelled): free the probe slot, count nothing."""
        with self._lock:
            self._probing = False

    def _open(self) -> State | None:
        self.opened_at = self.clock()
        return self._set("open")

    def _set(self, state: State) -> State | None:
        changed = state != self.state
        self.state = state
        return state if changed else None

    def _announce(self, changes: list[State | None]) -> None:
        # Outside the lock: a listener may call straight back into the cache (and so into
        # allow()), which would deadlock on a lock held while it runs.
        if self.on_change is not None:
            for state in changes:
                if state is not None:
                    self.on_change(state)
