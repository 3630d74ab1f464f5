"""Fan-out: what each process and Redis pay for the channel as the fleet grows.

    python -m benchmarks.bench_fanout [--quick] [--out DIR]

N reader processes (spawned), each with a bounded L1 over 100 hot keys called about 1000
times a second (sleep-paced, so 32 fit on 2 cores); one driver process sends R invalidations/s
(tags no hot key carries, 1 in 100 a hot key's own), another F fills/s that nobody waits for.
Per cell: messages each reader handled, its CPU, Redis CPU and commands per operation over the
readers' idle cost, p50/p99 of the L1 hits. "Batches of 10": one message per 10 tags.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing as mp
import os
import socket
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from benchmarks._harness import Figure, Section, environment, md_table, num, pct
from benchmarks._plots import draw
from freshlink import Cache, Local
from freshlink.testing import RedisServer

HOT_KEYS = 100
CALLS_PER_S = 1000  # per reader
HOT_EVERY = 100  # one invalidation in this many targets a hot key's own tag
PUB_RATE = 500  # invalidations/s while Redis's cost per subscriber is measured
COLD_TAGS = 1000  # the tags no reader's entry carries, invalidated in turn
LEAD = 0.3  # seconds between telling every process the start time and the start
#: (invalidations/s, fills/s, tags per invalidate call)
FULL_CELLS = (*((r, f, 1) for r in (0, 100, 1000) for f in (0, 1000)), (1000, 0, 10))
QUICK_CELLS = ((0, 0, 1), (1000, 0, 1), (0, 1000, 1), (1000, 0, 10))
FULL_NS, QUICK_NS = (2, 4, 8, 16, 32), (2, 8)
HEADERS = (
    "N|traffic (sent/s)|inv. msgs /process/s|fill msgs /process/s|L1 hits % (fast path %)|"
    "hit p50 µs|hit p99 µs (min..max)|reader CPU %|Redis CPU %|Redis µs /op over idle|"
    "Redis cmds /op"
)


# ---------------------------------------------------------------------------- worker side

_COUNTS: collections.Counter[str] = collections.Counter()


def _count_messages() -> None:
    """Count every message this process's listener dispatches: what reached its socket,
    fill notices for keys nobody here waits for included (the backend drops those)."""
    from freshlink.backends import channel

    dispatch = channel.Listener._dispatch

    def counting(self: Any, msg: dict[str, Any], sent: dict[bytes, float]) -> None:
        if msg["type"] == "message":
            _COUNTS["inv" if msg["channel"] == self._inv else "fill"] += 1
        dispatch(self, msg, sent)

    channel.Listener._dispatch = counting  # type: ignore[method-assign]


def _sleep_until(t: float) -> None:
    time.sleep(max(t - time.monotonic(), 0))


def _paced(start_at: float, duration: float, rate: int, step: Callable[[int], object]) -> int:
    """Call ``step(i)`` ``rate`` times a second from ``start_at`` for ``duration``; count."""
    calls, end = 0, start_at + duration
    _sleep_until(start_at)
    while rate and (now := time.monotonic()) < end:
        due = start_at + calls / rate
        if now < due:
            time.sleep(min(due, end) - now)
            continue
        step(calls)
        calls += 1
    _sleep_until(end)
    return calls


def _value(i: int) -> int:
    return i


class _Reader:
    def __init__(self, url: str, ns: str) -> None:
        self.cache = Cache(url, namespace=ns, local=Local(max_staleness=0.1))
        hot = self.cache.cached(ttl=300, key="hot:{i}", tags=["hot:{i}"])(_value)
        self.fn, self.reads = hot, 0
        # Every call that is not an L1 hit reads Redis through backend.read_lease (the read
        # that also takes the fill's lease on a miss): count them.
        read = self.cache.backend.read_lease

        def counted(*args: Any) -> Any:
            self.reads += 1
            return read(*args)

        self.cache.backend.read_lease = counted  # type: ignore[method-assign,assignment]
        # The inlined hot path counts its hits on the spec; a hit that re-checks its stamps
        # (after any invalidation message) is an L1 hit too, on the slower path, not counted.
        self.spec = hot._self_spec  # type: ignore[attr-defined]
        self.cache.backend.listener.alive.wait(10)  # type: ignore[attr-defined]
        for k in [*range(HOT_KEYS)] * 2:
            hot(k)

    def run(self, start_at: float, duration: float, rate: int, batch: int) -> dict[str, Any]:
        fn, spec = self.fn, self.spec
        timed: tuple[list[int], list[int]] = ([], [])  # (went to Redis, L1 hits)
        period, end = 1 / CALLS_PER_S, start_at + duration
        _sleep_until(start_at)
        c0, cpu0, fast0 = dict(_COUNTS), time.process_time(), spec.l1_hits
        due, i = start_at, 0
        while (now := time.monotonic()) < end:
            if now < due:
                time.sleep(due - now)
            before = self.reads
            t0 = time.perf_counter_ns()
            fn(i % HOT_KEYS)
            dt = time.perf_counter_ns() - t0
            timed[self.reads == before].append(dt)
            i += 1
            # Paced, never bursting to catch up: a late reader makes fewer calls instead.
            due = max(due + period, time.monotonic())
        lat = timed[True] or [-1000]  # -1 µs: no L1 hit at all (never in practice)
        got: dict[str, Any] = {k: _COUNTS[k] - c0.get(k, 0) for k in ("inv", "fill")}
        got.update(cpu=time.process_time() - cpu0, fast=spec.l1_hits - fast0)
        got.update(hits=len(timed[True]), other=len(timed[False]))
        return {**got, "p50": pct(lat, 0.5) / 1000, "p99": pct(lat, 0.99) / 1000}


class _Driver:
    """Sends invalidations (``kind="inval"``) or fills that nobody waits for (``"filler"``)."""

    def __init__(self, url: str, ns: str, kind: str) -> None:
        self.cache = Cache(url, namespace=ns, local=None)
        self.kind, self.next = kind, 0
        self.filled = self.cache.cached(ttl=10, key="fill:{i}")(_value)
        if kind == "inval":
            # Every reader then knows every cold tag: a reader that hears a tag for the first
            # time only learns it, a repeat makes its L1 entries re-check their stamps. Apps'
            # tags repeat; without this the first cells would look cheaper than later ones.
            self.cache.invalidate(*(f"cold:{j}" for j in range(COLD_TAGS)))

    def _step(self, call: int, batch: int) -> None:
        if self.kind == "filler":
            self.filled(self.next)  # a key never filled in this namespace: a miss and a fill
            self.next += 1
            return
        tags = [
            f"hot:{(j // HOT_EVERY) % HOT_KEYS}"
            if j % HOT_EVERY == HOT_EVERY - 1
            else f"cold:{j % COLD_TAGS}"  # a tag no reader's entry carries
            for j in range(call * batch, (call + 1) * batch)
        ]
        self.cache.invalidate(*tags)  # one script, one message, whatever the number of tags

    def run(self, start_at: float, duration: float, rate: int, batch: int) -> dict[str, Any]:
        # rate is in tags (or fills) a second; batch tags go in each invalidate call
        batch = batch if self.kind == "inval" else 1
        calls = _paced(start_at, duration, rate // batch, lambda i: self._step(i, batch))
        return {"sent": calls * batch, "ops": calls}


def _worker(role: str, url: str, todo: Any, out: Any) -> None:
    """A spawned process: open a cache, run windows, close it, as the parent says."""
    if role == "reader":
        _count_messages()
        # On 2 cores, N readers would otherwise starve the drivers and Redis, and R and F
        # would not be what was asked; in production Redis and the writers have their own CPUs.
        os.nice(5)
    this: Any = None
    while (cmd := todo.get()) is not None:
        op, args = cmd
        if op == "open":
            this = _Reader(url, *args) if role == "reader" else _Driver(url, args[0], role)
            out.put("ready")
        elif op == "run":
            out.put(this.run(*args))
        elif op == "close":
            this.cache.close()
            out.put("closed")


# ---------------------------------------------------------------------------- driver side


class _Proc:
    def __init__(self, ctx: Any, role: str, url: str) -> None:
        self.todo, self.out = ctx.Queue(), ctx.Queue()
        self.p = ctx.Process(target=_worker, args=(role, url, self.todo, self.out), daemon=True)
        self.p.start()

    def send(self, op: str, *args: Any) -> None:
        self.todo.put((op, args))

    def get(self) -> Any:
        return self.out.get(timeout=120)


def _redis_usage(r: redis.Redis) -> tuple[float, collections.Counter[str]]:
    cpu = r.info("cpu")
    calls: collections.Counter[str] = collections.Counter()
    for name, st in r.info("commandstats").items():
        calls[name.removeprefix("cmdstat_")] = int(st["calls"])
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]), calls


def _drained(r: redis.Redis, timeout: float = 10) -> None:
    """Wait until Redis holds no unread message for any subscriber (readers left behind)."""
    end = time.monotonic() + timeout
    while any(int(c["omem"]) for c in r.client_list("pubsub")) and time.monotonic() < end:
        time.sleep(0.05)


def publish_cost(port: int, subs: tuple[int, ...], window: float, rounds: int) -> list[float]:
    """Redis CPU (µs) per invalidate call against the number of subscribers (median of rounds).

    The subscribers are bare sockets never read: a window's messages (about 20 kB) fit in their
    receive buffers, so Redis writes them as to any subscriber and no client's CPU competes.
    """
    r = redis.Redis(port=port)
    cache = Cache(f"redis://127.0.0.1:{port}/0", namespace="pubcost", local=None)
    out: dict[int, list[float]] = {n: [] for n in subs}
    for n in [*subs] * rounds:  # interleaved: a slow patch of the machine hits every N alike
        socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
        for sk in socks:
            sk.sendall(b"SUBSCRIBE pubcost:inv\r\n")
        time.sleep(0.1)
        cpu0, _ = _redis_usage(r)
        sent = _paced(time.monotonic(), window, PUB_RATE, lambda i: cache.invalidate(f"c:{i}"))
        out[n].append((_redis_usage(r)[0] - cpu0) / max(sent, 1) * 1e6)
        for sk in socks:
            sk.close()
    cache.close()
    r.close()
    return [statistics.median(out[n]) for n in subs]


def recheck_cost(port: int, calls: int = 10_000) -> tuple[float, float]:
    """µs per L1 hit in a tight loop, inlined and re-checking its stamps (median of 5 rounds)."""
    cache = Cache(f"redis://127.0.0.1:{port}/0", namespace="recheck", local=Local())
    hot = cache.cached(ttl=300, key="hot:{i}", tags=["hot:{i}"])(_value)
    cache.backend.listener.alive.wait(10)  # type: ignore[attr-defined]
    near = cache._engine.near  # the epoch an invalidation message would bump
    assert near is not None
    out: tuple[list[float], list[float]] = ([], [])
    for bump in [False, True] * 5:  # interleaved: a slow patch of the machine hits both alike
        took = 0
        for i in [*range(HOT_KEYS)] * (calls // HOT_KEYS):
            near.epoch += bump
            t0 = time.perf_counter_ns()
            hot(i)
            took += time.perf_counter_ns() - t0
        out[bump].append(took / calls / 1000)
    cache.close()
    return statistics.median(out[False]), statistics.median(out[True])


def run_cells(
    ns_list: tuple[int, ...], cells: tuple[tuple[int, int, int], ...], window: float
) -> list[dict[str, Any]]:
    """Every (N, R, F, batch) cell, one window each; readers spawned once and reused."""
    ctx = mp.get_context("spawn")
    out: list[dict[str, Any]] = []
    with RedisServer() as server:
        r = redis.Redis.from_url(server.url)
        readers = [_Proc(ctx, "reader", server.url) for _ in range(max(ns_list))]
        inval, filler = _Proc(ctx, "inval", server.url), _Proc(ctx, "filler", server.url)
        try:
            for n in ns_list:
                ns = f"fan{n}-{uuid.uuid4().hex[:6]}"  # a fresh channel for every fleet size
                for group in (readers[:n], (inval, filler)):  # subscribed before any message
                    for p in group:
                        p.send("open", ns)
                    assert all(p.get() == "ready" for p in group)
                ((_, subs),) = r.pubsub_numsub(f"{ns}:inv")
                for rate, fills, batch in cells:
                    start = time.monotonic() + LEAD
                    for p, rt in ((inval, rate), (filler, fills), *((q, 0) for q in readers[:n])):
                        p.send("run", start, window, rt, batch)
                    _sleep_until(start)
                    cpu0, cmd0 = _redis_usage(r)
                    _sleep_until(start + window)
                    cpu1, cmd1 = _redis_usage(r)
                    inv, fill = inval.get(), filler.get()
                    cell: dict[str, Any] = {"n": n, "rate": rate, "fills": fills}
                    cell.update(batch=batch, window=window, subscribers=int(subs))
                    cell.update(inv_sent=inv["sent"], inv_calls=inv["ops"], fill_sent=fill["sent"])
                    cell.update(redis_cpu=cpu1 - cpu0, commands=cmd1 - cmd0)
                    out.append({**cell, "readers": [q.get() for q in readers[:n]]})
                    _drained(r)
                for p in (active := [*readers[:n], inval, filler]):
                    p.send("close")
                assert all(p.get() == "closed" for p in active)
        finally:
            for p in [*readers, inval, filler]:
                p.todo.put(None)  # each exits its loop; daemons, so none outlives the run
            r.close()
    return out


# ---------------------------------------------------------------------------- report


def _row(c: dict[str, Any], base: dict[str, Any] | None) -> dict[str, Any]:
    """One cell's numbers: medians over its readers, Redis per operation over idle."""
    rd, w = c["readers"], c["window"]

    def med(key: str) -> float:
        return float(statistics.median(x[key] for x in rd))

    def share(key: str) -> float:  # a percentage of the calls made
        return float(statistics.median(100 * x[key] / max(x["hits"] + x["other"], 1) for x in rd))

    nan = float("nan")
    ops = c["inv_calls"] + c["fill_sent"]
    msgs = med("inv") + med("fill")
    cmds = sum(v for k, v in c["commands"].items() if k not in ("ping", "info"))
    base = base or {"readers": [{"cpu": nan}], "redis_cpu": nan}
    reader_extra = med("cpu") - statistics.median(x["cpu"] for x in base["readers"])
    redis_extra = c["redis_cpu"] - base["redis_cpu"]
    batched = f" (batches of {c['batch']})" if c["batch"] > 1 else ""
    row = {k: c[k] for k in ("n", "rate", "fills", "batch", "subscribers")}
    row.update(label=f"R={c['rate']}{batched}, F={c['fills']}", p50=med("p50"), p99=med("p99"))
    row.update(inv_sent_s=c["inv_sent"] / w, fill_sent_s=c["fill_sent"] / w)
    row.update(inv_msgs_s=med("inv") / w, fill_msgs_s=med("fill") / w)
    row.update(fill_msgs_max=max(x["fill"] for x in rd), l1_pct=share("hits"))
    row.update(fast_pct=share("fast"), p99_lo=min(x["p99"] for x in rd))
    row.update(p99_hi=max(x["p99"] for x in rd), reader_cpu_pct=100 * med("cpu") / w)
    row.update(reader_us_per_msg=reader_extra / msgs * 1e6 if msgs else nan)
    row.update(redis_cpu_pct=100 * c["redis_cpu"] / w, cmds_per_op=cmds / ops if ops else nan)
    row.update(redis_us_per_op=redis_extra / ops * 1e6 if ops else nan)
    return row


def summarize(cells: list[dict[str, Any]], pub: list[tuple[int, float]]) -> dict[str, Any]:
    """Per-cell rows (numbers) and the fitted costs the docs' model uses."""
    base = {c["n"]: c for c in cells if c["rate"] == 0 and c["fills"] == 0}
    rows = [_row(c, base.get(c["n"])) for c in cells]
    busy = [r for r in rows if r["rate"] >= 1000 and r["fills"] == 0 and r["batch"] == 1]
    per_msg = [r["reader_us_per_msg"] for r in busy]
    # Redis CPU per invalidation against subscribers: the slope is one more subscriber's
    # delivery, the intercept the script and the PUBLISH with nobody listening.
    fit = statistics.linear_regression([n for n, _ in pub], [us for _, us in pub])
    nan = float("nan")
    out = {"rows": rows, "publish": pub, "redis_us_per_inv": fit.intercept}
    out.update(
        redis_us_per_subscriber_msg=fit.slope, reader_us_per_msg=statistics.median(per_msg or [nan])
    )
    return out


def _us(x: float) -> str:
    return "n/a" if x != x else f"{x:.1f}" if abs(x) < 100 else num(x)


def _cells(r: dict[str, Any]) -> list[object]:
    traffic = f"{r['label']} ({num(r['inv_sent_s'])} inv, {num(r['fill_sent_s'])} fills)"
    return [
        *(r["n"], traffic, num(r["inv_msgs_s"]), num(r["fill_msgs_s"])),
        f"{r['l1_pct']:.1f} ({r['fast_pct']:.1f})",
        *(_us(r["p50"]), f"{_us(r['p99'])} ({_us(r['p99_lo'])}..{_us(r['p99_hi'])})"),
        *(f"{r['reader_cpu_pct']:.1f}", f"{r['redis_cpu_pct']:.1f}"),
        *(_us(r["redis_us_per_op"]), _us(r["cmds_per_op"])),
    ]


def section(s: dict[str, Any], window: float, cmd: str) -> Section:
    """The table, the fitted model and the figures (``s`` from :func:`summarize`)."""
    rows, pub = s["rows"], s["publish"]
    title = f"Fan-out: N processes with a bounded L1, R invalidations/s, F fills/s ({window:g} s"
    table = md_table(HEADERS.split("|"), [_cells(r) for r in rows], f"{title} window per row)")
    pub_row = ["Redis µs per invalidate call", *(_us(us) for _, us in pub)]
    pub_title = "Redis CPU per invalidation against subscribers (bare sockets, never read)"
    pub_table = md_table(["subscribers", *(str(n) for n, _ in pub)], [pub_row], pub_title)
    model = (
        f"Fitted: **{_us(s['redis_us_per_inv'])} µs of Redis CPU per invalidation + "
        f"{s['redis_us_per_subscriber_msg']:.2f} µs per subscriber**; each reader spends "
        f"**{_us(s['reader_us_per_msg'])} µs of its CPU per message** (median of the R = 1000, "
        f"F = 0 rows, over idle). An L1 hit in a tight loop: {s['hit_fast_us']:.2f} µs inlined, "
        f"{s['hit_recheck_us']:.2f} µs re-checking its stamps (after any invalidation message)."
    )
    notes = (
        f"Command: `{cmd}`. Medians over the readers. *L1 hits %*: calls that did not read "
        "Redis (only those are timed); *fast path %*: hits the inlined path served. *Redis µs "
        "/op over idle*: Redis CPU (user + sys) over the readers' idle cost, per invalidate call "
        "or fill; *cmds /op* includes commands run inside scripts. On 2 cores, from N = 4 "
        "latency and CPU include scheduling (readers at nice 5 so that R and F are met)."
    )
    p99 = [
        (f"N={r['n']}, R={r['rate']}/s", r["p99"], r["p99_lo"], r["p99_hi"])
        for r in rows
        if r["fills"] == 0 and r["batch"] == 1
    ]
    pubs = [(f"{n} subscribers", us, us, us) for n, us in pub]
    p99_title = "Fan-out: p99 of an L1 hit while invalidations flow (F = 0)"
    pub_title = "Fan-out: Redis CPU per invalidation against subscribers"
    figures = [
        Figure("fanout_p99", p99_title, "p99 µs, log scale (min..max over readers)", p99, log=True),
        Figure("fanout_publish", pub_title, "µs of Redis CPU per invalidate call", pubs),
    ]
    return Section("\n\n".join([table, pub_table, model, notes]), figures, {"fanout": s})


def collect(
    quick: bool,
    ns_list: tuple[int, ...] | None = None,
    cells: tuple[tuple[int, int, int], ...] | None = None,
    window: float | None = None,
    subs: tuple[int, ...] | None = None,
) -> Section:
    """Run the cells (the --quick or full sizes unless given) and report them."""
    ns_list = ns_list or (QUICK_NS if quick else FULL_NS)
    cells = cells or (QUICK_CELLS if quick else FULL_CELLS)
    window = window or (1.0 if quick else 2.0)
    subs = subs or ((0, 32, 128) if quick else (0, 32, 64, 128, 256))
    grid = run_cells(ns_list, cells, window)
    with RedisServer() as server:  # its own: no reader left subscribed, no backlog
        costs = publish_cost(server.port, subs, window / 2, 1 if quick else 3)
        hit = recheck_cost(server.port)
    s = summarize(grid, list(zip(subs, costs, strict=True)))
    s["hit_fast_us"], s["hit_recheck_us"] = hit
    return section(s, window, "python -m benchmarks.bench_fanout" + " --quick" * quick)


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="N = 2, 8; four cells; 1 s windows")
    ap.add_argument("--out", default="", help="also draw the PNG plots into this folder")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    sec = collect(args.quick)
    out = f"{environment()}\n\n{sec.markdown}\n\n_Run time: {time.monotonic() - t0:.0f} s._"
    print(out)
    for fig in sec.figures if args.out else []:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        print("wrote", draw(fig, Path(args.out)))
    return out


if __name__ == "__main__":
    main()
