"""``PrometheusMetrics``: moves one cache's counts into its metric set; fork and exit hooks."""

from __future__ import annotations

import atexit
import os
import random
import threading
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from ..errors import BackendError, ConfigurationError, MissingDependencyError
from ..events import Event, logger
from ..stats import FunctionStats
from ._families import Children, metric_set

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from ..cache import Cache
    from ..local import NearEntry

# How long after its backend read a mismatching L1 entry is re-checked, on top of the mode's
# staleness bound: the sample may have seen an invalidation between its backend write and its
# acknowledgement (the writer's own L1 learns it just before invalidate() returns).
_RECHECK_GRACE = 0.05


def _require_prometheus() -> None:
    try:
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            "freshlink.metrics needs prometheus_client: pip install 'freshlink[prometheus]'"
        ) from exc


class PrometheusMetrics:
    """Export one cache's counters, gauges and consistency checks to a Prometheus registry.

    ``registry=None`` means ``prometheus_client.REGISTRY``. Call :meth:`close` (or use it as a
    context manager) to stop its threads; counts not yet flushed are flushed at exit too.
    """

    def __init__(
        self,
        cache: Cache,
        registry: CollectorRegistry | None = None,
        namespace: str = "freshlink",
        *,
        flush_interval: float | None = 1.0,
        consistency_interval: float | None = None,
        consistency_samples: int = 20,
    ) -> None:
        _require_prometheus()
        from prometheus_client import REGISTRY

        if flush_interval is not None and not flush_interval > 0:
            raise ConfigurationError(
                f"flush_interval must be > 0 seconds or None, got {flush_interval!r}"
            )
        if consistency_interval is not None and not consistency_interval > 0:
            raise ConfigurationError(
                f"consistency_interval must be > 0 seconds or None, got {consistency_interval!r}"
            )
        if not isinstance(consistency_samples, int) or consistency_samples < 1:
            raise ConfigurationError(
                f"consistency_samples must be a positive int, got {consistency_samples!r}"
            )
        self.cache = cache
        self.registry = REGISTRY if registry is None else registry
        self.namespace = namespace
        self.label = cache.name
        self.flush_interval = flush_interval
        self.consistency_interval = consistency_interval
        self.consistency_samples = consistency_samples
        self.stats = cache.enable_stats()
        self._rng = random.Random()
        # Held while counts move into Prometheus (and across fork(), see _before_fork).
        self._lock = threading.Lock()
        self._seen: dict[str, FunctionStats] = {}
        self._children: dict[str, Children] = {}
        self._durations: dict[str, Histogram] = {}
        self._invalidations_seen = 0
        self._cache_errors_seen = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._set = metric_set(self.registry, namespace)
        self._set.attach(self)
        m, label = self._set, self.label
        self._invalidations = m.invalidations.labels(label)
        self._cache_errors: Counter | None = None
        self._circuit = m.circuit_open.labels(label)
        self._entries = m.l1_entries.labels(label)
        self._consistent = m.consistency.labels(label, "consistent")
        self._inconsistent = m.consistency.labels(label, "inconsistent")
        self._hooks: list[tuple[str, Callable[[Event], None]]] = [
            ("load", self._on_load),
            ("circuit_open", self._on_circuit),
            ("circuit_close", self._on_circuit),
        ]
        for name, hook in self._hooks:
            cache.events.on(name, hook)
        self._baseline()
        self.flush()
        _live.add(self)
        self._start_threads()

    # ------------------------------------------------------------------ flushing

    def _baseline(self) -> None:
        # Counted from now on: hot-path L1 hits are counted on the specs since decoration,
        # misses only since stats were enabled; exporting those would mix two origins.
        stats = self.stats
        total_errors, self._invalidations_seen = stats.errors, stats.invalidations
        self._seen = stats.snapshot()
        self._cache_errors_seen = total_errors - sum(st.errors for st in self._seen.values())

    def flush(self) -> None:
        """Move the counts since the last flush into the Prometheus counters; update gauges."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        stats = self.stats
        # Cache-wide totals are read before the per-function counts: a function's error is
        # counted on the function first, so "errors without a function" (total minus the
        # functions') can only be under-estimated here, never over-counted.
        total_errors = stats.errors
        invalidations = stats.invalidations
        snap = stats.snapshot()
        for spec in self.cache.specs:  # every decorated function has series from the start
            self._of(spec.fname)
        seen = self._seen
        function_errors = 0
        for fname, now in snap.items():
            before = seen.get(fname) or FunctionStats()
            ch = self._of(fname)
            function_errors += now.errors
            _inc(ch.l1_hit, now.l1_hits - before.l1_hits)
            _inc(ch.l2_hit, now.l2_hits - before.l2_hits)
            _inc(ch.miss, now.misses - before.misses)
            _inc(ch.stale, now.stale_served - before.stale_served)
            _inc(ch.loads, now.loads - before.loads)
            _inc(ch.refreshes, now.refreshes - before.refreshes)
            _inc(ch.stale_served, now.stale_served - before.stale_served)
            _inc(ch.errors, now.errors - before.errors)
            _inc(ch.remote_failures, now.remote_failures - before.remote_failures)
        self._seen = snap
        if invalidations > self._invalidations_seen:
            self._invalidations.inc(invalidations - self._invalidations_seen)
            self._invalidations_seen = invalidations
        cache_errors = total_errors - function_errors
        if cache_errors > self._cache_errors_seen:
            if self._cache_errors is None:
                self._cache_errors = self._set.errors.labels(self.label, "")
            self._cache_errors.inc(cache_errors - self._cache_errors_seen)
            self._cache_errors_seen = cache_errors
        near = self.cache.near
        self._entries.set(0 if near is None else len(near))
        breaker = self.cache.breaker
        # Half-open is still "not healed": the gauge drops to 0 only when the circuit closes.
        self._circuit.set(0 if breaker is None or breaker.state == "closed" else 1)

    def _of(self, fname: str) -> Children:
        ch = self._children.get(fname)
        if ch is None:
            ch = self._children[fname] = self._set.children(self.label, fname)
        return ch

    # ------------------------------------------------------------------ event hooks

    def _on_load(self, e: Event) -> None:
        if e.function is None or e.duration is None:
            return
        hist = self._durations.get(e.function)
        if hist is None:
            hist = self._durations.setdefault(
                e.function, self._set.load_duration.labels(self.label, e.function)
            )
        hist.observe(e.duration)

    def _on_circuit(self, e: Event) -> None:
        self._circuit.set(1 if e.name == "circuit_open" else 0)

    # ------------------------------------------------------------------ consistency

    def check_consistency(self) -> tuple[int, int]:
        """Re-check up to ``consistency_samples`` servable L1 entries; (consistent, inconsistent).

        An entry whose generations differ from the backend's is re-checked after the L1's
        staleness bound: only if L1 would still serve it then is it counted inconsistent.
        Entries whose backend read fails are skipped, not counted.
        """
        cache, near = self.cache, self.cache.near
        if near is None:
            return 0, 0
        try:
            keys: list[Hashable] = list(near.data)
        except RuntimeError:  # resized by another thread while copying: try next round
            return 0, 0
        consistent = 0
        suspects: list[tuple[Hashable, NearEntry]] = []
        for key in self._rng.sample(keys, min(len(keys), self.consistency_samples)):
            e = near.get(key, cache.monotonic())
            if e is None:
                continue  # not servable now: nothing L1 could get wrong
            try:
                current = cache.backend.current(e.names)
            except BackendError:
                continue
            if current == e.stamps:
                consistent += 1
            else:
                suspects.append((key, e))
        inconsistent = 0
        if suspects:
            local = cache.local
            bound = local.max_staleness if local is not None and local.mode == "bounded" else 0
            if self._stop.wait(bound + _RECHECK_GRACE):
                return consistent, 0  # closing: do not count half-checked samples
            for key, e in suspects:
                if near.get(key, cache.monotonic()) is e:
                    inconsistent += 1
                else:
                    consistent += 1
        with self._lock:  # not mid-write to Prometheus across a fork (see _before_fork)
            _inc(self._consistent, consistent)
            _inc(self._inconsistent, inconsistent)
        self.stats.consistent += consistent
        self.stats.inconsistent += inconsistent
        if inconsistent:
            logger.error(
                "freshlink: %d L1 entries of %s still served after their generations changed",
                inconsistent,
                self.label,
                extra={"freshlink_event": "inconsistent", "freshlink_cache": self.label},
            )
        return consistent, inconsistent

    # ------------------------------------------------------------------ threads, lifecycle

    def _start_threads(self) -> None:
        self._stop = threading.Event()
        self._threads = []
        loops: list[tuple[str, float | None, Callable[[], object]]] = [
            ("freshlink-metrics", self.flush_interval, self.flush),
            ("freshlink-consistency", self.consistency_interval, self.check_consistency),
        ]
        for name, interval, job in loops:
            if interval is not None:
                t = threading.Thread(
                    target=_every, args=(self._stop, interval, job), name=name, daemon=True
                )
                t.start()
                self._threads.append(t)

    def close(self) -> None:
        """Stop the threads, flush once more and detach from the cache (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout=5)
        for name, hook in self._hooks:
            self.cache.events.off(name, hook)
        self.flush()
        _live.discard(self)
        self._set.detach(self)
        # Counters stay (they only ever grow); a closed cache's gauges would report a size
        # and a circuit state that no longer exist.
        for gauge in (self._set.circuit_open, self._set.l1_entries):
            gauge.labels(self.label).set(0)
            gauge.remove(self.label)

    def __enter__(self) -> PrometheusMetrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PrometheusMetrics({self.cache!r}, namespace={self.namespace!r})"

    def _before_fork(self) -> None:
        # Flushed and locked across fork(): the child then inherits "already exported" equal
        # to the counts (a forked worker must not re-export the parent's counts into its own
        # multiprocess files) and no thread of ours is inside prometheus_client's lock.
        self._lock.acquire()
        try:
            self._flush()
        except Exception:  # the fork must go on; the child re-exports at worst a few counts
            logger.exception("freshlink: metrics flush before fork() failed")

    def _after_fork_parent(self) -> None:
        self._lock.release()

    def _after_fork_child(self) -> None:
        # Threads do not survive fork() (gunicorn with preload_app): start them again.
        self._lock = threading.Lock()
        self._start_threads()


def _inc(counter: Counter, amount: int) -> None:
    if amount > 0:
        counter.inc(amount)


def _every(stop: threading.Event, interval: float, job: Callable[[], object]) -> None:
    while not stop.wait(interval):
        try:
            job()
        except Exception:  # keep reporting: one failed round must not end the thread
            logger.exception("freshlink: metrics job %r failed", job)


_live: weakref.WeakSet[PrometheusMetrics] = weakref.WeakSet()


def _flush_all_at_exit() -> None:
    # A worker that exits between two flushes would otherwise lose up to flush_interval of
    # counts (its multiprocess files are read after it is gone).
    for m in list(_live):
        try:
            m.flush()
        except Exception:
            logger.debug("freshlink: final metrics flush failed", exc_info=True)


# The instances locked before a fork(): exactly these are unlocked after it, even if another
# thread created or closed one meanwhile.
_forking: list[PrometheusMetrics] = []


def _before_fork() -> None:
    _forking[:] = list(_live)
    for m in _forking:
        m._before_fork()


def _after_fork_parent() -> None:
    for m in _forking:
        m._after_fork_parent()
    _forking.clear()


def _after_fork_child() -> None:
    for m in _forking:
        m._after_fork_child()
    _forking.clear()


atexit.register(_flush_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child
    )
