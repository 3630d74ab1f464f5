"""Multi-process workloads on a real Redis: coherence histories and stampedes.

Each worker is a separate process (``spawn``), as app servers would be. They share a "source
of truth" in shared memory, so the only path by which one process learns of another's write
is freshlink itself.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import random
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

from .._drive import adrive, drive
from ..cache import Cache
from ..errors import BackendError
from ..local import Local
from .history import ReadRecord, Violation, WriteRecord, check

__all__ = ["CoherenceRun", "StampedeRun", "run_coherence", "run_stampede"]

MODES = ("strict", "strict-l1", "bounded")


def _make_cache(url: str, mode: str, max_staleness: float) -> Cache:
    local: Local | None
    if mode == "strict":
        local = None
    elif mode == "strict-l1":
        local = Local(mode="strict")
    else:
        local = Local(mode="bounded", max_staleness=max_staleness)
    cache = Cache(url, namespace="coherence", local=local)
    if mode == "bounded":
        listener = cache.backend.listener  # type: ignore[attr-defined]
        listener.alive.wait(10)
    return cache


@dataclass(frozen=True)
class _Start:
    """One start time for every worker, fixed once all of them are set up.

    A fixed delay after spawning is not enough on a busy machine: interpreters that take
    longer to import than the delay would start late, or not at all within the run.
    """

    ready: Any
    go: Any
    at: Any

    @classmethod
    def make(cls, ctx: Any, workers: int) -> _Start:
        """For ``workers`` processes and the parent."""
        return cls(ctx.Barrier(workers + 1), ctx.Barrier(workers + 1), ctx.Value("d", 0.0))

    def wait(self) -> float:
        """In a worker, once set up: the start time (``time.monotonic``, system-wide)."""
        self.ready.wait(timeout=300)
        self.go.wait(timeout=300)
        return float(self.at.value)

    def release(self, lead: float = 0.3) -> float:
        """In the parent: wait for every worker, then start them all ``lead`` seconds later."""
        self.ready.wait(timeout=300)
        self.at.value = time.monotonic() + lead
        self.go.wait(timeout=300)
        return float(self.at.value)


@dataclass(frozen=True)
class _Plan:
    """When a reader runs and what it reads (shared by the sync and the async reader)."""

    items: int
    start: _Start
    duration: float
    settle: float


# What a reader does, as steps: ("sleep", seconds) or ("get", item), which the sync and the
# async drivers below perform; the value of a "get" is sent back in.
_Steps = Generator[tuple[str, float], Any, list[tuple[str, int, float, float]]]


def _reads(plan: _Plan, start_at: float, rng: random.Random) -> _Steps:
    records = []
    yield ("sleep", max(start_at - time.monotonic(), 0))
    end = start_at + plan.duration
    while (t0 := time.monotonic()) < end:
        i = rng.randrange(plan.items)
        v = yield ("get", i)
        records.append((str(i), v, t0, time.monotonic()))
    # The writers have stopped: once the bound has passed, every item must read its last value.
    yield ("sleep", max(end + plan.settle - time.monotonic(), 0))
    for i in range(plan.items):
        t0 = time.monotonic()
        v = yield ("get", i)
        records.append((str(i), v, t0, time.monotonic()))
    return records


def _reader(
    url: str, mode: str, max_staleness: float, plan: _Plan, truth: Any, seed: int, out: Any
) -> None:
    rng = random.Random(seed)
    cache = _make_cache(url, mode, max_staleness)

    @cache.cached(ttl=300, key="item:{i}", tags=["item:{i}"])
    def get(i: int) -> int:
        v = int(truth[i])
        # Return late, after a concurrent write may have been acknowledged: this is the
        # cache-aside stale-set race that versioned keys must make harmless.
        time.sleep(rng.random() * 0.003)
        return v

    def perform(op: tuple[str, Any]) -> Any:
        kind, arg = op
        return get(int(arg)) if kind == "get" else time.sleep(arg)

    records = drive(_reads(plan, plan.start.wait(), rng), perform)
    cache.close()
    out.put(("reads", records))


def _areader(
    url: str, mode: str, max_staleness: float, plan: _Plan, truth: Any, seed: int, out: Any
) -> None:
    """The same reader on the async path (one task, as one request at a time per worker)."""

    async def main() -> list[tuple[str, int, float, float]]:
        rng = random.Random(seed)
        cache = _make_cache(url, mode, max_staleness)

        @cache.cached(ttl=300, key="item:{i}", tags=["item:{i}"])
        async def get(i: int) -> int:
            v = int(truth[i])
            await asyncio.sleep(rng.random() * 0.003)
            return v

        async def perform(op: tuple[str, Any]) -> Any:
            kind, arg = op
            return await (get(int(arg)) if kind == "get" else asyncio.sleep(arg))

        # Blocking the loop while waiting to start is fine: nothing else runs on it yet.
        records = await adrive(_reads(plan, plan.start.wait(), rng), perform)
        await cache.aclose()
        return list(records)

    out.put(("reads", asyncio.run(main())))


def _writer(
    url: str,
    items: int,
    truth: Any,
    lock: Any,
    start: _Start,
    duration: float,
    seed: int,
    out: Any,
) -> None:
    rng = random.Random(seed)
    cache = Cache(url, namespace="coherence", local=None)
    records = []
    start_at = start.wait()
    time.sleep(max(start_at - time.monotonic(), 0))
    end = start_at + duration
    while (t0 := time.monotonic()) < end:
        i = rng.randrange(items)
        with lock:
            truth[i] += 1
            v = int(truth[i])
        acked: float | None
        try:
            cache.invalidate(f"item:{i}")
            acked = time.monotonic()
        except BackendError:
            acked = None  # not acknowledged: promises nothing (the app would retry)
        records.append((str(i), v, t0, acked))
        time.sleep(rng.random() * 0.01)
    cache.close()
    out.put(("writes", records))


@dataclass
class CoherenceRun:
    """What a coherence run recorded, and its verdict."""

    mode: str
    bound: float
    reads: list[ReadRecord] = field(default_factory=list)
    writes: list[WriteRecord] = field(default_factory=list)

    @property
    def violations(self) -> list[Violation]:
        """Reads older than a write acknowledged ``bound`` before they began."""
        return check(self.writes, self.reads, self.bound)

    @property
    def acked_writes(self) -> int:
        """Writes whose invalidation was acknowledged."""
        return sum(w.acked is not None for w in self.writes)

    @property
    def stale_after_writers_stopped(self) -> list[str]:
        """Items that some reader still read stale once the writers had stopped and settled."""
        last = max((w.acked for w in self.writes if w.acked is not None), default=None)
        if last is None:
            return []
        return sorted(
            {v.read.item for v in self.violations if v.read.started > last + self.bound},
            key=int,
        )


def run_coherence(
    url: str,
    mode: str,
    *,
    readers: int = 4,
    writers: int = 2,
    items: int = 3,
    duration: float = 2.0,
    max_staleness: float = 0.05,
    disrupt: Callable[[float], None] | None = None,
    is_async: bool = False,
    settle: float | None = None,
) -> CoherenceRun:
    """Run reader and writer processes against ``url`` and collect their history.

    ``disrupt(elapsed)`` is called about every 10 ms in this process during the run, to kill
    connections, restart Redis or fill its memory on a schedule. Readers run the async read
    path with ``is_async``. After ``duration`` the writers stop, and ``settle`` seconds later
    (default: the bound plus 0.2 s) every reader reads every item once more.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    ctx = mp.get_context("spawn")
    truth = ctx.Array("q", items)
    lock = ctx.Lock()
    out = ctx.Queue()
    wait = (max_staleness + 0.2) if settle is None else settle
    start = _Start.make(ctx, readers + writers)
    plan = _Plan(items, start, duration, wait)
    procs = [
        ctx.Process(
            target=_areader if is_async else _reader,
            args=(url, mode, max_staleness, plan, truth, 1000 + n, out),
        )
        for n in range(readers)
    ] + [
        ctx.Process(target=_writer, args=(url, items, truth, lock, start, duration, n, out))
        for n in range(writers)
    ]
    for p in procs:
        p.start()
    run = CoherenceRun(mode, 0.0 if mode != "bounded" else max_staleness)
    start_at = start.release()
    if disrupt is not None:
        time.sleep(max(start_at - time.monotonic(), 0))
        while (elapsed := time.monotonic() - start_at) < duration:
            disrupt(elapsed)
            time.sleep(0.01)
    for _ in procs:
        kind, records = out.get(timeout=duration + 60)
        if kind == "reads":
            run.reads += [ReadRecord(*r) for r in records]
        else:
            run.writes += [WriteRecord(i, v, t0, acked) for i, v, t0, acked in records]
    for p in procs:
        p.join(30)
    return run


def _stampede(
    url: str, threads: int, loader_time: float, loads: Any, start: _Start, key: str, out: Any
) -> None:
    cache = Cache(url, namespace="stampede", local=None)

    @cache.cached(ttl=60, key=key)
    def cold() -> str:
        with loads.get_lock():
            loads.value += 1
        time.sleep(loader_time)
        return "value"

    # Warm the process as a running app server would be: a connection per thread in the
    # pool, scripts loaded, the fill channel subscribed. The stampede then measures
    # coordination, not connection set-up.
    warm = cache.cached(ttl=60, key="warm:{n}")(lambda n: "warm")
    warmers = [threading.Thread(target=warm, args=(n,)) for n in range(threads)]
    for t in warmers:
        t.start()
    for t in warmers:
        t.join()
    warm(0)
    cache.backend.ensure_listener().connected.wait(10)  # type: ignore[attr-defined]
    latencies: list[float] = []
    results: list[str] = []
    when: list[float] = []
    told = threading.Event()

    def call() -> None:
        told.wait()
        time.sleep(max(when[0] - time.monotonic(), 0))
        t0 = time.monotonic()
        results.append(cold())
        latencies.append(time.monotonic() - t0)

    ts = [threading.Thread(target=call) for _ in range(threads)]
    for t in ts:
        t.start()
    when.append(start.wait())  # every process is warm: all callers go at one instant
    told.set()
    for t in ts:
        t.join()
    cache.close()
    out.put((latencies, results))


@dataclass
class StampedeRun:
    """Loader runs and call latencies of a cold-key stampede."""

    loads: int
    latencies: list[float]
    results: list[str]


def run_stampede(
    url: str, *, processes: int = 4, threads: int = 25, loader_time: float = 0.05
) -> StampedeRun:
    """``processes`` x ``threads`` callers hit one cold key at the same instant."""
    ctx = mp.get_context("spawn")
    loads = ctx.Value("i", 0)
    out = ctx.Queue()
    start = _Start.make(ctx, processes)
    key = f"cold-{random.getrandbits(64):x}"  # a key no earlier run has filled
    procs = [
        ctx.Process(target=_stampede, args=(url, threads, loader_time, loads, start, key, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    start.release()
    latencies: list[float] = []
    results: list[str] = []
    for _ in procs:
        lat, res = out.get(timeout=60)
        latencies += lat
        results += res
    for p in procs:
        p.join(30)
    return StampedeRun(int(loads.value), latencies, results)
