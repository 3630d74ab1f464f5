"""Per-hit cost of an in-process hit: freshlink next to cachetools and functools, same run.

python -m benchmarks.bench_local [--rounds 15] [--number 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import threading

import cachetools

from benchmarks._harness import environment, interleaved, table
from freshlink import Cache


def build() -> list[tuple[str, object]]:
    def loader(loan_id: int) -> dict[str, int]:
        return {"id": loan_id, "amount": 1000}

    memo: dict[int, dict[str, int]] = {}

    def dict_memo(loan_id: int) -> dict[str, int]:
        try:
            return memo[loan_id]
        except KeyError:
            memo[loan_id] = v = loader(loan_id)
            return v

    lru = functools.lru_cache(maxsize=10_000)(loader)
    ct = cachetools.cached(cachetools.TTLCache(10_000, 60))(loader)
    ct_lock = cachetools.cached(cachetools.TTLCache(10_000, 60), lock=threading.Lock())(loader)
    cache = Cache()
    fl = cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}", "user:1"])(loader)
    fl_default = cache.cached(ttl=60)(loader)
    fl_kw = cache.cached(ttl=60)(loader)
    for f in (dict_memo, lru, ct, ct_lock, fl, fl_default):
        f(7)
    fl_kw(loan_id=7)
    return [
        ("plain dict memo", lambda: dict_memo(7)),
        ("functools.lru_cache", lambda: lru(7)),
        ("cachetools.cached(TTLCache)", lambda: ct(7)),
        ("cachetools.cached(TTLCache, lock=Lock())", lambda: ct_lock(7)),
        ("freshlink memory:// (key + 2 tags)", lambda: fl(7)),
        ("freshlink memory:// (default key)", lambda: fl_default(7)),
        ("freshlink memory:// (keyword arg)", lambda: fl_kw(loan_id=7)),
    ]


def async_cases() -> list[tuple[str, object]]:
    cache = Cache()

    async def loader(loan_id: int) -> dict[str, int]:
        return {"id": loan_id}

    fl = cache.cached(ttl=60)(loader)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(fl(7))

    async def floor(n: int) -> None:
        for _ in range(n):
            await loader(7)

    async def hits(n: int) -> None:
        for _ in range(n):
            await fl(7)

    return [
        ("await plain coroutine", lambda: loop.run_until_complete(floor(100))),
        ("await freshlink memory:// hit", lambda: loop.run_until_complete(hits(100))),
    ]


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--number", type=int, default=200_000)
    args = ap.parse_args(argv)
    sync = interleaved(build(), rounds=args.rounds, number=args.number)  # type: ignore[arg-type]
    asy = interleaved(async_cases(), rounds=args.rounds, number=max(args.number // 100, 10))  # type: ignore[arg-type]
    asy = {k: [x / 100 for x in v] for k, v in asy.items()}
    out = "\n\n".join(
        [
            environment(),
            table(
                sync, "cachetools.cached(TTLCache, lock=Lock())", title="L1 hit, sync (per call)"
            ),
            table(asy, "await plain coroutine", title="L1 hit, async (per await)"),
        ]
    )
    print(out)
    return out


if __name__ == "__main__":
    main()
