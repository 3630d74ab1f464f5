"""Stampede: many callers hit one cold key at the same instant; the loader takes 50 ms.

    python -m benchmarks.bench_stampede [--quick] [--trials N]

Two shapes: 50 threads in one process, and 4 processes x 25 threads (spawned interpreters,
as app servers would be). freshlink runs through ``freshlink.testing.workloads.run_stampede``;
the peers run in worker processes of this suite that do the same thing: build the cached
function, warm one connection per thread on other keys, then release every caller at one
instant (asyncio libraries: tasks on one loop instead of threads). Rounds interleave
freshlink and every peer; each row shows the median over rounds and the spread.
Redis commands are counted by MONITOR (filtered on the trial's key) in the last round only,
so the timed rounds before it run without MONITOR's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import threading
import time
from typing import Any

from benchmarks import _peers, _pool
from benchmarks._harness import Figure, Section, environment, md_table, pct
from benchmarks._monitor import Monitor, Window
from freshlink.testing import RedisServer
from freshlink.testing.workloads import run_stampede

LOAD_TIME = 0.05
FRESHLINK = "freshlink strict (run_stampede)"
PEERS = (
    "ct-lock",
    "ct-cond",
    "dogpile-mem",
    "dogpile-redis",
    "flask-simple",
    "flask-redis",
    "cashews-redis",
    "cashews-redis-lock",
)
SHAPES = {"50 threads in 1 process": (1, 50), "4 processes x 25 threads": (4, 25)}
LEAD = 0.3  # seconds between releasing warmed workers and the stampede


# ---------------------------------------------------------------------------- worker side


_STATE: dict[str, Any] = {}


def stampede_prepare(pid: str, url: str, ns: str, key: int, callers: int) -> None:
    """In a worker: build the peer and warm it as a running server would be.

    Every caller warms its own connection on another key, so the stampede then measures
    coordination, not connection set-up (as run_stampede does for freshlink).
    """
    counter = _pool.loads()

    def load(k: int) -> Any:
        if k == key:
            with counter.get_lock():
                counter.value += 1
            time.sleep(LOAD_TIME)
        return _peers.value(k)

    async def aload(k: int) -> Any:
        if k == key:
            with counter.get_lock():
                counter.value += 1
            await asyncio.sleep(LOAD_TIME)
        return _peers.value(k)

    b = _peers.build(pid, load, aload, url=url, ttl=60, ns=ns)
    _STATE.update(built=b, key=key, callers=callers)
    if b.is_async:
        loop = _STATE["loop"] = asyncio.new_event_loop()

        async def warm() -> None:
            await asyncio.gather(*(b.call(key + 1 + i) for i in range(callers)))

        loop.run_until_complete(warm())
        return
    warm = [threading.Thread(target=b.call, args=(key + 1 + i,)) for i in range(callers)]
    for t in warm:
        t.start()
    for t in warm:
        t.join()


def stampede_go(start_at: float) -> tuple[list[float], bool]:
    """In a worker: every caller calls the cold key at ``start_at``; (latencies s, late)."""
    b: _peers.Built = _STATE.pop("built")
    key, n = _STATE.pop("key"), _STATE.pop("callers")
    late = time.monotonic() > start_at
    if b.is_async:
        loop = _STATE.pop("loop")
        try:
            return loop.run_until_complete(_tasks(b, key, n, start_at)), late
        finally:
            loop.run_until_complete(b.close())
            loop.close()
    latencies: list[float] = []

    def caller() -> None:
        time.sleep(max(start_at - time.monotonic(), 0))
        t0 = time.monotonic()
        b.call(key)
        latencies.append(time.monotonic() - t0)

    ts = [threading.Thread(target=caller) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    b.close()
    return latencies, late


async def _tasks(b: _peers.Built, key: int, n: int, start_at: float) -> list[float]:
    async def caller() -> float:
        await asyncio.sleep(max(start_at - time.monotonic(), 0))
        t0 = time.monotonic()
        await b.call(key)
        return time.monotonic() - t0

    return list(await asyncio.gather(*(caller() for _ in range(n))))


# ---------------------------------------------------------------------------- driver side


def _peer_trial(
    pool: _pool.Pool,
    pid: str,
    url: str,
    procs: int,
    threads: int,
    ns: str,
    mon: Monitor | None,
) -> tuple[int, list[float], bool, Window | None]:
    key = random.randrange(10**9, 10**10)  # a key no earlier trial has filled
    pool.run(stampede_prepare, [(pid, url, ns, key, threads)] * procs, timeout=60)
    pool.loads.value = 0
    box: list[Any] = []

    def go() -> None:
        box.append(pool.run(stampede_go, [(time.monotonic() + LEAD,)] * procs, timeout=60))

    w = mon.window(go, ns) if mon is not None else None
    if w is None:
        go()
    results = box[0]
    lat = [x for r in results for x in r[0]]
    return int(pool.loads.value), lat, any(r[1] for r in results), w


def _row_stats(trials: list[tuple[int, list[float]]]) -> dict[str, Any]:
    loads = [t[0] for t in trials]
    p50 = [statistics.median(t[1]) * 1000 for t in trials]
    p99 = [pct(t[1], 0.99) * 1000 for t in trials]
    return {"loads": loads, "p50": p50, "p99": p99}


def _fmt(xs: list[float], f: str = ".1f") -> str:
    med = statistics.median(xs)
    if min(xs) == max(xs):
        return format(med, f)
    return f"{med:{f}} ({min(xs):{f}}..{max(xs):{f}})"


def collect(
    trials: int,
    shapes: dict[str, tuple[int, int]] | None = None,
    peers: tuple[str, ...] = PEERS,
) -> Section:
    """Every shape, freshlink and the peers interleaved, ``trials`` rounds."""
    shapes = shapes or SHAPES
    results: dict[str, dict[str, list[tuple[int, list[float]]]]] = {s: {} for s in shapes}
    commands: dict[str, dict[str, Window]] = {s: {} for s in shapes}
    late: set[str] = set()
    names = [FRESHLINK, *(_peers.NAMES[p] for p in peers)]
    workers = max(procs for procs, _ in shapes.values())
    with RedisServer() as server, _pool.Pool(workers) as pool:
        url = server.url
        for trial in range(trials):
            last = trial == trials - 1
            mon = Monitor(url).__enter__() if last else None
            for shape, (procs, threads) in shapes.items():

                def fl(procs: int = procs, threads: int = threads) -> Any:
                    return run_stampede(url, processes=procs, threads=threads, loader_time=0.05)

                if mon is not None:
                    box: list[Any] = []
                    commands[shape][FRESHLINK] = mon.window(
                        lambda box=box, fl=fl: box.append(fl()), "cold-"
                    )
                    run = box[0]
                else:
                    run = fl()
                results[shape].setdefault(FRESHLINK, []).append((run.loads, run.latencies))
                for pid in peers:
                    ns = f"st{trial}-{pid}"
                    loads, lat, was_late, w = _peer_trial(pool, pid, url, procs, threads, ns, mon)
                    if w is not None:
                        commands[shape][_peers.NAMES[pid]] = w
                    if was_late:
                        late.add(f"{_peers.NAMES[pid]} ({shape})")
                    results[shape].setdefault(_peers.NAMES[pid], []).append((loads, lat))
            if mon is not None:
                mon.__exit__()
    parts = []
    figures = []
    data: dict[str, Any] = {}
    for shape in shapes:
        procs, threads = shapes[shape]
        rows = []
        bars_loads, bars_p99 = [], []
        for name in names:
            st = _row_stats(results[shape][name])
            w = commands[shape].get(name)
            cmds = server = "n/a"
            if w is not None:
                cmds = str(sum(w.client.values()))
                server = str(sum(w.client.values()) + sum(w.lua.values()))
            rows.append(
                [
                    name,
                    _fmt([float(x) for x in st["loads"]], ".0f"),
                    _fmt(st["p50"]),
                    _fmt(st["p99"]),
                    f"{statistics.median(st['p99']) / (LOAD_TIME * 1000):.2f}",
                    cmds,
                    server,
                ]
            )
            bars_loads.append(
                (name, statistics.median(st["loads"]), min(st["loads"]), max(st["loads"]))
            )
            bars_p99.append((name, statistics.median(st["p99"]), min(st["p99"]), max(st["p99"])))
            if name == FRESHLINK:
                data[f"{procs}x{threads}"] = {
                    "loads": statistics.median(st["loads"]),
                    "p99_ratio": statistics.median(st["p99"]) / (LOAD_TIME * 1000),
                    "p99": statistics.median(st["p99"]),
                }
                if w is not None:
                    data[f"{procs}x{threads}"]["server_commands"] = int(server)
        parts.append(
            md_table(
                [
                    "case",
                    "loader runs",
                    "p50 ms",
                    "p99 ms",
                    "p99 / loader",
                    "Redis commands (last round)",
                    "on the server",
                ],
                rows,
                title=f"Stampede: {shape}, one cold key, loader 50 ms ({trials} rounds; "
                "median (min..max))",
            )
        )
        slug = f"stampede_{procs}x{threads}"
        figures += [
            Figure(
                slug + "_loads",
                f"Stampede {shape}: loader runs",
                "loader runs (log scale)",
                bars_loads,
                log=True,
            ),
            Figure(
                slug + "_p99",
                f"Stampede {shape}: p99 latency",
                "p99 ms, log scale (line: the loader's 50 ms)",
                bars_p99,
                log=True,
                floor=LOAD_TIME * 1000,
            ),
        ]
    note = (
        "Callers: threads, except cashews (asyncio tasks on one loop per process). "
        "Redis commands: every command sent that names the trial's key or lease (MONITOR, "
        "last round); on the server: those and the commands run inside Lua scripts that name "
        "them."
    )
    if late:
        note += " Started late in some round (fewer callers overlapped): " + ", ".join(sorted(late))
    parts.append(note)
    return Section("\n\n".join(parts), figures, {"stampede": data})


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="one round")
    ap.add_argument("--trials", type=int, default=None)
    args = ap.parse_args(argv)
    trials = args.trials or (1 if args.quick else 3)
    out = environment() + "\n\n" + collect(trials).markdown
    print(out)
    return out


if __name__ == "__main__":
    main()
