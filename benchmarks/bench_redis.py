"""Redis-backed hits, commands counted per hit and per miss, cross-process invalidation.

    python -m benchmarks.bench_redis [--quick]

Starts its own redis-server on a free loopback port (a second, dedicated one for counting
commands). Every timed row is a median over interleaved rounds; ratios are computed per round
against the floor measured in that round (raw redis-py GET + json.loads: one round trip).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from benchmarks import _busy, _peers
from benchmarks._harness import (
    Figure,
    Section,
    bars_from,
    environment,
    interleaved,
    md_table,
    pct,
    ratio_of,
    table,
)
from benchmarks._monitor import Monitor
from freshlink import Cache, Local
from freshlink.testing import RedisServer

FLOOR = _peers.NAMES["raw"]
AFLOOR = _peers.NAMES["raw-async"]
STRICT = _peers.NAMES["fl-strict"]
SYNC_IDS = ("raw", "fl-strict", "fl-strict-l1", "fl-bounded", "dogpile-redis", "flask-redis")
ASYNC_IDS = ("raw-async", "fl-strict", "fl-bounded", "cashews-redis", "cashews-redis-lock")
ASYNC_IDS += ("cashews-redis-early",)
COUNTED = (
    "raw",
    "fl-strict",
    "fl-strict-l1",
    "fl-bounded",
    "dogpile-redis",
    "flask-redis",
    "cashews-redis",
    "cashews-redis-lock",
    "cashews-redis-early",
    "cashews-redis-cs",
)


# ---------------------------------------------------------------------------- hit cost


def hit_cases(url: str) -> tuple[list[tuple[str, Callable[[], Any]]], dict[str, str], list[Any]]:
    """(sync cases, rows that cannot run here -> why, built peers to close)."""
    cases: list[tuple[str, Callable[[], Any]]] = []
    notes: dict[str, str] = {}
    built = []
    for pid in (*SYNC_IDS, "redis-csc", "ct-lock"):
        try:
            b = _peers.build(pid, url=url, ns="hit-" + pid)
        except _peers.Unavailable as exc:
            notes[_peers.name(pid)] = str(exc)
            continue
        b.call(7)
        b.call(7)
        built.append(b)
        label = _peers.name(pid)
        if pid == "fl-strict":
            label += " (L2 hit)"
        elif pid == "fl-strict-l1":
            label += " (L1 + generation check)"
        elif pid == "fl-bounded":
            label += " hit (in-process)"
        elif pid == "ct-lock":
            label += " (in-process reference)"
        cases.append((label, lambda f=b.call: f(7)))
    return cases, notes, built


def async_hit_cases(
    url: str, loop: asyncio.AbstractEventLoop, batch: int
) -> tuple[list[tuple[str, Callable[[], Any]]], list[Any]]:
    """Async cases: ``batch`` awaited hits per timed call, all on one loop."""
    cases: list[tuple[str, Callable[[], Any]]] = []
    built = []
    for pid in ASYNC_IDS:
        b = _peers.build(pid, url=url, ns="ahit-" + pid, asynchronous=True)
        loop.run_until_complete(b.call(7))
        loop.run_until_complete(b.call(7))
        built.append(b)

        async def hits(f: Callable[[int], Any] = b.call) -> None:
            for _ in range(batch):
                await f(7)

        label = _peers.name(pid, asynchronous=True)
        if pid == "fl-strict":
            label += " (L2 hit)"
        elif pid == "fl-bounded":
            label += " hit (in-process)"
        cases.append((label, lambda h=hits: loop.run_until_complete(h())))
    return cases, built


def hit_tables(url: str, rounds: int, target: float) -> Section:
    """Sync and async hit cost with Redis."""
    cases, notes, built = hit_cases(url)
    samples = interleaved(cases, rounds=rounds, target=target)
    for b in built:
        b.close()
    us = {k: [x / 1000 for x in v] for k, v in samples.items()}
    loop = asyncio.new_event_loop()
    batch = 20
    acases, abuilt = async_hit_cases(url, loop, batch)
    asamples = interleaved(acases, rounds=rounds, target=target)
    for b in abuilt:
        loop.run_until_complete(b.close())
    loop.close()
    aus = {k: [x / 1000 / batch for x in v] for k, v in asamples.items()}
    strict = STRICT + " (L2 hit)"
    md = "\n\n".join(
        [
            table(
                us,
                FLOOR,
                unit="µs",
                title="Hit cost with Redis, sync (µs per call)",
                notes=notes,
            ),
            table(aus, AFLOOR, unit="µs", title="Hit cost with Redis, async (µs per await)"),
        ]
    )
    floor = statistics.median(us[FLOOR])
    figures = [
        Figure(
            "l2_sync",
            "Hit cost with Redis, sync",
            "µs per call (line: raw GET + json.loads)",
            [b for b in bars_from(us) if "in-process" not in b[0]],
            floor=floor,
            notes=[f"{n}: n/a" for n in notes],
        ),
        Figure(
            "l2_async",
            "Hit cost with Redis, async",
            "µs per await (line: raw redis.asyncio GET + json.loads)",
            [b for b in bars_from(aus) if "in-process" not in b[0]],
            floor=statistics.median(aus[AFLOOR]),
        ),
    ]
    data = {
        "l2_vs_floor": ratio_of(us, strict, FLOOR),
        "l2_us": statistics.median(us[strict]),
        "floor_us": floor,
        "l2_async_vs_floor": ratio_of(aus, "await " + strict, AFLOOR),
    }
    return Section(md, figures, data)


# ---------------------------------------------------------------------------- commands


def _settle(url: str, quiet: float = 0.05, timeout: float = 2.0) -> None:
    """Wait until no connection has been opened for ``quiet`` seconds (every library alike).

    A client may open connections in the background after its first calls (freshlink's pool
    warm-up): their handshakes are not a hit's commands.
    """
    client = redis.Redis.from_url(url)
    try:
        deadline = time.monotonic() + timeout
        seen = client.info("stats")["total_connections_received"]
        while time.monotonic() < deadline:
            time.sleep(quiet)
            now = client.info("stats")["total_connections_received"]
            if now == seen:
                return
            seen = now
    finally:
        client.close()


def count_commands(url: str, n: int) -> Section:
    """Commands per warm hit and per miss, counted by MONITOR on a dedicated server."""
    rows = []
    data: dict[str, Any] = {}
    loop = asyncio.new_event_loop()
    with Monitor(url) as mon:
        for pid in COUNTED:
            try:
                b = _peers.build(pid, url=url, ns="cmd-" + pid)
            except _peers.Unavailable as exc:
                rows.append([_peers.name(pid), "n/a", "", "n/a", "", str(exc)])
                continue

            def call(k: int, b: _peers.Built = b) -> Any:
                return loop.run_until_complete(b.call(k)) if b.is_async else b.call(k)

            call(7)
            call(7)
            _settle(url)
            hits = mon.window(lambda call=call: [call(7) for _ in range(n)])
            misses = mon.window(lambda call=call: [call(10_000 + i) for i in range(n)])
            if b.is_async:
                loop.run_until_complete(b.close())
            else:
                b.close()
            hc, hl = hits.per(n)
            mc, ml = misses.per(n)
            notes = []
            if hl or ml:
                notes.append(f"inside scripts: {hl:g} per hit, {ml:g} per miss")
            if hits.pings or misses.pings:
                notes.append("channel PINGs not counted (every 20 ms, whatever the traffic)")
            rows.append(
                [
                    _peers.name(pid),
                    f"{hc:g}",
                    hits.breakdown(n),
                    f"{mc:g}",
                    misses.breakdown(n),
                    "; ".join(notes),
                ]
            )
            data[pid] = (hc, mc, hl, ml)
    loop.close()
    md = md_table(
        ["case", "per warm hit", "by command", "per miss", "by command", "notes"],
        rows,
        title=f"Redis commands sent per warm hit and per miss (counted by MONITOR, {n} calls each)",
    )
    return Section(md, data={"commands": data})


# ---------------------------------------------------------------------------- invalidation


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
    """freshlink: invalidation in one process -> heard by another process's channel (ms)."""
    ctx = mp.get_context("spawn")
    ready, out = ctx.Event(), ctx.Queue()
    p = ctx.Process(target=_listener_proc, args=(url, ready, out, n))
    p.start()
    assert ready.wait(30)
    writer = Cache(url, namespace="prop", local=None)
    sent: dict[int, tuple[float, float]] = {}
    for _ in range(n):
        t0 = time.monotonic()
        (v,) = writer.backend.invalidate([writer.keyspace.tag("loan:7")])
        sent[v] = (t0, time.monotonic())
        time.sleep(0.002)
    got = out.get(timeout=60)
    p.join(10)
    from_start = [(t - sent[v][0]) * 1000 for v, t in got if v in sent]
    from_ack = [(t - sent[v][1]) * 1000 for v, t in got if v in sent]
    writer.close()
    return from_start, from_ack


def _cashews_reader_proc(url: str, todo: Any, out: Any, timeout: float, kw: Any) -> None:
    """cashews client_side reader: caches a key locally, then waits to see its new value."""

    async def run() -> None:
        from cashews import Cache as CashewsCache

        c = CashewsCache()
        c.setup(url, client_side=True, **kw)
        await c.get("warm")
        while (key := await asyncio.to_thread(todo.get)) is not None:
            for _ in range(1000):  # until it holds a local copy of the old value
                if await c.get(key) == "old":
                    break
                await asyncio.sleep(0.001)
            out.put("ready")
            seen = None
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if await c.get(key) == "new":
                    seen = time.monotonic()
                    break
                await asyncio.sleep(0)
            out.put(seen)
        await c.close()

    asyncio.run(run())


def cashews_propagation(
    url: str, n: int, timeout: float = 1.0, **kw: Any
) -> tuple[list[float], int]:
    """cashews client_side=True: write in this process, time until another process reads it.

    Returns the latencies (ms) of the trials that saw the new value within ``timeout``, and
    the number of trials run (it stops after 2 trials that never saw it, if none did).
    """
    from cashews import Cache as CashewsCache

    ctx = mp.get_context("spawn")
    todo, out = ctx.Queue(), ctx.Queue()
    p = ctx.Process(target=_cashews_reader_proc, args=(url, todo, out, timeout, kw))
    p.start()
    loop = asyncio.new_event_loop()
    w = CashewsCache()
    w.setup(url, client_side=True, **kw)  # the other app server, configured the same way
    lat: list[float] = []
    trials = 0
    try:
        for i in range(n):
            key = f"prop-cs:{i}"
            loop.run_until_complete(w.set(key, "old"))
            todo.put(key)
            assert out.get(timeout=30) == "ready"
            time.sleep(0.005)
            t0 = time.monotonic()
            loop.run_until_complete(w.set(key, "new"))
            seen = out.get(timeout=timeout + 30)
            trials += 1
            if seen is not None:
                lat.append((seen - t0) * 1000)
            elif trials >= 2 and not lat:
                break
    finally:
        todo.put(None)
        p.join(30)
        if p.is_alive():
            p.kill()
        loop.run_until_complete(w.close())
        loop.close()
    return lat, trials


def _busy_rows(url: str, n: int) -> tuple[list[list[str]], dict[str, float], list[Any]]:
    """Rows of the busy-reader table, its goal numbers, and its bars."""
    cases = [
        (
            "freshlink bounded L1: write-through (@cache.updates)",
            _busy.freshlink_busy(url, n, write_through=True),
            "",
        ),
        (
            "freshlink bounded L1: invalidate(tag), the reader reloads",
            _busy.freshlink_busy(url, n, write_through=False),
            "the new value's miss includes the load (lease, loader, store)",
        ),
    ]
    try:
        _rc, note = _busy.csc_client(url)
        _rc.close()
        cases.append((f"{_peers.NAMES['redis-csc']}: SET", _busy.csc_busy(url, n), note))
    except Exception as exc:  # an unusable redis-py client-side cache: say why
        cases.append((_peers.NAMES["redis-csc"], _busy.Busy([], 0.0, None, 0.0), f"not run: {exc}"))
    rows, bars = [], []
    for label, busy, note in cases:
        lat, rate = busy.lat, busy.rate
        notes = [f"{len(lat)} of {n} new values seen", *([note] if note else [])]
        if busy.drains is not None:
            notes.append(f"{busy.drains} drains in the reader's own thread")
        if lat and busy.waited == busy.waited:  # (NaN: not Linux)
            notes.append(f"the reader waited for a CPU {busy.waited:.1%} of the run")
        if not lat:
            rows.append([label, "", "", "", "", "", "; ".join(notes)])
            continue
        rows.append(
            [
                label,
                f"{statistics.median(lat):.3f}",
                f"{pct(lat, 0.90):.3f}",
                f"{pct(lat, 0.99):.3f}",
                f"{max(lat):.3f}",
                f"{rate / 1e6:.2f} M" if rate >= 1e6 else f"{rate / 1e3:.0f} k",
                "; ".join(notes),
            ]
        )
        short = (
            "redis-py csc"
            if "redis-py" in label
            else "freshlink " + ("write-through" if "write-through" in label else "invalidate")
        )
        bars.append((short + " (busy)", statistics.median(lat), pct(lat, 0.99), max(lat)))
    data = {}
    if cases[0][1].lat:
        lat = cases[0][1].lat
        data = {"inv_busy_p50_ms": statistics.median(lat), "inv_busy_p99_ms": pct(lat, 0.99)}
    if cases[1][1].lat:
        data["inv_busy_reload_p99_ms"] = pct(cases[1][1].lat, 0.99)
    return rows, data, bars


def invalidation_table(url: str, n: int, cs_trials: int, busy_n: int) -> Section:
    """Cross-process invalidation latency, freshlink and the peers where it means something."""
    start, ack = propagation(url, n)
    busy_rows, busy_data, busy_bars = _busy_rows(url, busy_n)
    cashews = [
        (
            "cashews client_side=True (redis-py defaults: RESP3)",
            cashews_propagation(url, cs_trials),
        ),
        ("cashews client_side=True, protocol=2", cashews_propagation(url, cs_trials, protocol=2)),
    ]
    rows = [
        [
            "freshlink bounded L1: channel heard, from invalidate() called",
            f"{statistics.median(start):.3f}",
            f"{pct(start, 0.99):.3f}",
            f"{max(start):.3f}",
            f"{len(start)} invalidations",
        ],
        [
            "freshlink bounded L1: channel heard, from invalidate() returned",
            f"{statistics.median(ack):.3f}",
            f"{pct(ack, 0.99):.3f}",
            f"{max(ack):.3f}",
            "the writer itself reads its own write at once",
        ],
    ]
    for label, (lat, trials) in cashews:
        if lat:
            rows.append(
                [
                    label + ": new value read by the other process",
                    f"{statistics.median(lat):.3f}",
                    f"{pct(lat, 0.99):.3f}",
                    f"{max(lat):.3f}",
                    f"{len(lat)} of {trials} trials saw it within 1 s",
                ]
            )
        else:
            rows.append(
                [
                    label + ": new value read by the other process",
                    "never",
                    "never",
                    "",
                    f"0 of {trials} trials saw the new value within 1 s: the local copy "
                    "stays stale (the listener never sees RESP3 push frames)",
                ]
            )
    rows += [
        [
            _peers.NAMES["redis-csc"],
            "n/a",
            "n/a",
            "",
            "refuses Redis < 7.4; this server is older",
        ],
        [
            "dogpile.cache / Flask-Caching redis",
            "0",
            "0",
            "",
            "no local copies: every read goes to Redis (one or two round trips)",
        ],
        [
            "dogpile.cache memory region.invalidate()",
            "never",
            "never",
            "",
            "reaches only the calling process: others serve the old value until TTL",
        ],
    ]
    md = md_table(
        ["case", "p50 ms", "p99 ms", "max ms", "notes"],
        rows,
        title="Cross-process invalidation latency (ms), to an idle reader",
    )
    md += "\n\n" + md_table(
        ["case", "p50 ms", "p90 ms", "p99 ms", "max ms", "reader calls/s", "notes"],
        busy_rows,
        title=(
            "Cross-process invalidation seen by a busy reader (ms): another process spins on "
            "hits of one key; from the write returning to the reader first returning the new "
            "value"
        ),
    )
    bars = [
        ("freshlink (from call)", statistics.median(start), pct(start, 0.99), pct(start, 0.99)),
        ("freshlink (from return)", statistics.median(ack), pct(ack, 0.99), pct(ack, 0.99)),
    ]
    notes = []
    for label, (lat, _trials) in cashews:
        short = "cashews " + ("protocol=2" if "protocol=2" in label else "RESP3")
        if lat:
            bars.append((short, statistics.median(lat), pct(lat, 0.99), max(lat)))
        else:
            notes.append(short + ": never delivered")
    bars += busy_bars
    fig = Figure(
        "invalidation",
        "Cross-process invalidation (bar p50, whisker p99)",
        "ms",
        [(a, b, min(b, c), d) for a, b, c, d in bars],
        notes=notes,
    )
    return Section(
        md,
        [fig],
        {"inv_p50_ms": statistics.median(start), "inv_p99_ms": pct(start, 0.99), **busy_data},
    )


# ---------------------------------------------------------------------------- entry points


def collect(quick: bool) -> list[Section]:
    """Every Redis table (servers started and stopped here)."""
    rounds, target = (5, 0.02) if quick else (15, 0.1)
    out = []
    with RedisServer() as server:
        out.append(hit_tables(server.url, rounds, target))
    # A server of its own, as for every library's rows: on the server the hit tables had just
    # used (28 keys, 2 clients and 111 KB of Lua memory left), the busy reader's p99 was
    # 1.5-1.7 ms in 4 runs, and 0.8-0.9 ms on a new server in the same process; SCRIPT FLUSH
    # did not help. The cause is not known.
    with RedisServer() as server:
        out.append(
            invalidation_table(
                server.url, 300 if quick else 2000, 3 if quick else 20, 60 if quick else 300
            )
        )
    with RedisServer() as dedicated:  # nothing else talks to it: counts are exact
        out.append(count_commands(dedicated.url, 20 if quick else 100))
    return out


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    out = "\n\n".join([environment(), *(s.markdown for s in collect(args.quick))])
    print(out)
    return out


if __name__ == "__main__":
    main()
