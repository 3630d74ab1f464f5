"""Per-hit cost of an in-process hit: freshlink next to the in-process peers, same run.

    python -m benchmarks.bench_local [--quick] [--rounds 15] [--target 0.05]

Sync: a plain dict and functools.lru_cache (floors), cachetools.cached(TTLCache) without a
lock, with a lock and with a condition, a dogpile.cache memory region, Flask-Caching's
SimpleCache memoize, freshlink memory:// and freshlink's bounded L1 in front of Redis. Async:
an awaited plain coroutine (floor), cashews mem (@cache and @cache.early), freshlink
memory://. Each case is calibrated so one sample lasts ``--target`` seconds; rounds are
interleaved and ratios taken per round.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from typing import Any

from benchmarks import _peers
from benchmarks._harness import (
    Figure,
    Section,
    bars_from,
    environment,
    interleaved,
    ratio_of,
    table,
)

FLOOR = "plain dict memo"
GOAL = "cachetools.cached(TTLCache, lock=Lock())"
FRESHLINK = "freshlink memory:// (key + 2 tags)"
REDIS_L1 = "freshlink Redis, bounded L1 (key + 2 tags)"
AFLOOR = "await plain coroutine (dict lookup)"
BATCH = 100  # awaits per timed async call (one run_until_complete per batch)


def sync_cases(url: str) -> tuple[list[tuple[str, Callable[[], Any]]], list[Callable[[], Any]]]:
    """(cases, closers): every sync in-process peer, warmed on key 7; freshlink also with a
    bounded L1 in front of the Redis at ``url`` (its hits never reach Redis)."""
    cases: list[tuple[str, Callable[[], Any]]] = []
    closers = []
    for pid in ("dict", "lru", "ct", "ct-lock", "ct-cond", "dogpile-mem", "flask-simple"):
        b = _peers.build(pid)
        b.call(7)
        cases.append((_peers.name(pid), lambda f=b.call: f(7)))
        closers.append(b.close)
    from freshlink import Cache

    cache = Cache(namespace="bench-local")
    fl = cache.cached(ttl=600, key="loan:{k}", tags=["loan:{k}", "user:42"])(_peers.value)
    fl_default = cache.cached(ttl=600)(_peers.value)
    fl_kw = cache.cached(ttl=600)(_peers.value)
    fl(7)
    fl_default(7)
    fl_kw(k=7)
    cases += [
        (FRESHLINK, lambda: fl(7)),
        ("freshlink memory:// (default key)", lambda: fl_default(7)),
        ("freshlink memory:// (keyword arg)", lambda: fl_kw(k=7)),
    ]
    closers.append(cache.close)
    bounded = _peers.build("fl-bounded", url=url, ns="bench-local")
    bounded.call(7)
    cases.append((REDIS_L1, lambda f=bounded.call: f(7)))
    closers.append(bounded.close)
    return cases, closers


def async_cases() -> tuple[list[tuple[str, Callable[[], Any]]], Callable[[], None]]:
    """(cases, close): batches of ``BATCH`` awaited hits, one loop for every case."""
    loop = asyncio.new_event_loop()

    memo = {7: _peers.value(7)}

    async def plain(k: int) -> dict[str, Any]:
        return memo[k]

    def batch(f: Callable[[int], Any]) -> Callable[[], Any]:
        async def hits() -> None:
            for _ in range(BATCH):
                await f(7)

        return lambda: loop.run_until_complete(hits())

    cases = [(AFLOOR, batch(plain))]
    built = []
    for pid in ("cashews-mem", "cashews-mem-early", "fl-mem"):
        b = _peers.build(pid, asynchronous=True)
        loop.run_until_complete(b.call(7))
        built.append(b)
        cases.append((_peers.name(pid, asynchronous=True) + " hit", batch(b.call)))

    def close() -> None:
        for b in built:
            loop.run_until_complete(b.close())
        loop.close()

    return cases, close


def collect(rounds: int = 15, target: float = 0.05, number: int | None = None) -> Section:
    """Run both tables; return their Markdown and figures."""
    from freshlink.testing import RedisServer

    with RedisServer() as server:
        cases, closers = sync_cases(server.url)
        sync = interleaved(cases, rounds=rounds, number=number, target=target)
        for close in closers:
            close()
    acases, aclose = async_cases()
    anumber = None if number is None else max(number // BATCH, 10)
    asy = interleaved(acases, rounds=rounds, number=anumber, target=target)
    aclose()
    asy = {k: [x / BATCH for x in v] for k, v in asy.items()}
    md = "\n\n".join(
        [
            table(
                sync,
                FLOOR,
                title="L1 hit, sync (ns per call)",
                also=[GOAL],
            ),
            table(asy, AFLOOR, title="L1 hit, async (ns per await)"),
        ]
    )
    figures = [
        Figure(
            "l1_sync",
            "L1 hit, sync (median of rounds, min..max)",
            "ns per call (log scale)",
            bars_from(sync),
            log=True,
        ),
        Figure(
            "l1_async",
            "L1 hit, async",
            "ns per await (log scale)",
            bars_from(asy),
            log=True,
        ),
    ]
    data = {
        "l1_vs_goal": ratio_of(sync, FRESHLINK, GOAL),
        "l1_ns": sorted(sync[FRESHLINK])[len(sync[FRESHLINK]) // 2],
        "l1_goal_ns": sorted(sync[GOAL])[len(sync[GOAL]) // 2],
        "l1_redis_vs_goal": ratio_of(sync, REDIS_L1, GOAL),
        "l1_redis_ns": sorted(sync[REDIS_L1])[len(sync[REDIS_L1]) // 2],
    }
    return Section(md, figures, data)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="5 rounds of 10 ms samples")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--target", type=float, default=None, help="seconds per sample")
    ap.add_argument("--number", type=int, default=None, help="fixed calls per sample")
    args = ap.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 15)
    target = args.target or (0.01 if args.quick else 0.05)
    out = environment() + "\n\n" + collect(rounds, target, args.number).markdown
    print(out)
    return out


if __name__ == "__main__":
    main()
