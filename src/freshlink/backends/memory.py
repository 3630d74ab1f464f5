"""The embedded ``memory://`` backend: one process, no server, the same guarantees."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence

from cachetools import LRUCache

from .base import Backend, Entry, InvalidationListener, Read, new_generation

__all__ = ["MemoryBackend"]


class MemoryBackend(Backend):
    """Entries and generations in process memory, bounded by ``maxsize`` entries.

    One lock makes every operation atomic, the way a Lua script is atomic in Redis. Listeners
    run inside :meth:`invalidate`, before it returns, so an L1 in front never lags behind.
    """

    synchronous = True

    def __init__(
        self,
        maxsize: int = 100_000,
        *,
        clock: Callable[[], float] = time.time,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self._rng = rng
        self._lock = threading.RLock()
        self._entries: LRUCache[str, tuple[Entry, float]] = LRUCache(maxsize)
        # Generations are bounded too; an evicted one reads as unknown (a fresh random value),
        # which makes every entry stamped with it invalid: eviction can cost hits, never
        # correctness.
        self._gens: LRUCache[str, int] = LRUCache(maxsize * 4)
        self._listeners: list[InvalidationListener] = []

    def _current(self, names: Sequence[str]) -> tuple[int, ...]:
        out = []
        for name in names:
            value = self._gens.get(name)
            if value is None:
                value = self._gens[name] = new_generation(self._rng)
            out.append(value)
        return tuple(out)

    def _live(self, key: str) -> Entry | None:
        item = self._entries.get(key)
        if item is None:
            return None
        entry, deadline = item
        if deadline <= self._clock():
            del self._entries[key]
            return None
        return entry

    def read(self, key: str, names: Sequence[str]) -> Read:
        """See :meth:`Backend.read`."""
        with self._lock:
            current = self._current(names)
            entry = self._live(key)
            if entry is not None and self._current(entry.names) != entry.stamps:
                entry = None
            return Read(entry, current)

    def write(self, key: str, entry: Entry, retain: float | None, token: str = "") -> bool:
        """See :meth:`Backend.write`."""
        with self._lock:
            if self._current(entry.names) != entry.stamps:
                return False
            self._store(key, entry, retain)
            return True

    def _store(self, key: str, entry: Entry, retain: float | None) -> None:
        deadline = float("inf") if retain is None else self._clock() + retain
        self._entries[key] = (entry, deadline)

    def write_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> bool:
        """See :meth:`Backend.write_through`."""
        with self._lock:
            fresh = self._current(entry.names) == tuple(expected)
            self._bump(entry.names)
            if fresh:
                self._store(key, entry, retain)
            return fresh

    def _bump(self, names: Sequence[str]) -> tuple[int, ...]:
        values = tuple(v + 1 for v in self._current(names))
        for name, value in zip(names, values, strict=True):
            self._gens[name] = value
        for listener in self._listeners:
            listener(names, values)
        return values

    def invalidate(self, names: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.invalidate`."""
        with self._lock:
            return self._bump(names)

    def current(self, names: Sequence[str]) -> tuple[int, ...]:
        """See :meth:`Backend.current`."""
        with self._lock:
            return self._current(names)

    def get_entry(self, key: str) -> Entry | None:
        """See :meth:`Backend.get_entry`."""
        with self._lock:
            return self._live(key)

    def delete(self, key: str) -> bool:
        """See :meth:`Backend.delete`."""
        with self._lock:
            return self._entries.pop(key, None) is not None

    def subscribe(self, listener: InvalidationListener) -> None:
        """See :meth:`Backend.subscribe`."""
        self._listeners.append(listener)

    def __len__(self) -> int:
        return len(self._entries)
