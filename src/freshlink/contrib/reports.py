"""Users' "this looks stale" reports: the refreshes registered per entry name, and their counts.

Both plugins keep one :class:`StaleReporters` registry (Flask per extension, Django per
process) and one :class:`StaleReports` counter per Cache.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from ..errors import ConfigurationError

__all__ = ["StaleReporters", "StaleReports"]

F = TypeVar("F", bound=Callable[..., object])


class StaleReporters(Mapping[str, Callable[..., object]]):
    """The refresh to run per entry name when a user reports that entry as stale."""

    def __init__(self) -> None:
        self._reporters: dict[str, Callable[..., object]] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator: run the function when the entry ``name`` is reported as stale."""
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"stale_reporter() needs a non-empty name, got {name!r}")

        def register(func: F) -> F:
            self._reporters[name] = func
            return func

        return register

    def __getitem__(self, name: str) -> Callable[..., object]:
        return self._reporters[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._reporters)

    def __len__(self) -> int:
        return len(self._reporters)


# One Counter per registry: two apps (or a reset of Django settings) reporting into the same
# registry must share it, because registering the same metric name twice raises.
_report_counters: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_counters_lock = threading.Lock()


class StaleReports:
    """Counts "this looks stale" reports per entry name, and in Prometheus if given a registry."""

    def __init__(self, cache_name: str, registry: Any = None) -> None:
        self.cache_name = cache_name
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._counter: Any = None
        if registry is not None:
            with _counters_lock:
                counter = _report_counters.get(registry)
                if counter is None:
                    from prometheus_client import Counter

                    counter = Counter(
                        "freshlink_stale_reports",
                        "Users' reports that a page looked stale (each forced a refresh).",
                        ["cache", "name"],
                        registry=registry,
                    )
                    _report_counters[registry] = counter
            self._counter = counter

    def count(self, name: str) -> None:
        """Record one report for the entry ``name``."""
        with self._lock:
            self.counts[name] = self.counts.get(name, 0) + 1
        if self._counter is not None:
            self._counter.labels(self.cache_name, name).inc()

    def total(self) -> int:
        """All reports so far."""
        return sum(self.counts.values())
