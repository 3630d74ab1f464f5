"""Prometheus metrics of a cache: requests by tier and result, loads, errors, L1 coherence.

``PrometheusMetrics(cache, registry)`` never touches the hot path. The cache already counts
what it does (:meth:`freshlink.Cache.enable_stats`; L1 hits served inline are one integer
increment on the function's spec); this module moves the *differences* since the last flush
into real Prometheus counters:

* at scrape time: the metrics are exposed by one collector per registry whose ``collect()``
  flushes every cache attached to it before yielding the metrics, so a scrape is never behind;
* every ``flush_interval`` from a daemon thread: that is what makes gunicorn's multiprocess
  mode work, where each worker writes its counters to files that the scraping process reads
  (nobody scrapes the worker itself).

Load durations, circuit state and consistency checks are written as they happen: they are off
the hot path (a load already costs a loader call).

The consistency checker (``consistency_interval=``) is the Polaris idea (Meta, "Cache made
consistent"): sample entries L1 would serve right now and re-read their generations from the
backend. A mismatch that L1 would *still* serve after the mode's staleness bound is a
violation of the guarantees and is counted as ``inconsistent``.
"""

from __future__ import annotations

from ._exporter import PrometheusMetrics
from ._families import LOAD_BUCKETS

__all__ = ["LOAD_BUCKETS", "PrometheusMetrics"]
