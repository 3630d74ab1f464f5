"""Counters of what a cache did, per function: the numbers behind metrics and ``stats``.

Counting is opt-in (:meth:`freshlink.Cache.enable_stats`) and rides on the events, except for
L1 hits served by the inlined hot path, which only bump an integer on the function's spec
(always on: about 20 ns, so the hot path never builds an event object for a metric).
Increments from several threads may very rarely lose one under the GIL; these are
operational counters, not an audit log.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from .events import Event, Events

__all__ = ["CacheStats", "FunctionStats"]


class _Counted(Protocol):
    """A decorated function's spec, as far as stats read it."""

    fname: str
    l1_hits: int


@dataclass
class FunctionStats:
    """Counters of one cached function (or of the low-level API, as ``"get"``/``"set"``)."""

    l1_hits: int = 0
    l2_hits: int = 0
    misses: int = 0
    loads: int = 0
    load_seconds: float = 0.0
    stale_served: int = 0
    refreshes: int = 0
    errors: int = 0
    remote_failures: int = 0

    @property
    def hits(self) -> int:
        """L1 plus L2 hits."""
        return self.l1_hits + self.l2_hits


@dataclass
class CacheStats:
    """Per-function counters of one cache, plus cache-wide ones."""

    events: Events
    #: The cache's decorated functions (their hot-path L1 hits are counted on them).
    specs: Sequence[_Counted]
    functions: dict[str, FunctionStats] = field(default_factory=dict)
    invalidations: int = 0
    errors: int = 0
    consistent: int = 0
    inconsistent: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def attach(self) -> None:
        """Subscribe to the cache's events (hits are reported by the cache, see :meth:`hit`)."""
        # Not to "hit": a hit hook makes the inlined hot path build and emit an event per L1
        # hit (and it already counts those on the spec, so they would be counted twice).
        ev = self.events
        for name in (
            "miss",
            "load",
            "stale_served",
            "refresh",
            "error",
            "invalidation",
            "remote_failure",
        ):
            ev.on(name, self._on_event)

    def hit(self, function: str, tier: str) -> None:
        """Count a hit served by the full read path (hot-path L1 hits are on the spec)."""
        st = self.of(function)
        if tier == "l1":
            st.l1_hits += 1
        else:
            st.l2_hits += 1

    def of(self, function: str) -> FunctionStats:
        """The counters of ``function`` (created on first use)."""
        st = self.functions.get(function)
        if st is None:
            with self._lock:
                st = self.functions.setdefault(function, FunctionStats())
        return st

    def _on_event(self, e: Event) -> None:
        name = e.name
        if name == "invalidation":
            self.invalidations += 1
            return
        if e.function is None:
            if name == "error":
                self.errors += 1
            return
        st = self.of(e.function)
        if name == "miss":
            st.misses += 1
        elif name == "load":
            st.loads += 1
            st.load_seconds += e.duration or 0.0
        elif name == "stale_served":
            st.stale_served += 1
        elif name == "refresh":
            st.refreshes += 1
        elif name == "remote_failure":
            st.remote_failures += 1
        elif name == "error":
            st.errors += 1
            self.errors += 1

    def snapshot(self) -> dict[str, FunctionStats]:
        """Counters per function, with the hot path's L1 hits folded in."""
        out = {name: FunctionStats(**vars(st)) for name, st in self.functions.items()}
        for spec in self.specs:
            if spec.l1_hits:
                st = out.setdefault(spec.fname, FunctionStats())
                st.l1_hits += spec.l1_hits
        return out

    def totals(self) -> FunctionStats:
        """All functions added up."""
        total = FunctionStats()
        for st in self.snapshot().values():
            for name, value in vars(st).items():
                setattr(total, name, getattr(total, name) + value)
        return total
