"""Redis-backed hits, invalidation propagation and a cross-process stampede, with peers.

    python -m benchmarks.bench_redis [--quick]

Starts its own redis-server on a free loopback port. Every row of a table is a median over
interleaved rounds; ratios are computed per round against the floor measured in that round.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import threading
import time
from typing import Any

import cachetools
import redis

from benchmarks._harness import environment, interleaved, table
from freshlink import Cache, Local
from freshlink.testing import RedisServer
from freshlink.testing.workloads import run_stampede

VALUE = {"id": 7, "borrower": 42, "amount": "1250.00", "link": "https://pay.example/l/7?t=abc"}


def hit_cases(url: str) -> tuple[list[tuple[str, Any]], list[Cache]]:
    raw = redis.Redis.from_url(url)
    raw.set("raw:loan:7", json.dumps(VALUE))

    def floor() -> Any:
        return json.loads(raw.get("raw:loan:7"))  # type: ignore[arg-type]

    def loader(loan_id: int) -> dict[str, Any]:
        return dict(VALUE)

    strict = Cache(url, namespace="b1", local=None)
    strict_l1 = Cache(url, namespace="b2", local=Local(mode="strict"))
    bounded = Cache(url, namespace="b3", local=Local(max_staleness=0.1))
    assert bounded.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    tags = ["loan:{loan_id}", "user:42"]
    f_strict = strict.cached(ttl=600, key="loan:{loan_id}", tags=tags)(loader)
    f_strict_l1 = strict_l1.cached(ttl=600, key="loan:{loan_id}", tags=tags)(loader)
    f_bounded = bounded.cached(ttl=600, key="loan:{loan_id}", tags=tags)(loader)
    ct = cachetools.cached(cachetools.TTLCache(10_000, 600), lock=threading.Lock())(loader)
    cases: list[tuple[str, Any]] = [
        ("raw redis-py GET + json.loads", floor),
        ("freshlink strict, no L1 (L2 hit)", lambda: f_strict(7)),
        ("freshlink strict L1 (generation check)", lambda: f_strict_l1(7)),
        ("freshlink bounded L1 hit", lambda: f_bounded(7)),
        ("cachetools.cached(TTLCache, lock=Lock())", lambda: ct(7)),
    ]
    try:
        from dogpile.cache import make_region

        region = make_region().configure(
            "dogpile.cache.redis", expiration_time=600, arguments={"url": url}
        )
        dp = region.cache_on_arguments()(loader)
        cases.append(("dogpile.cache redis region", lambda: dp(7)))
    except ImportError:
        pass
    for _name, fn in cases:
        fn()
        fn()
    return cases, [strict, strict_l1, bounded]


def client_side_cache_note(url: str) -> str:
    try:
        from redis.cache import CacheConfig

        r = redis.Redis.from_url(url, protocol=3, cache_config=CacheConfig())
        r.set("csc", "1")
        r.get("csc")
        return "redis-py client-side cache: available (not yet in this table)"
    except Exception as exc:  # redis-py refuses servers older than 7.4
        version = redis.Redis.from_url(url).info("server")["redis_version"]
        return (
            f"redis-py client-side cache: not measurable here, it refuses Redis {version} "
            f"({type(exc).__name__}: {exc})"
        )


def _listener_proc(url: str, ready: Any, out: Any, n: int) -> None:
    cache = Cache(url, namespace="prop", local=Local(max_staleness=0.1))
    got: list[tuple[int, float]] = []
    done = threading.Event()

    def heard(names: Any, values: Any) -> None:
        got.append((int(values[0]), time.monotonic()))
        if len(got) >= n:
            done.set()

    cache.backend.subscribe(heard)
    cache.backend.listener.alive.wait(10)  # type: ignore[attr-defined]
    ready.set()
    done.wait(60)
    out.put(got)
    cache.close()


def propagation(url: str, n: int) -> tuple[list[float], list[float]]:
    """Invalidation in one process -> heard by another process's channel (ms from start/ack)."""
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    p = ctx.Process(target=_listener_proc, args=(url, ready, out, n))
    p.start()
    assert ready.wait(30)
    writer = Cache(url, namespace="prop", local=None)
    sent: dict[int, tuple[float, float]] = {}
    for _ in range(n):
        t0 = time.monotonic()
        (v,) = writer.backend.invalidate([writer.tag_gen("loan:7")])
        sent[v] = (t0, time.monotonic())
        time.sleep(0.002)
    got = out.get(timeout=60)
    p.join(10)
    from_start = [(t - sent[v][0]) * 1000 for v, t in got if v in sent]
    from_ack = [(t - sent[v][1]) * 1000 for v, t in got if v in sent]
    writer.close()
    return from_start, from_ack


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    rounds, number = (5, 2000) if args.quick else (15, 5000)
    parts = [environment()]
    with RedisServer() as server:
        cases, opened = hit_cases(server.url)
        samples = interleaved(cases, rounds=rounds, number=number)
        for cache in opened:
            cache.close()
        samples = {k: [x / 1000 for x in v] for k, v in samples.items()}
        parts.append(
            table(
                samples,
                "raw redis-py GET + json.loads",
                unit="µs",
                title="Hit cost with Redis (per call, µs)",
            )
        )
        parts.append(client_side_cache_note(server.url))
        start, ack = propagation(server.url, 300 if args.quick else 2000)
        parts.append(
            "### Invalidation propagation to another process (ms)\n\n"
            "| measured from | p50 | p99 | max |\n|---|---:|---:|---:|\n"
            f"| invalidate() called | {statistics.median(start):.3f} | {pct(start, 0.99):.3f} "
            f"| {max(start):.3f} |\n"
            f"| invalidate() returned | {statistics.median(ack):.3f} | {pct(ack, 0.99):.3f} "
            f"| {max(ack):.3f} |"
        )
        rows = []
        for _ in range(1 if args.quick else 3):
            run = run_stampede(server.url, processes=4, threads=25, loader_time=0.05)
            lat = [x * 1000 for x in run.latencies]
            rows.append((run.loads, statistics.median(lat), pct(lat, 0.99)))
        parts.append(
            "### Stampede: 4 processes x 25 threads, one cold key, loader 50 ms\n\n"
            "| trial | loader runs | p50 ms | p99 ms | p99 / loader |\n|---|---:|---:|---:|---:|\n"
            + "\n".join(
                f"| {i + 1} | {loads} | {p50:.1f} | {p99:.1f} | {p99 / 50:.2f} |"
                for i, (loads, p50, p99) in enumerate(rows)
            )
        )
    out = "\n\n".join(parts)
    print(out)
    return out


if __name__ == "__main__":
    main()
