"""Prometheus metrics: exact counts for scripted sequences, read from a fresh registry.

Multiprocess mode is exercised in subprocesses: prometheus_client chooses its value storage
when it is first imported, so ``PROMETHEUS_MULTIPROC_DIR`` must never be set in this process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from freshlink import Cache, Local, MissingDependencyError
from freshlink.backends.memory import MemoryBackend
from freshlink.breaker import CircuitBreaker
from freshlink.errors import ConfigurationError
from freshlink.metrics import PrometheusMetrics
from freshlink.testing import RedisServer

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class Source:
    """A loader that takes 2 ms of the injected clock and fails on demand."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.fail = False

    def __call__(self, x: int) -> int:
        self.clock.t += 0.002
        if self.fail:
            raise ConnectionError("database down")
        return x * 10


class Reader:
    """Sample values of one registry, with the ``cache`` label filled in."""

    def __init__(self, registry: CollectorRegistry, cache: str) -> None:
        self.registry = registry
        self.cache = cache

    def __call__(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, {"cache": self.cache, **labels})

    def requests(self, function: str, tier: str, result: str) -> float | None:
        return self("freshlink_requests_total", function=function, tier=tier, result=result)


@pytest.fixture
def metrics() -> Iterator[list[PrometheusMetrics]]:
    """PrometheusMetrics made by a test; closed (threads stopped) after it."""
    made: list[PrometheusMetrics] = []
    yield made
    for m in made:
        m.close()


def settle(cache: Cache) -> None:
    deadline = time.monotonic() + 5
    while cache.refresher.pending():
        assert time.monotonic() < deadline
        time.sleep(0.001)


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


# --------------------------------------------------------------------------- exact counts


def test_scripted_sequence_on_memory_gives_exact_counts(
    metrics: list[PrometheusMetrics],
) -> None:
    clock = Clock()
    src = Source(clock)
    cache = Cache(backend=MemoryBackend(clock=clock), clock=clock, monotonic=clock, name="mem")
    registry = CollectorRegistry()
    # No flush thread: every number below is flushed by the scrape itself.
    metrics.append(PrometheusMetrics(cache, registry, flush_interval=None))
    read = Reader(registry, "mem")

    @cache.cached(ttl=10, key="loan:{x}", tags=["loan:{x}"], stale_if_error=60)
    def get_loan(x: int) -> int:
        return src(x)

    loan = cache.specs[-1].fname

    @cache.cached(ttl=10)
    def broken() -> int:
        raise ValueError("bug in the loader")

    bad = cache.specs[-1].fname
    # Series exist before the first call, so rate() and ratios work from the start.
    assert read.requests(loan, "l1", "hit") == 0
    assert read.requests(bad, "none", "miss") == 0

    for x in (1, 2, 3):
        assert get_loan(x) == x * 10  # 3 misses, 3 loads
    for _ in range(5):
        assert get_loan(1) == 10  # 5 L1 hits: the first validates, the rest take the hot path
    assert cache.specs[0].l1_hits == 4  # the hot path really served most of them
    cache.invalidate("loan:1")  # 1 invalidation
    assert get_loan(1) == 10  # miss + load
    with pytest.raises(ValueError, match="bug"):
        broken()  # miss + error
    src.fail = True
    clock.t += 11  # loan 2 expired; the loader fails: stale-if-error serves the old value
    assert get_loan(2) == 20  # miss + error + stale served

    assert read.requests(loan, "none", "miss") == 5
    assert read.requests(loan, "l1", "hit") == 5
    assert read.requests(loan, "l2", "hit") == 0
    assert read.requests(loan, "none", "stale") == 1
    assert read("freshlink_loads_total", function=loan) == 4
    assert read("freshlink_errors_total", function=loan) == 1
    assert read("freshlink_stale_served_total", function=loan) == 1
    assert read("freshlink_refreshes_total", function=loan) == 0
    assert read.requests(bad, "none", "miss") == 1
    assert read("freshlink_errors_total", function=bad) == 1
    assert read("freshlink_loads_total", function=bad) == 0
    assert read("freshlink_invalidations_total") == 1
    # Every load took 2 ms of the injected clock.
    assert read("freshlink_load_duration_seconds_count", function=loan) == 4
    assert read("freshlink_load_duration_seconds_bucket", function=loan, le="0.001") == 0
    assert read("freshlink_load_duration_seconds_bucket", function=loan, le="0.0025") == 4
    assert read("freshlink_load_duration_seconds_sum", function=loan) == pytest.approx(0.008)
    assert read("freshlink_l1_entries") == len(cache.near or ()) == 3
    assert read("freshlink_circuit_open") == 0
    # A second scrape adds nothing: only differences are exported.
    assert read.requests(loan, "l1", "hit") == 5
    assert read("freshlink_invalidations_total") == 1


def test_refresh_ahead_counts_a_hit_and_a_refresh(metrics: list[PrometheusMetrics]) -> None:
    clock = Clock()
    src = Source(clock)
    cache = Cache(backend=MemoryBackend(clock=clock), clock=clock, monotonic=clock, name="ra")
    registry = CollectorRegistry()
    metrics.append(PrometheusMetrics(cache, registry, flush_interval=None))
    read = Reader(registry, "ra")

    @cache.cached(ttl=10, ahead=0.5)
    def get(x: int) -> int:
        return src(x)

    name = cache.specs[-1].fname
    get(1)
    clock.t += 6  # past 50 % of the TTL: served at once, refreshed in the background
    assert get(1) == 10
    settle(cache)
    assert read.requests(name, "l1", "hit") == 1
    assert read("freshlink_refreshes_total", function=name) == 1
    assert read("freshlink_loads_total", function=name) == 1  # refreshes are counted apart


def test_counts_start_when_metrics_are_attached(metrics: list[PrometheusMetrics]) -> None:
    cache = Cache(name="late")

    @cache.cached(ttl=60)
    def get(x: int) -> int:
        return x

    name = cache.specs[-1].fname
    for _ in range(4):
        get(1)  # hot-path hits are counted on the spec before any metrics exist
    registry = CollectorRegistry()
    metrics.append(PrometheusMetrics(cache, registry, flush_interval=None))
    get(1)
    get(2)
    read = Reader(registry, "late")
    assert read.requests(name, "l1", "hit") == 1
    assert read.requests(name, "none", "miss") == 1


def test_hot_path_stays_event_free_with_metrics_on(metrics: list[PrometheusMetrics]) -> None:
    cache = Cache(name="cheap")
    metrics.append(PrometheusMetrics(cache, CollectorRegistry(), flush_interval=None))
    # A "hit" hook would make every inlined L1 hit build and emit an Event.
    assert cache.events.hit == ()


@pytest.mark.redis
def test_l2_hits_on_a_strict_redis_cache(
    make_redis_cache: Callable[..., Cache], metrics: list[PrometheusMetrics]
) -> None:
    cache = make_redis_cache(local=None, name="strict")
    registry = CollectorRegistry()
    metrics.append(PrometheusMetrics(cache, registry, flush_interval=None))
    read = Reader(registry, "strict")

    @cache.cached(ttl=60, key="loan:{x}", tags=["loan:{x}"])
    def get(x: int) -> int:
        return x

    name = cache.specs[-1].fname
    get(1)
    for _ in range(3):
        get(1)
    cache.invalidate("loan:1")
    get(1)
    get(1)
    assert read.requests(name, "l2", "hit") == 4
    assert read.requests(name, "l1", "hit") == 0
    assert read.requests(name, "none", "miss") == 2
    assert read("freshlink_loads_total", function=name) == 2
    assert read("freshlink_invalidations_total") == 1
    assert read("freshlink_l1_entries") == 0
    assert read("freshlink_circuit_open") == 0


@pytest.mark.redis
def test_circuit_open_gauge_and_backend_errors(metrics: list[PrometheusMetrics]) -> None:
    server = RedisServer().start()
    url = server.url
    server.close()  # nothing listens on the port any more
    cache = Cache(
        url,
        namespace="down",
        local=None,
        breaker=CircuitBreaker(failures=1, reset_after=60, max_reset=60),
    )
    try:
        registry = CollectorRegistry()
        metrics.append(PrometheusMetrics(cache, registry, flush_interval=None))
        read = Reader(registry, "down")
        assert read("freshlink_circuit_open") == 0

        @cache.cached(ttl=60)
        def get(x: int) -> int:
            return x

        name = cache.specs[-1].fname
        assert get(1) == 1  # the read fails, the breaker opens, the loader answers
        assert get(1) == 1  # the circuit is open: no backend call, no second error
        assert read("freshlink_circuit_open") == 1
        assert read("freshlink_errors_total", function=name) == 1
        # While the backend is down every call is a miss answered by the loader.
        assert read("freshlink_loads_total", function=name) == 2
        assert read.requests(name, "none", "miss") == 2
    finally:
        cache.close()


# --------------------------------------------------------------------------- registries


def test_two_caches_share_one_registry(metrics: list[PrometheusMetrics]) -> None:
    registry = CollectorRegistry()
    a, b = Cache(name="a"), Cache(name="b")
    metrics.append(PrometheusMetrics(a, registry, flush_interval=None))
    metrics.append(PrometheusMetrics(b, registry, flush_interval=None))

    @a.cached(ttl=60)
    def fa(x: int) -> int:
        return x

    @b.cached(ttl=60)
    def fb(x: int) -> int:
        return x

    fa(1)
    fa(1)
    fb(1)
    fb(2)
    ra, rb = Reader(registry, "a"), Reader(registry, "b")
    assert ra("freshlink_loads_total", function=a.specs[0].fname) == 1
    assert rb("freshlink_loads_total", function=b.specs[0].fname) == 2
    assert ra("freshlink_l1_entries") == 1
    assert rb("freshlink_l1_entries") == 2
    with pytest.raises(ConfigurationError, match="already reports"):
        PrometheusMetrics(Cache(name="a"), registry, flush_interval=None)
    # Another namespace is another set of metric names: no clash either.
    metrics.append(PrometheusMetrics(Cache(name="a"), registry, "other", flush_interval=None))
    assert registry.get_sample_value("other_l1_entries", {"cache": "a"}) == 0


def test_close_keeps_counters_and_drops_gauges(metrics: list[PrometheusMetrics]) -> None:
    registry = CollectorRegistry()
    cache = Cache(name="c")
    m = PrometheusMetrics(cache, registry, flush_interval=0.01)

    @cache.cached(ttl=60)
    def get(x: int) -> int:
        return x

    get(1)
    get(1)
    m.close()
    m.close()  # idempotent
    read = Reader(registry, "c")
    assert read.requests(cache.specs[0].fname, "l1", "hit") == 1
    assert read("freshlink_l1_entries") is None
    assert not any(t.name.startswith("freshlink-") for t in _threads_of(m))
    # The name is free again.
    metrics.append(PrometheusMetrics(Cache(name="c"), registry, flush_interval=None))


def _threads_of(m: PrometheusMetrics) -> list[Any]:
    return [t for t in m._threads if t.is_alive()]


def test_flush_thread_exports_without_a_scrape(metrics: list[PrometheusMetrics]) -> None:
    registry = CollectorRegistry()
    cache = Cache(name="bg")
    m = PrometheusMetrics(cache, registry, flush_interval=0.01)
    metrics.append(m)

    @cache.cached(ttl=60)
    def get(x: int) -> int:
        return x

    get(1)

    def exported() -> bool:
        # The metric object itself, not the registry: a scrape would flush by itself.
        (family,) = m._set.loads.collect()
        return any(s.name == "freshlink_loads_total" and s.value == 1 for s in family.samples)

    assert wait_for(exported)


def test_bad_options_fail_at_start() -> None:
    cache = Cache()
    registry = CollectorRegistry()
    with pytest.raises(ConfigurationError, match="flush_interval"):
        PrometheusMetrics(cache, registry, flush_interval=0)
    with pytest.raises(ConfigurationError, match="consistency_interval"):
        PrometheusMetrics(cache, registry, consistency_interval=-1)
    with pytest.raises(ConfigurationError, match="consistency_samples"):
        PrometheusMetrics(cache, registry, consistency_samples=0)


def test_missing_prometheus_client_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'freshlink\[prometheus\]'"):
        PrometheusMetrics(Cache())


def run_python(code: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_import_is_lazy_and_nothing_registers_at_import() -> None:
    out = run_python(
        """
        import sys
        import freshlink
        freshlink.Cache()
        print(sorted(m for m in ("prometheus_client", "freshlink.metrics") if m in sys.modules))
        import freshlink.metrics
        from prometheus_client import REGISTRY
        print([m.name for m in REGISTRY.collect() if m.name.startswith("freshlink")])
        cache = freshlink.Cache(name="default")
        m = freshlink.metrics.PrometheusMetrics(cache)  # registry=None: the global one
        print(REGISTRY.get_sample_value("freshlink_l1_entries", {"cache": "default"}))
        m.close()
        """
    )
    assert out.split("\n")[:3] == ["[]", "[]", "0.0"]


# --------------------------------------------------------------------------- consistency


@pytest.mark.redis
def test_consistency_checker_on_a_bounded_redis_cache(
    make_redis_cache: Callable[..., Cache],
    redis_server: RedisServer,
    metrics: list[PrometheusMetrics],
) -> None:
    # A generous bound: the L1 must stay trusted between two pongs however loaded the machine.
    cache = make_redis_cache(local=Local(max_staleness=1.0), name="bounded")
    assert cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    registry = CollectorRegistry()
    m = PrometheusMetrics(cache, registry, flush_interval=None, consistency_samples=20)
    metrics.append(m)
    read = Reader(registry, "bounded")

    @cache.cached(ttl=600, key="loan:{x}", tags=["loan:{x}"])
    def get(x: int) -> int:
        return x

    for x in range(5):
        get(x)
    assert m.check_consistency() == (5, 0)
    assert read("freshlink_consistency_checks_total", result="consistent") == 5
    assert read("freshlink_consistency_checks_total", result="inconsistent") == 0
    # Another process's invalidation is not a violation, even if the sample reads the backend
    # before the channel message arrives here: L1 stops serving within the bound.
    writer = make_redis_cache(local=None, name="writer")
    writer.invalidate("loan:0")
    consistent, inconsistent = m.check_consistency()
    assert consistent in (4, 5)
    assert inconsistent == 0
    assert wait_for(lambda: m.check_consistency() == (4, 0))
    # A generation bumped behind freshlink's back (no message on the channel) leaves L1
    # serving an old value past the bound: exactly what the checker is there to catch.
    redis_server.cli("INCR", cache.keyspace.tag("loan:1"))
    assert m.check_consistency() == (3, 1)
    assert read("freshlink_consistency_checks_total", result="inconsistent") == 1
    assert cache.stats is not None
    assert cache.stats.inconsistent == 1
    assert read("freshlink_consistency_checks_total", result="consistent") == (
        cache.stats.consistent
    )


@pytest.mark.redis
def test_consistency_thread_samples_at_its_interval(
    make_redis_cache: Callable[..., Cache], metrics: list[PrometheusMetrics]
) -> None:
    cache = make_redis_cache(local=Local(max_staleness=1.0), name="thread")
    assert cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    registry = CollectorRegistry()
    metrics.append(
        PrometheusMetrics(cache, registry, flush_interval=None, consistency_interval=0.02)
    )

    @cache.cached(ttl=600)
    def get(x: int) -> int:
        return x

    get(1)
    read = Reader(registry, "thread")
    assert wait_for(
        lambda: (read("freshlink_consistency_checks_total", result="consistent") or 0) >= 3
    )
    assert read("freshlink_consistency_checks_total", result="inconsistent") == 0


def test_consistency_checker_skips_what_l1_would_not_serve(
    metrics: list[PrometheusMetrics],
) -> None:
    clock = Clock()
    cache = Cache(backend=MemoryBackend(clock=clock), clock=clock, monotonic=clock, name="m")
    m = PrometheusMetrics(cache, CollectorRegistry(), flush_interval=None)
    metrics.append(m)

    @cache.cached(ttl=10, tags=["t"])
    def get(x: int) -> int:
        return x

    get(1)
    get(2)
    assert m.check_consistency() == (2, 0)
    cache.invalidate("t")  # synchronous backend: L1 knows at once, nothing servable remains
    assert m.check_consistency() == (0, 0)
    get(1)
    clock.t += 1000  # expired: not servable either
    assert m.check_consistency() == (0, 0)
    assert PrometheusMetrics(
        Cache(local=None, name="nol1"), CollectorRegistry(), flush_interval=None
    ).check_consistency() == (0, 0)


# --------------------------------------------------------------------------- multiprocess

WORKER = """
import os, sys, time
from prometheus_client import CollectorRegistry
from freshlink import Cache
from freshlink.metrics import PrometheusMetrics

cache = Cache(name="mp")
m = PrometheusMetrics(cache, CollectorRegistry(), flush_interval=0.01)

@cache.cached(ttl=60)
def get(x):
    return x

for x in range(3):
    get(x)      # 3 misses, 3 loads
for _ in range(10):
    get(0)      # 10 L1 hits
if sys.argv[1] == "killed":
    # Exported by the flush thread alone: this worker dies without close() or atexit.
    time.sleep(0.3)
    os._exit(0)
if sys.argv[1] == "forked":
    # gunicorn preload_app: metrics made in the master, then fork(); nothing is counted twice.
    pid = os.fork()
    if pid == 0:
        get(0)
        get(7)  # the child: 1 hit, 1 miss
        m.close()
        os._exit(0)
    os.waitpid(pid, 0)
cache.delete("x")
m.close()
print(os.getpid())
"""


def run_worker(tmp_path: Path, mode: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, mode],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.strip()


def test_multiprocess_mode_aggregates_workers(tmp_path: Path) -> None:
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    run_worker(tmp_path, "killed")
    run_worker(tmp_path, "closed")
    run_worker(tmp_path, "forked")
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    fname = "__main__.get"

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, {"cache": "mp", **labels})

    assert value("freshlink_requests_total", function=fname, tier="l1", result="hit") == 31
    assert value("freshlink_requests_total", function=fname, tier="none", result="miss") == 10
    assert value("freshlink_loads_total", function=fname) == 10
    assert value("freshlink_load_duration_seconds_count", function=fname) == 10
    assert value("freshlink_invalidations_total") == 2
    # livesum: the killed worker never reset its gauge, and was not marked dead yet.
    assert value("freshlink_l1_entries") == 3
    assert value("freshlink_circuit_open") == 0
    # gunicorn's child_exit hook does this for each worker that exits.
    for f in tmp_path.glob("gauge_live*.db"):
        mark_process_dead(int(f.stem.rsplit("_", 1)[1]), str(tmp_path))
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    assert value("freshlink_l1_entries") is None
    assert value("freshlink_requests_total", function=fname, tier="l1", result="hit") == 31
