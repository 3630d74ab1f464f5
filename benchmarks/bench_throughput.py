"""Throughput of a mixed read/write workload (95% reads, 5% writes) across 4 processes.

    python -m benchmarks.bench_throughput [--quick] [--rounds N] [--seconds S]

Four spawned worker processes each run one caller in a loop: 95% of operations read one of
1,000 keys (Zipf-skewed, as real traffic is) through the cached function, whose loader takes
1 ms (a fast database query); 5% are writes that invalidate the key they touch. A warm-up
period is not counted. Each row: operations per second over all processes and the hit ratio
(reads that did not run the loader), median over interleaved rounds with the spread.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import random
import statistics
import time
from typing import Any

from benchmarks import _peers, _pool
from benchmarks._harness import Figure, Section, environment, md_table
from freshlink.testing import RedisServer

PEERS = ("fl-strict", "fl-strict-l1", "fl-bounded", "dogpile-redis", "cashews-redis")
KEYS = 1000
WRITES = 0.05
LOAD_TIME = 0.001
PROCESSES = 4


def _zipf(n: int, s: float = 1.1) -> list[float]:
    return list(itertools.accumulate(1 / (i + 1) ** s for i in range(n)))


def mixed_worker(
    pid: str, url: str, ns: str, seed: int, warmup: float, seconds: float, start_at: float
) -> tuple[int, int, int]:
    """In a worker: run the 95/5 loop; return (operations, reads, loader runs) after warm-up."""
    rng = random.Random(seed)
    cum = _zipf(KEYS)
    total = cum[-1]
    counted = [False]
    loads = [0]

    def load(k: int) -> Any:
        time.sleep(LOAD_TIME)
        if counted[0]:
            loads[0] += 1
        return _peers.value(k)

    async def aload(k: int) -> Any:
        await asyncio.sleep(LOAD_TIME)
        if counted[0]:
            loads[0] += 1
        return _peers.value(k)

    b = _peers.build(pid, load, aload, url=url, ttl=600, ns=ns)

    def pick() -> int:
        return bisect.bisect_left(cum, rng.random() * total)

    if b.is_async:

        async def run() -> tuple[int, int]:
            await b.call(KEYS + 1)  # connect
            await asyncio.sleep(max(start_at - time.monotonic(), 0))
            ops = reads = 0
            t0 = time.monotonic()
            end = t0 + warmup + seconds
            while (now := time.monotonic()) < end:
                if not counted[0] and now >= t0 + warmup:
                    counted[0] = True
                    ops = reads = 0
                k = pick()
                if rng.random() < WRITES:
                    await b.invalidate(k)  # type: ignore[misc]
                else:
                    await b.call(k)
                    reads += 1
                ops += 1
            await b.close()
            return ops, reads

        ops, reads = asyncio.run(run())
        return ops, reads, loads[0]
    b.call(KEYS + 1)
    time.sleep(max(start_at - time.monotonic(), 0))
    ops = reads = 0
    t0 = time.monotonic()
    end = t0 + warmup + seconds
    inv = b.invalidate
    assert inv is not None
    while (now := time.monotonic()) < end:
        if not counted[0] and now >= t0 + warmup:
            counted[0] = True
            ops = reads = 0
        k = pick()
        if rng.random() < WRITES:
            inv(k)
        else:
            b.call(k)
            reads += 1
        ops += 1
    b.close()
    return ops, reads, loads[0]


def collect(
    rounds: int,
    seconds: float,
    warmup: float,
    peers: tuple[str, ...] = PEERS,
    processes: int = PROCESSES,
) -> Section:
    """Every peer, rounds interleaved, one Redis server and one pool for all."""
    per: dict[str, list[tuple[float, float]]] = {p: [] for p in peers}
    with RedisServer() as server, _pool.Pool(processes) as pool:
        for r in range(rounds):
            for pid in peers:
                server.cli("FLUSHALL")
                start_at = time.monotonic() + 1.0
                args = [
                    (pid, server.url, f"tp{r}-{pid}", 1000 * r + i, warmup, seconds, start_at)
                    for i in range(processes)
                ]
                res = pool.run(mixed_worker, args, timeout=warmup + seconds + 60)
                ops = sum(x[0] for x in res)
                reads = sum(x[1] for x in res)
                loads = sum(x[2] for x in res)
                per[pid].append((ops / seconds, 1 - loads / reads if reads else float("nan")))
    rows = []
    bars = []
    for pid in peers:
        tput = [x[0] for x in per[pid]]
        hit = [x[1] for x in per[pid]]
        med = statistics.median(tput)
        rows.append(
            [
                _peers.NAMES[pid],
                f"{med:,.0f}",
                f"{min(tput):,.0f}..{max(tput):,.0f}",
                f"{statistics.median(hit):.1%}",
                f"{min(hit):.1%}..{max(hit):.1%}",
            ]
        )
        bars.append((_peers.NAMES[pid], med, min(tput), max(tput)))
    md = md_table(
        ["case", f"ops/s ({processes} processes)", "spread", "hit ratio", "spread"],
        rows,
        title=f"Mixed workload, 95% reads / 5% writes, {processes} processes, {KEYS} Zipf keys, "
        f"loader 1 ms ({rounds} rounds of {seconds:g} s)",
    )
    md += (
        "\n\nOne caller per process (cashews: one task). A write invalidates its key: "
        "freshlink bumps the key's tag, dogpile and cashews delete the key."
    )
    fig = Figure(
        "throughput", f"Mixed 95/5 workload, {processes} processes", "operations per second", bars
    )
    data = {pid: statistics.median(x[0] for x in per[pid]) for pid in peers}
    return Section(md, [fig], {"throughput": data})


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    args = ap.parse_args(argv)
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.seconds or (1.0 if args.quick else 2.0)
    out = environment() + "\n\n" + collect(rounds, seconds, 0.3 if args.quick else 0.5).markdown
    print(out)
    return out


if __name__ == "__main__":
    main()
