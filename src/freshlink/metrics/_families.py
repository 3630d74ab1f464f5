"""The Prometheus metric objects of one namespace in one registry, shared by its caches."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..errors import ConfigurationError
from ..events import logger

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.metrics_core import Metric

_M = TypeVar("_M", bound="MetricWrapperBase")

#: Histogram buckets of ``load_duration_seconds``: loaders are database or HTTP reads, often
#: around a millisecond, so the buckets start lower than Prometheus' default 5 ms.
LOAD_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


class Member(Protocol):
    """A cache's exporter as its metric set sees it: a label, and a flush before a scrape."""

    label: str

    def flush(self) -> None:
        """Move the counts since the last flush into the metrics."""


@dataclass(slots=True)
class Children:
    """The labelled counters of one function, resolved once."""

    l1_hit: Counter
    l2_hit: Counter
    miss: Counter
    stale: Counter
    loads: Counter
    refreshes: Counter
    stale_served: Counter
    errors: Counter
    remote_failures: Counter


class MetricSet:
    """The metric objects of one namespace in one registry, exposed by one collector.

    Created once per (registry, namespace) so several caches can share a registry (they are
    told apart by the ``cache`` label) without "Duplicated timeseries". The metric objects are
    not registered themselves: this collector flushes the attached caches, then yields them,
    so a scrape sees current counts without relying on the registry's collector order, and a
    restricted scrape (``?name[]=...``) flushes too.
    """

    def __init__(self, namespace: str) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        # Not registered one by one: this collector yields them (see the class docstring).
        def own(kind: type[_M], name: str, doc: str, labels: list[str], **kwargs: Any) -> _M:
            return kind(name, doc, labels, namespace=namespace, registry=None, **kwargs)

        fn = ["cache", "function"]
        self.requests = own(
            Counter,
            "requests",
            "Calls of cached functions by the tier that answered (l1, l2, none) and result "
            "(hit, miss, stale).",
            [*fn, "tier", "result"],
        )
        self.loads = own(Counter, "loads", "Loader calls on a miss.", fn)
        self.load_duration = own(
            Histogram,
            "load_duration_seconds",
            "Duration of loader calls on a miss, in seconds.",
            fn,
            buckets=LOAD_BUCKETS,
        )
        self.refreshes = own(
            Counter,
            "refreshes",
            "Background refreshes (refresh-ahead, XFetch, SWR) stored.",
            fn,
        )
        self.stale_served = own(
            Counter,
            "stale_served",
            "Stale values served (stale-while-revalidate or stale-if-error).",
            fn,
        )
        self.errors = own(
            Counter,
            "errors",
            "Loader, refresh and backend failures (function is empty for invalidations that "
            "could not be confirmed).",
            fn,
        )
        self.remote_failures = own(
            Counter,
            "remote_load_failures",
            "Loader failures in another process that callers here were waiting for (each "
            "waiter then takes the lease and loads once itself).",
            fn,
        )
        self.invalidations = own(
            Counter,
            "invalidations",
            "Invalidations confirmed by the backend.",
            ["cache"],
        )
        # Multiprocess aggregation: a dead worker's open circuit or L1 size must not be
        # reported for ever, so both gauges count live processes only ("live*" files are
        # removed by multiprocess.mark_process_dead).
        self.circuit_open = own(
            Gauge,
            "circuit_open",
            "1 while the backend circuit breaker is not closed, else 0.",
            ["cache"],
            multiprocess_mode="livemax",
        )
        self.l1_entries = own(
            Gauge,
            "l1_entries",
            "Entries in the in-process L1 cache (summed over live processes).",
            ["cache"],
            multiprocess_mode="livesum",
        )
        self.consistency = own(
            Counter,
            "consistency_checks",
            "Sampled L1 entries re-checked against the backend, by result (consistent, "
            "inconsistent).",
            ["cache", "result"],
        )
        self.all: tuple[Counter | Gauge | Histogram, ...] = (
            self.requests,
            self.loads,
            self.load_duration,
            self.refreshes,
            self.stale_served,
            self.errors,
            self.remote_failures,
            self.invalidations,
            self.circuit_open,
            self.l1_entries,
            self.consistency,
        )
        self.members: dict[str, Member] = {}
        self.lock = threading.Lock()

    def attach(self, member: Member) -> None:
        """Report ``member``'s cache here; its label must be new in this set."""
        with self.lock:
            if member.label in self.members:
                raise ConfigurationError(
                    f"a cache named {member.label!r} already reports to this registry; give "
                    f"each cache its own name (Cache(..., name='...'))"
                )
            self.members[member.label] = member

    def detach(self, member: Member) -> None:
        """Stop reporting ``member``'s cache (a no-op if another took its label)."""
        with self.lock:
            if self.members.get(member.label) is member:
                del self.members[member.label]

    def children(self, cache: str, fname: str) -> Children:
        """The labelled counters of one function of the cache labelled ``cache``."""
        return Children(
            l1_hit=self.requests.labels(cache, fname, "l1", "hit"),
            l2_hit=self.requests.labels(cache, fname, "l2", "hit"),
            miss=self.requests.labels(cache, fname, "none", "miss"),
            stale=self.requests.labels(cache, fname, "none", "stale"),
            loads=self.loads.labels(cache, fname),
            refreshes=self.refreshes.labels(cache, fname),
            stale_served=self.stale_served.labels(cache, fname),
            errors=self.errors.labels(cache, fname),
            remote_failures=self.remote_failures.labels(cache, fname),
        )

    def describe(self) -> Iterable[Metric]:
        """The metric families (so the registry can detect name clashes)."""
        for metric in self.all:
            yield from metric.describe()

    def collect(self) -> Iterable[Metric]:
        """Flush every attached cache, then yield the metric families."""
        with self.lock:
            members = list(self.members.values())
        for member in members:
            try:
                member.flush()
            except Exception:  # a broken cache must not break the whole scrape
                logger.exception("freshlink: flushing metrics of %s failed", member.label)
        for metric in self.all:
            yield from metric.collect()


_sets: weakref.WeakKeyDictionary[CollectorRegistry, dict[str, MetricSet]] = (
    weakref.WeakKeyDictionary()
)
_sets_lock = threading.Lock()


def metric_set(registry: CollectorRegistry, namespace: str) -> MetricSet:
    """The metric set of ``namespace`` in ``registry``, created and registered on first use."""
    with _sets_lock:
        by_namespace = _sets.setdefault(registry, {})
        found = by_namespace.get(namespace)
        if found is None:
            found = MetricSet(namespace)
            registry.register(found)  # raises on a clash with the application's own metrics
            by_namespace[namespace] = found
        return found
