"""The expiry spike: what the callers of one hot key feel each time its entry expires.

    python -m benchmarks.bench_spike [--quick] [--seconds S]

One key with a 1 s TTL, 8 threads (asyncio libraries: 8 tasks on one loop) calling it in a loop
for 5 s (``--quick``: 3 s), a loader that takes 50 ms. Each caller pauses 1 ms between calls
(the rest of its request), so the latencies measure the cache and not 8 threads fighting for
the GIL. One warm-up call fills the entry before the clock starts: the cold miss is not the
spike being measured, and loader runs count only runs inside the window.

A plain TTL makes every caller that arrives during a reload wait for it (or run it too);
refresh-ahead, stale-while-revalidate and background creation should turn that spike into
zero slow calls with about one loader run per TTL.

Two columns say where slow calls came from. "First calls": a caller's first call of the window
(all callers start at once; a Redis client without ready connections opens them then). "In a
machine stall": the call overlapped a stall of a separate probe process that only sleeps 1 ms
at a time (:class:`StallProbe`); it shares nothing with the callers but the machine, so when
both stall together the time went to the machine (another process, the hypervisor), not to
the library. Every row is measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import cachetools

from benchmarks._harness import environment
from freshlink import Cache, Local
from freshlink.testing import RedisServer

TTL = 1.0
THREADS = 8
LOAD_TIME = 0.05
PAUSE = 0.001
SLOW = 0.010


@dataclass
class Result:
    """One row: loader runs inside the window and every call's latency (seconds)."""

    name: str
    loads: int
    latencies: list[float]
    #: Slow calls that were a caller's first call of the window (its connection, thread start).
    first_slow: int = 0
    #: Slow calls that overlapped a stall of the probe process (see :class:`StallProbe`).
    stalled: int = 0


class Loader:
    """The 50 ms source of truth, counting its runs (sync and async flavours)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs = 0

    def _count(self) -> int:
        with self._lock:
            self.runs += 1
            return self.runs

    def sync(self, key: int) -> dict[str, int]:
        n = self._count()
        time.sleep(LOAD_TIME)
        return {"key": key, "version": n}

    async def aio(self, key: int) -> dict[str, int]:
        n = self._count()
        await asyncio.sleep(LOAD_TIME)
        return {"key": key, "version": n}


#: The probe: sleeps 1 ms at a time and prints each sleep that overran by more than 4 ms (its
#: start and length, on the monotonic clock ``time.perf_counter`` reads in every process).
_PROBE = """
import sys, time
clock, sleep = time.perf_counter, time.sleep
print("ready", flush=True)
while True:
    t = clock(); sleep(0.001); d = clock() - t
    if d > 0.005:
        print(t, d, flush=True)
"""


class StallProbe:
    """A separate process that records when the machine did not run it (stalls > 5 ms)."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _PROBE], stdout=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        self._proc.stdout.readline()  # "ready"
        self.stalls: list[tuple[float, float]] = []

    def stop(self) -> None:
        """Stop the probe and collect its stalls (start, end)."""
        self._proc.terminate()
        out, _ = self._proc.communicate()
        for line in out.splitlines():
            t, d = map(float, line.split())
            self.stalls.append((t, t + d))

    def overlapping(self, calls: list[tuple[float, float]]) -> int:
        """How many of the ``(start, end)`` intervals overlap a stall."""
        return sum(1 for a, b in calls if any(s < b and a < e for s, e in self.stalls))


def _result(
    name: str,
    loads: int,
    per_caller: list[list[float]],
    slow: list[tuple[float, float]],
    probe: StallProbe,
) -> Result:
    first = sum(1 for out in per_caller if out and out[0] > SLOW)
    latencies = [x for out in per_caller for x in out]
    return Result(name, loads, latencies, first, probe.overlapping(slow))


def run_threads(name: str, call: Callable[[], object], loader: Loader, seconds: float) -> Result:
    """Warm once, then THREADS threads call ``call`` until the window closes."""
    call()
    warm = loader.runs
    per_thread: list[list[float]] = [[] for _ in range(THREADS)]
    slow: list[tuple[float, float]] = []
    probe = StallProbe()
    deadline = time.perf_counter() + seconds

    def worker(out: list[float]) -> None:
        clock = time.perf_counter
        while True:
            t0 = clock()
            call()
            t1 = clock()
            out.append(t1 - t0)
            if t1 - t0 > SLOW:
                slow.append((t0, t1))
            if t1 >= deadline:
                return
            time.sleep(PAUSE)

    threads = [threading.Thread(target=worker, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    probe.stop()
    return _result(name, loader.runs - warm, per_thread, slow, probe)


def run_tasks(
    name: str, call: Callable[[], Awaitable[object]], loader: Loader, seconds: float
) -> Result:
    """The asyncio twin of :func:`run_threads`: THREADS tasks on one event loop."""

    async def main() -> Result:
        await call()
        warm = loader.runs
        per_task: list[list[float]] = [[] for _ in range(THREADS)]
        slow: list[tuple[float, float]] = []
        probe = StallProbe()
        deadline = time.perf_counter() + seconds

        async def worker(out: list[float]) -> None:
            clock = time.perf_counter
            while True:
                t0 = clock()
                await call()
                t1 = clock()
                out.append(t1 - t0)
                if t1 - t0 > SLOW:
                    slow.append((t0, t1))
                if t1 >= deadline:
                    return
                await asyncio.sleep(PAUSE)

        await asyncio.gather(*(worker(out) for out in per_task))
        probe.stop()
        return _result(name, loader.runs - warm, per_task, slow, probe)

    return asyncio.run(main())


# --------------------------------------------------------------------------- cases


def freshlink_case(
    name: str,
    url: str,
    seconds: float,
    *,
    l1: bool = False,
    asynchronous: bool = False,
    **options: Any,
) -> Result:
    loader = Loader()
    local: dict[str, Any] = {}
    if url != "memory://":
        local["local"] = Local(max_staleness=1.0) if l1 else None
    cache = Cache(url, namespace="spike", **local)
    try:
        cached = cache.cached(ttl=TTL, key="loan:{key}", **options)
        if asynchronous:
            afn = cached(loader.aio)
            return run_tasks(name, lambda: afn(7), loader, seconds)
        fn = cached(loader.sync)
        return run_threads(name, lambda: fn(7), loader, seconds)
    finally:
        cache.refresher.close(wait=True)
        cache.close()


def cachetools_case(seconds: float, *, condition: bool) -> Result:
    loader = Loader()
    ttl_cache: cachetools.TTLCache[Any, Any] = cachetools.TTLCache(maxsize=1024, ttl=TTL)
    if condition:
        cond = threading.Condition()
        fn = cachetools.cached(ttl_cache, lock=cond, condition=cond)(loader.sync)
        name = "cachetools.cached(TTLCache, condition=Condition())"
    else:
        fn = cachetools.cached(ttl_cache, lock=threading.Lock())(loader.sync)
        name = "cachetools.cached(TTLCache, lock=Lock())"
    return run_threads(name, lambda: fn(7), loader, seconds)


def dogpile_case(seconds: float) -> Result | None:
    try:
        from dogpile.cache import make_region
    except ImportError:
        return None
    loader = Loader()

    def async_creation_runner(region: Any, key: Any, creator: Any, mutex: Any) -> None:
        # The recipe from dogpile's CacheRegion docs: create in a background thread while
        # every caller (the one that got the mutex included) is served the expired value.
        def runner() -> None:
            try:
                region.set(key, creator())
            finally:
                mutex.release()

        threading.Thread(target=runner, daemon=True).start()

    region = make_region(async_creation_runner=async_creation_runner).configure(
        "dogpile.cache.memory", expiration_time=TTL
    )

    def load(key: int) -> dict[str, int]:  # dogpile decorates functions, not bound methods
        return loader.sync(key)

    fn = region.cache_on_arguments()(load)
    return run_threads(
        "dogpile.cache memory, async_creation_runner", lambda: fn(7), loader, seconds
    )


def cashews_case(seconds: float) -> Result | None:
    try:
        from cashews import Cache as CashewsCache
    except ImportError:
        return None
    loader = Loader()
    cache = CashewsCache()
    cache.setup("mem://")

    # cashews parses only whole numbers in duration strings ("0.8s" is rejected): numbers.
    async def load(key: int) -> dict[str, int]:
        return await loader.aio(key)

    fn = cache.early(ttl=TTL, early_ttl=0.8 * TTL)(load)
    return run_tasks(
        "cashews mem, early(ttl=1s, early_ttl=0.8s), 8 tasks", lambda: fn(7), loader, seconds
    )


# --------------------------------------------------------------------------- table


def pct(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(r: Result) -> str:
    ms = [x * 1000 for x in r.latencies]
    slow = sum(1 for x in r.latencies if x > SLOW)
    return (
        f"| {r.name} | {r.loads} | {len(ms):,} | {slow:,} | {r.first_slow} | {r.stalled} "
        f"| {statistics.median(ms):.3f} "
        f"| {pct(ms, 0.99):.3f} | {max(ms):.1f} |"
    )


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="a 3 s window instead of 5 s")
    ap.add_argument("--seconds", type=float, default=None, help="window length")
    args = ap.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else 3.0 if args.quick else 5.0
    env = environment()
    with contextlib.suppress(metadata.PackageNotFoundError):
        if "cashews" not in env:
            env += f", cashews {metadata.version('cashews')}"
    results: list[Result] = []
    mem = "memory://"
    results.append(freshlink_case("freshlink memory://, plain TTL", mem, seconds))
    results.append(freshlink_case("freshlink memory://, ahead=0.8", mem, seconds, ahead=0.8))
    results.append(
        freshlink_case(
            "freshlink memory://, stale_while_revalidate=2",
            mem,
            seconds,
            stale_while_revalidate=2,
        )
    )
    results.append(
        freshlink_case(
            "freshlink memory://, ahead=0.8, 8 tasks", mem, seconds, asynchronous=True, ahead=0.8
        )
    )
    results.append(
        freshlink_case(
            "freshlink memory://, stale_while_revalidate=2, 8 tasks",
            mem,
            seconds,
            asynchronous=True,
            stale_while_revalidate=2,
        )
    )
    policies: tuple[tuple[str, dict[str, Any]], ...] = (
        ("ahead=0.8", {"ahead": 0.8}),
        ("stale_while_revalidate=2", {"stale_while_revalidate": 2}),
    )
    with RedisServer() as server:
        for label, l1 in (("strict, no L1", False), ("bounded L1", True)):
            for policy, option in policies:
                for asynchronous in (False, True):
                    callers = ", 8 tasks" if asynchronous else ""
                    results.append(
                        freshlink_case(
                            f"freshlink Redis {label}, {policy}{callers}",
                            server.url,
                            seconds,
                            l1=l1,
                            asynchronous=asynchronous,
                            **option,
                        )
                    )
    results.append(cachetools_case(seconds, condition=False))
    results.append(cachetools_case(seconds, condition=True))
    for extra in (dogpile_case(seconds), cashews_case(seconds)):
        if extra is not None:
            results.append(extra)
    out = "\n".join(
        [
            env,
            "",
            f"### Expiry spike: one key, TTL {TTL:g} s, {THREADS} callers for {seconds:g} s, "
            f"loader {LOAD_TIME * 1000:.0f} ms",
            "",
            "| case | loader runs | calls | calls > 10 ms | of them first calls "
            "| of them in a machine stall | p50 ms | p99 ms | max ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            *(row(r) for r in results),
            "",
            "Loader runs exclude one warm-up call. With a plain TTL the entry is reloaded "
            f"about every {TTL + LOAD_TIME:g} s (TTL + load); refresh-ahead at 0.8 reloads "
            f"about every {0.8 * TTL + LOAD_TIME:g} s. Each caller pauses {PAUSE * 1000:g} ms "
            f"between calls; a call is slow above {SLOW * 1000:g} ms. "
            '"Of them first calls": slow calls that were a caller\'s first of the window (all '
            "callers start at once; a Redis client without ready connections opens them then), "
            'not a wait for an expiry. "In a machine stall": slow calls that overlapped a '
            "stall (> 5 ms) of a separate process that only sleeps, so the machine, not the "
            "library, held them up (a call may be counted in both columns).",
        ]
    )
    print(out)
    return out


if __name__ == "__main__":
    main()
