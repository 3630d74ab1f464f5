"""The OpenTelemetry instruments of the caches reporting to one meter provider.

The counters are *observable*: like :class:`freshlink.metrics.PrometheusMetrics`, they read the
counts the cache keeps anyway (:meth:`freshlink.Cache.enable_stats`; an L1 hit served inline
is one integer increment) when the metric reader collects, so a hit costs no more with
metrics on than off. Only load durations are recorded as they happen (off the hit path).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from .. import __version__
from ..errors import ConfigurationError
from ..metrics import LOAD_BUCKETS
from ..stats import CacheStats, FunctionStats

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

    from ..cache import Cache

__all__ = ["SCOPE", "Instruments", "Member", "instruments"]

#: The instrumentation scope's name (of the tracer and the meter).
SCOPE = "freshlink"
CACHE, FUNCTION, TIER, RESULT = (
    "freshlink.cache",
    "freshlink.function",
    "freshlink.tier",
    "freshlink.result",
)

# (instrument, unit, description, the count per function, or None: cache-wide).
_PER_FUNCTION: tuple[tuple[str, str, str, Callable[[FunctionStats], int]], ...] = (
    ("freshlink.loads", "{load}", "Loader calls on a miss.", lambda s: s.loads),
    (
        "freshlink.refreshes",
        "{refresh}",
        "Background refreshes (refresh-ahead, XFetch, SWR) stored.",
        lambda s: s.refreshes,
    ),
    (
        "freshlink.stale_served",
        "{value}",
        "Stale values served (stale-while-revalidate or stale-if-error).",
        lambda s: s.stale_served,
    ),
    (
        "freshlink.remote_load_failures",
        "{failure}",
        "Loader failures in another process that callers here were waiting for.",
        lambda s: s.remote_failures,
    ),
)


class Member(Protocol):
    """A cache's instrumentation as its instrument set sees it."""

    label: str
    cache: Cache

    def counts(self) -> tuple[dict[str, FunctionStats], int, int]:
        """Counts since instrumented: per function, invalidations, errors of no function."""


class Instruments:
    """The instruments of one meter provider, shared by the caches that report to it.

    Shared because the SDK returns an instrument created twice under one name without the
    second one's callbacks: every cache must report through the first.
    """

    def __init__(self, provider: MeterProvider) -> None:
        from opentelemetry.metrics import Observation

        self._observation = Observation
        meter = provider.get_meter(SCOPE, __version__)
        self.members: dict[str, Member] = {}
        self.lock = threading.Lock()
        meter.create_observable_counter(
            "freshlink.requests",
            [self._requests],
            "{request}",
            "Calls of cached functions by the tier that answered (l1, l2, none) and result "
            "(hit, miss, stale).",
        )
        for name, unit, doc, count in _PER_FUNCTION:
            meter.create_observable_counter(name, [self._per_function(count)], unit, doc)
        meter.create_observable_counter(
            "freshlink.errors",
            [self._errors],
            "{error}",
            "Loader, refresh and backend failures (function is empty for invalidations that "
            "could not be confirmed).",
        )
        meter.create_observable_counter(
            "freshlink.invalidations",
            [self._invalidations],
            "{invalidation}",
            "Invalidations confirmed by the backend.",
        )
        self.load_duration = meter.create_histogram(
            "freshlink.load.duration",
            "s",
            "Duration of loader calls on a miss.",
            explicit_bucket_boundaries_advisory=LOAD_BUCKETS,
        )
        meter.create_observable_gauge(
            "freshlink.circuit_open",
            [self._circuits],
            "1",
            "1 while the backend circuit breaker is not closed, else 0.",
        )
        meter.create_observable_gauge(
            "freshlink.l1.entries",
            [self._entries],
            "{entry}",
            "Entries in the process's L1 cache.",
        )

    def attach(self, member: Member) -> None:
        """Report ``member``'s cache here; its name must be new to this meter provider."""
        with self.lock:
            if member.label in self.members:
                raise ConfigurationError(
                    f"a cache named {member.label!r} already reports to this meter provider; "
                    f"give each cache its own name (Cache(..., name='...'))"
                )
            self.members[member.label] = member

    def detach(self, member: Member) -> None:
        """Stop reporting ``member``'s cache."""
        with self.lock:
            if self.members.get(member.label) is member:
                del self.members[member.label]

    # -- callbacks, called by the metric reader

    def _live(self) -> list[Member]:
        with self.lock:
            return list(self.members.values())

    def _functions(self) -> Iterator[tuple[Member, str, FunctionStats]]:
        for m in self._live():
            for fname, st in m.counts()[0].items():
                yield m, fname, st

    def _requests(self, options: CallbackOptions) -> Iterable[Observation]:
        obs = self._observation
        for m, fname, st in self._functions():
            base = {CACHE: m.label, FUNCTION: fname}
            yield obs(st.l1_hits, {**base, TIER: "l1", RESULT: "hit"})
            yield obs(st.l2_hits, {**base, TIER: "l2", RESULT: "hit"})
            yield obs(st.misses, {**base, TIER: "none", RESULT: "miss"})
            yield obs(st.stale_served, {**base, TIER: "none", RESULT: "stale"})

    def _per_function(
        self, count: Callable[[FunctionStats], int]
    ) -> Callable[[CallbackOptions], Iterable[Observation]]:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            for m, fname, st in self._functions():
                yield self._observation(count(st), {CACHE: m.label, FUNCTION: fname})

        return observe

    def _errors(self, options: CallbackOptions) -> Iterable[Observation]:
        for m in self._live():
            functions, _invalidations, cache_errors = m.counts()
            for fname, st in functions.items():
                yield self._observation(st.errors, {CACHE: m.label, FUNCTION: fname})
            yield self._observation(cache_errors, {CACHE: m.label, FUNCTION: ""})

    def _invalidations(self, options: CallbackOptions) -> Iterable[Observation]:
        for m in self._live():
            yield self._observation(m.counts()[1], {CACHE: m.label})

    def _circuits(self, options: CallbackOptions) -> Iterable[Observation]:
        for m in self._live():
            breaker = m.cache.breaker
            is_open = breaker is not None and breaker.state != "closed"
            yield self._observation(1 if is_open else 0, {CACHE: m.label})

    def _entries(self, options: CallbackOptions) -> Iterable[Observation]:
        for m in self._live():
            near = m.cache.near
            yield self._observation(0 if near is None else len(near), {CACHE: m.label})


_sets: weakref.WeakKeyDictionary[Any, Instruments] = weakref.WeakKeyDictionary()
_sets_lock = threading.Lock()


def instruments(provider: MeterProvider) -> Instruments:
    """The instrument set of ``provider``, created on first use."""
    with _sets_lock:
        found = _sets.get(provider)
        if found is None:
            found = _sets[provider] = Instruments(provider)
        return found


class Baseline:
    """A cache's counts at the moment it was instrumented, subtracted from later ones.

    Hits served inline are counted on the specs since decoration, misses only since stats
    were enabled: reporting from the instrumentation on keeps both from one origin.
    """

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.stats: CacheStats = cache.enable_stats()
        self.start = self._raw()

    def _raw(self) -> tuple[dict[str, FunctionStats], int, int]:
        stats = self.stats
        # Totals first: "errors of no function" (total minus the functions') can then only
        # be under-counted while a function's error is being recorded, never over-counted.
        total_errors, invalidations = stats.errors, stats.invalidations
        snap = stats.snapshot()
        for spec in self.cache.specs:  # every decorated function has series from the start
            snap.setdefault(spec.fname, FunctionStats())
        return snap, invalidations, total_errors - sum(st.errors for st in snap.values())

    def counts(self) -> tuple[dict[str, FunctionStats], int, int]:
        """Per-function counts, invalidations and errors of no function, since the start."""
        snap, invalidations, cache_errors = self._raw()
        before, inv0, err0 = self.start
        out: dict[str, FunctionStats] = {}
        for fname, now in snap.items():
            was = before.get(fname)
            if was is None:
                out[fname] = now
            else:
                out[fname] = FunctionStats(**{k: v - getattr(was, k) for k, v in vars(now).items()})
        return out, invalidations - inv0, max(cache_errors - err0, 0)
