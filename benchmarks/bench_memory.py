"""Memory per cached entry in the process (L1), measured with tracemalloc.

    python -m benchmarks.bench_memory [--quick] [--entries N]

Each case fills N entries of a small dict (a loan record, 4 keys, with its own strings as a
database driver would return them) through the cached function and reports the bytes
tracemalloc sees allocated by the fill, per entry, the value included (a library keeps the
loader's object, a decoded copy, or a pickle). The first row is the floor: the N values alone
in a list. For freshlink over Redis only the process side is counted (its L1
and bookkeeping), since that is what an app server pays per entry; memory:// holds the
payload too. Rounds are interleaved; the median and spread are shown.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tracemalloc
from collections.abc import Callable
from typing import Any

from benchmarks import _peers
from benchmarks._harness import Figure, Section, environment, md_table
from freshlink.testing import RedisServer

FLOOR = "the values alone (list of dicts)"
IN_PROCESS = ("dict", "lru", "ct-lock", "dogpile-mem", "flask-simple", "cashews-mem", "fl-mem")
REDIS = ("fl-bounded", "fl-strict-l1")


def _measure(fill: Callable[[], Any]) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        keep = fill()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del keep
    return after - before


def record(k: int) -> dict[str, Any]:
    """A loan record with its own strings, as a database driver returns it (none shared)."""
    return {
        "id": k,
        "borrower": 42,
        "amount": f"{1000 + k % 997}.00",
        "link": f"https://pay.example/l/{k}?t=abc",
    }


def _case(pid: str, n: int, url: str | None, r: int) -> int:
    if pid == "floor":
        return _measure(lambda: [record(k) for k in range(n)])
    ns = f"mem{r}-{pid}"
    if pid in REDIS:
        # Fill Redis first, outside the measurement: the process then pays only for what it
        # keeps (L1 entries and bookkeeping), and the run is three times shorter.
        filler = _peers.build("fl-strict", record, url=url, ttl=600, ns=ns)
        for k in range(-1, n):
            filler.call(k)
        filler.close()
    b = _peers.build(pid, record, url=url, ttl=600, ns=ns)
    try:
        if b.is_async:
            loop = asyncio.new_event_loop()
            loop.run_until_complete(b.call(-1))  # first-call set-up is not per entry

            async def afill() -> None:
                for k in range(n):
                    await b.call(k)

            try:
                return _measure(lambda: loop.run_until_complete(afill()))
            finally:
                loop.run_until_complete(b.close())
                loop.close()
        b.call(-1)
        return _measure(lambda: [b.call(k) and None for k in range(n)])
    finally:
        if not b.is_async:
            b.close()


def collect(n: int, rounds: int) -> Section:
    """Bytes per entry for every case, ``rounds`` interleaved rounds."""
    names = {"floor": FLOOR, **{p: _peers.NAMES[p] for p in IN_PROCESS + REDIS}}
    samples: dict[str, list[float]] = {p: [] for p in names}
    with RedisServer() as server:
        for r in range(rounds):
            for pid in names:
                samples[pid].append(_case(pid, n, server.url, r) / n)
    floor = samples["floor"]
    rows = []
    bars = []
    for pid, name in names.items():
        xs = samples[pid]
        over = [x - f for x, f in zip(xs, floor, strict=True)]
        label = name
        if pid in REDIS:
            label += " (process side; the payload is in Redis)"
        elif pid == "fl-mem":
            label += " (L1 copy + stored payload)"
        rows.append(
            [
                label,
                f"{statistics.median(xs):,.0f}",
                f"{min(xs):,.0f}..{max(xs):,.0f}",
                f"{statistics.median(over):,.0f}" if pid != "floor" else "",
                f"{statistics.median(x / f for x, f in zip(xs, floor, strict=True)):.1f}",
            ]
        )
        bars.append((name, statistics.median(xs), min(xs), max(xs)))
    md = md_table(
        ["case", "bytes per entry", "spread", "beyond the value", "× values alone"],
        rows,
        title=f"Memory per cached entry in the process (tracemalloc, {n:,} entries of a "
        f"4-key dict, {rounds} rounds)",
    )
    fig = Figure("memory", f"Memory per entry ({n:,} small dicts)", "bytes per entry", bars)
    return Section(md, [fig], {"memory": {p: statistics.median(samples[p]) for p in names}})


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--entries", type=int, default=None)
    args = ap.parse_args(argv)
    n = args.entries or (1000 if args.quick else 5000)
    out = environment() + "\n\n" + collect(n, 1 if args.quick else 2).markdown
    print(out)
    return out


if __name__ == "__main__":
    main()
