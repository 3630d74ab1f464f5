"""Per-client token buckets that keep the "report stale" endpoints from becoming a refresh pump."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import ConfigurationError

__all__ = ["RateLimiter"]


class RateLimiter:
    """Per-client token buckets: ``rate`` tokens a second, at most ``burst`` saved up."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        if not rate > 0 or burst < 1:
            raise ConfigurationError("RateLimiter needs rate > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Spend one token of ``client``: 0.0 if allowed, else seconds until the next token."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if len(self._buckets) >= self.max_clients:
                # Bounded memory: forget the least recently seen half. A forgotten client
                # only gets a fresh burst, which the bucket allows anyway.
                for old in list(self._buckets)[: self.max_clients // 2]:
                    del self._buckets[old]
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate
