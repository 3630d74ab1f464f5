"""Cross-process invalidation seen by a *busy* reader: a process whose thread spins on hits.

An idle reader's listener thread gets the GIL at once; a thread that never blocks keeps it
for a whole switch interval (5 ms) per handoff. So this measures what a spinning reader
*returns*: a spawned process calls the cached function (or redis-py's client-side cached
GET) on one key in a tight loop and records, with ``time.monotonic()`` (one clock for every
process on Linux), when it first returns each new value. The writer (this process) changes
the value, records when its write returned, and waits 5-25 ms (random, so writes fall at
any phase of the pings and polls) before the next one. Latency = seen - write returned.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

KEY = 7
#: Calls between two looks at the clock: about 0.1 ms of L1 hits, or a few cached GETs.
SPIN_BATCH = {"freshlink": 256, "csc": 4}


def _runqueue_wait() -> float:
    """Seconds this thread has waited for a CPU while runnable (Linux), or NaN."""
    try:
        with open("/proc/thread-self/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan")


#: The source of truth of ``busy_value``, set in each process before it is cached.
_SOURCE: dict[str, Any] = {}


def busy_value(k: int) -> int:
    """The cached function, one module-level function in both processes: the same keys."""
    return int(_SOURCE["redis"].get(f"{_SOURCE['ns']}:src:{k}") or 0)


def _cached(cache: Any) -> Any:
    return cache.cached(ttl=600, key="busy:{k}", tags=["busy:{k}"])(busy_value)


def _spin(
    call: Callable[[], Any], batch: int, ready: Any, out: Any, timeout: float, n: int
) -> None:
    """Call ``call`` in a tight loop; report when each new value was first returned.

    Also reports the share of the run the reader spent runnable but waiting for a CPU: time
    the OS gave to other processes, which no library can make up for.
    """
    seen: list[tuple[Any, float]] = []
    old = call()
    calls = 0
    ready.set()
    waited = _runqueue_wait()
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        for _ in range(batch):
            v = call()
            if v != old:
                seen.append((v, time.monotonic()))
                old = v
        calls += batch
        now = time.monotonic()
        if old == n or len(seen) >= n or now > deadline:
            break
    elapsed = time.monotonic() - t0
    out.put((seen, calls / elapsed, (_runqueue_wait() - waited) / elapsed))


@dataclass
class Busy:
    """One busy case: latencies (ms), reader calls/s, caller drains, CPU wait."""

    lat: list[float]
    rate: float
    drains: Any
    waited: float  # share of the run the reader was runnable but not running (NaN: unknown)


def _freshlink_reader(url: str, ns: str, ready: Any, out: Any, timeout: float, n: int) -> None:
    import redis

    from freshlink import Cache, Local

    _SOURCE.update(redis=redis.Redis.from_url(url), ns=ns)
    cache = Cache(url, namespace=ns, local=Local(max_staleness=0.1))
    f = _cached(cache)
    assert cache.backend.listener.alive.wait(10)  # type: ignore[attr-defined]
    f(KEY)
    _spin(lambda: f(KEY), SPIN_BATCH["freshlink"], ready, out, timeout, n)
    out.put(getattr(cache.backend.listener, "caller_drains", None))
    cache.close()


def csc_client(url: str) -> tuple[Any, str]:
    """redis-py's client-side caching client, and a note (its version check lowered if needed).

    redis-py refuses servers older than 7.4 by version alone; CLIENT TRACKING, which it uses,
    is in Redis since 6.0. Against an older server the check is lowered and the note says so.
    """
    import redis
    from redis.cache import CacheConfig
    from redis.connection import CacheProxyConnection

    try:
        rc = redis.Redis.from_url(url, protocol=3, cache_config=CacheConfig())
        rc.ping()
        return rc, ""
    except redis.ConnectionError:
        version = redis.Redis.from_url(url).info("server")["redis_version"]
        CacheProxyConnection.MIN_ALLOWED_VERSION = "6.0.0"
        rc = redis.Redis.from_url(url, protocol=3, cache_config=CacheConfig())
        rc.ping()
        return rc, f"its Redis >= 7.4 check lowered to run on this {version} server"


def _csc_reader(url: str, ns: str, ready: Any, out: Any, timeout: float, n: int) -> None:
    rc, _ = csc_client(url)
    key = f"{ns}:csc:{KEY}"
    rc.get(key)
    _spin(lambda: int(rc.get(key) or 0), SPIN_BATCH["csc"], ready, out, timeout, n)
    out.put(None)
    rc.close()


def _run(
    target: Callable[..., None], url: str, ns: str, n: int, write: Callable[[int], Any]
) -> Busy:
    """What one busy case measured."""
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    timeout = n * 0.03 + 30
    p = ctx.Process(target=target, args=(url, ns, ready, out, timeout, n))
    p.start()
    try:
        assert ready.wait(60), "the busy reader did not start"
        time.sleep(0.05)
        returned: dict[int, float] = {}
        for i in range(1, n + 1):
            write(i)
            returned[i] = time.monotonic()
            time.sleep(random.uniform(0.005, 0.025))
        seen, rate, waited = out.get(timeout=timeout + 30)
        drains = out.get(timeout=30)
    finally:
        p.join(30)
        if p.is_alive():
            p.kill()
    lat = [(t - returned[v]) * 1000 for v, t in seen if v in returned]
    return Busy(lat, rate, drains, waited)


def freshlink_busy(url: str, n: int, *, write_through: bool) -> Busy:
    """freshlink bounded L1, busy reader; the writer writes through or invalidates a tag."""
    import redis

    from freshlink import Cache

    ns = f"busy-{'wt' if write_through else 'inv'}-{random.randrange(1 << 30)}"
    src = redis.Redis.from_url(url)
    src.set(f"{ns}:src:{KEY}", 0)
    _SOURCE.update(redis=src, ns=ns)
    writer = Cache(url, namespace=ns, local=None)
    f = _cached(writer)

    @writer.updates(f)
    def put(k: int, v: int) -> int:
        src.set(f"{ns}:src:{k}", v)
        return v

    def invalidate(v: int) -> None:
        src.set(f"{ns}:src:{KEY}", v)
        writer.invalidate(f"busy:{KEY}")

    try:
        return _run(
            _freshlink_reader, url, ns, n, (lambda v: put(KEY, v)) if write_through else invalidate
        )
    finally:
        writer.close()
        src.close()


def csc_busy(url: str, n: int) -> Busy:
    """redis-py client-side cache, busy reader; the writer SETs the key with a plain client."""
    import redis

    ns = f"busy-csc-{random.randrange(1 << 30)}"
    w = redis.Redis.from_url(url)
    w.set(f"{ns}:csc:{KEY}", 0)
    try:
        return _run(_csc_reader, url, ns, n, lambda v: w.set(f"{ns}:csc:{KEY}", v))
    finally:
        w.close()
