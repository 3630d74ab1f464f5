"""Per-hit cost of Prometheus metrics: the same hits with metrics off and on, same run.

python -m benchmarks.bench_metrics [--rounds 15] [--number 200000] [--redis-number 5000]

Metrics "on" is ``PrometheusMetrics(cache, CollectorRegistry())`` with its flush thread
running at the default 1 s interval, as in production. Starts its own redis-server for the L2
rows. Goal: at most 1.15x the cost of the same hit with metrics off.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

from prometheus_client import CollectorRegistry

from benchmarks._harness import environment, interleaved, table
from freshlink import Cache
from freshlink.metrics import PrometheusMetrics
from freshlink.testing import RedisServer

VALUE = {"id": 7, "borrower": 42, "amount": "1250.00"}


def loader(loan_id: int) -> dict[str, Any]:
    return dict(VALUE, id=loan_id)


def pair(
    make: Any, label: str
) -> tuple[list[tuple[str, Any]], list[Cache], list[PrometheusMetrics]]:
    """The same cached function on two caches, one of them exporting metrics."""
    off, on = make("off"), make("on")
    metrics = PrometheusMetrics(on, CollectorRegistry())
    tags = ["loan:{loan_id}", "user:42"]
    f_off = off.cached(ttl=600, key="loan:{loan_id}", tags=tags)(loader)
    f_on = on.cached(ttl=600, key="loan:{loan_id}", tags=tags)(loader)
    for f in (f_off, f_on):
        f(7)
        f(7)
    cases = [(f"{label}, metrics off", lambda: f_off(7)), (f"{label}, metrics on", lambda: f_on(7))]
    return cases, [off, on], [metrics]


def ratio(samples: dict[str, list[float]]) -> float:
    """Median of the per-round on/off ratios."""
    off, on = samples.values()
    return statistics.median(b / a for a, b in zip(off, on, strict=True))


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--number", type=int, default=200_000)
    ap.add_argument("--redis-number", type=int, default=5_000)
    ap.add_argument("--quick", action="store_true", help="few rounds (CI)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.number, args.redis_number = 5, 50_000, 1_000
    caches: list[Cache] = []
    metrics: list[PrometheusMetrics] = []
    with RedisServer() as server:
        try:
            mem, c, m = pair(lambda name: Cache(name=name), "memory:// L1 hit")
            caches += c
            metrics += m
            red, c, m = pair(
                lambda name: Cache(server.url, namespace=name, local=None),
                "redis strict L2 hit",
            )
            caches += c
            metrics += m
            mem_s = interleaved(mem, rounds=args.rounds, number=args.number)
            red_s = interleaved(red, rounds=args.rounds, number=args.redis_number)
        finally:
            for x in metrics:
                x.close()
            for cache in caches:
                cache.close()
    floor_mem, floor_red = mem[0][0], red[0][0]
    out = "\n\n".join(
        [
            environment(),
            table(mem_s, floor_mem, title="Metrics off vs on: L1 hit, memory:// (per call)"),
            table(red_s, floor_red, title="Metrics off vs on: L2 hit, Redis strict (per call)"),
            f"Metrics on / off (median of per-round ratios; goal ≤ 1.15): "
            f"L1 hit {ratio(mem_s):.2f}×, Redis L2 hit {ratio(red_s):.2f}×.",
        ]
    )
    print(out)
    return out


if __name__ == "__main__":
    main()
