"""Prometheus metrics of the outbox relay (prometheus_client is imported only here)."""

from __future__ import annotations

import importlib
from typing import Any

from .._payload import require_prometheus
from ._outbox import RelayPass

__all__ = ["RelayMetrics"]


class RelayMetrics:
    """The relay's metrics in ``registry``, updated with each pass (:meth:`observe`).

    * ``freshlink_outbox_pending``: rows waiting after the pass;
    * ``freshlink_outbox_oldest_pending_seconds``: the age of the oldest of them (alert when
      it exceeds the relay's interval plus its grace: the bound after a crash);
    * ``freshlink_outbox_applied_total`` / ``freshlink_outbox_failed_total``: rows applied, and
      namespaces whose invalidation could not be confirmed, over the relay's life.
    """

    def __init__(self, registry: Any) -> None:
        require_prometheus()  # MissingDependencyError naming the extra, if it is missing
        prometheus: Any = importlib.import_module("prometheus_client")
        self.pending = prometheus.Gauge(
            "freshlink_outbox_pending", "Outbox rows waiting for the relay", registry=registry
        )
        self.oldest = prometheus.Gauge(
            "freshlink_outbox_oldest_pending_seconds",
            "Age of the oldest outbox row waiting for the relay",
            registry=registry,
        )
        self.applied = prometheus.Counter(
            "freshlink_outbox_applied", "Outbox rows the relay applied", registry=registry
        )
        self.failed = prometheus.Counter(
            "freshlink_outbox_failed",
            "Relay invalidations (one per namespace and pass) not confirmed",
            registry=registry,
        )

    def observe(self, done: RelayPass) -> None:
        """Record one pass."""
        self.pending.set(done.pending.rows)
        self.oldest.set(done.pending.oldest_age)
        self.applied.inc(done.applied)
        self.failed.inc(done.failed)
