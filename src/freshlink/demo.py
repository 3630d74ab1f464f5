"""``freshlink demo``: the expired-loan-link story, run twice, measured.

A small lending platform: several app nodes serve a borrower's "my loan" page; the page shows
the loan's payment link, which is valid until the back office renews it. Renewals come at a
steady beat: the old link stops working at the moment the new one is written, so a page that
shows the old link after the renewal was acknowledged tells the borrower "link expired".

The same traffic runs twice:

* **naive cache-aside**: each node keeps a ``cachetools.TTLCache``; after a renewal the writer
  deletes the key in its own node and broadcasts the delete to the others, which hear of it
  a little later (a message bus). Loaders read the database and return a few milliseconds
  later, so a fill that read the old row can land after the delete: the stale-set race.
* **freshlink**: each node has its own ``Cache`` (its own L1) over one shared backend; the
  writer calls ``invalidate("loan:7")``.

With no URL, nodes are threads over the embedded backend (an in-process channel); with
``--url redis://...``, nodes are separate processes on that Redis.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from ._demo_plot import Ack, Page
from ._demo_plot import plot as plot  # re-exported: the CLI imports it from here
from .cache import Cache
from .errors import BackendError
from .local import Local
from .testing.history import ReadRecord, WriteRecord, check

__all__ = ["DemoConfig", "SetupResult", "render_table", "run_demo"]

LOAN = 7


@dataclass
class DemoConfig:
    """Knobs of the simulated platform (defaults: a 5-second run on 4 nodes)."""

    nodes: int = 4
    threads_per_node: int = 2
    duration: float = 5.0
    renew_every: float = 0.1
    loader_delay: tuple[float, float] = (0.001, 0.015)
    broadcast_delay: tuple[float, float] = (0.005, 0.06)
    think_time: float = 0.002
    seed: int = 7
    url: str | None = None


@dataclass
class SetupResult:
    """What one setup showed the borrower."""

    name: str
    pages: int
    expired_after_ack: int
    stale_window_ms: float
    loader_calls: int
    renewals: int
    p50_ms: float
    p99_ms: float
    timeline: list[Page] = field(default_factory=list, repr=False)
    acks: list[Ack] = field(default_factory=list, repr=False)


# ---------------------------------------------------------------------------------- the "db"


class LoanDB:
    """The source of truth: one loan row whose link version the back office renews."""

    def __init__(self, rng: random.Random, delay: tuple[float, float]) -> None:
        self._lock = threading.Lock()
        self.version = 1
        self.loads = 0
        self._rng = rng
        self._delay = delay

    def load(self, loan_id: int) -> dict[str, Any]:
        """Read the row; return it a little later (the window of the stale-set race)."""
        with self._lock:
            self.loads += 1
            row = {
                "loan": loan_id,
                "version": self.version,
                "link": f"https://pay.example/loan/{loan_id}?v={self.version}",
            }
            pause = self._rng.uniform(*self._delay)
        time.sleep(pause)
        return row

    def renew(self) -> int:
        """Write a new link version."""
        with self._lock:
            self.version += 1
            return self.version


# ---------------------------------------------------------------------------- nodes (threads)


class NaiveNode:
    """cachetools per node, delete-after-write, deletes reach other nodes late."""

    name = "naive cache-aside (cachetools + delete)"

    def __init__(self, db: LoanDB) -> None:
        import cachetools

        self.db = db
        self.lock = threading.Lock()
        self.cache: cachetools.TTLCache[str, dict[str, Any]] = cachetools.TTLCache(1000, 60)

    def get_loan(self, loan_id: int) -> dict[str, Any]:
        key = f"loan:{loan_id}"
        with self.lock:
            row = self.cache.get(key)
        if row is not None:
            return row
        row = self.db.load(loan_id)
        with self.lock:
            self.cache[key] = row
        return row

    def forget(self, loan_id: int) -> None:
        with self.lock:
            self.cache.pop(f"loan:{loan_id}", None)


class FreshlinkNode:
    """One Cache (with its own L1) per node, all over one shared backend."""

    name = "freshlink (versioned keys)"

    def __init__(self, db: LoanDB, shared: Any) -> None:
        self.cache = Cache(backend=shared, namespace="demo", local=Local(mode="strict"))

        @self.cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}"])
        def get_loan(loan_id: int) -> dict[str, Any]:
            return db.load(loan_id)

        self.get_loan = get_loan


def _pages(
    get_loan: Callable[[int], dict[str, Any]],
    node: int,
    stop: threading.Event,
    think: float,
    out: list[tuple[int, float, float, int]],
) -> None:
    while not stop.is_set():
        t0 = time.monotonic()
        row = get_loan(LOAN)
        out.append((node, t0, time.monotonic(), int(row["version"])))
        if think:
            time.sleep(think)


def _run_threads(
    kind: str, cfg: DemoConfig, progress: Callable[[str, float, int], None]
) -> tuple[list[tuple[int, float, float, int]], list[tuple[int, float]], int]:
    rng = random.Random(cfg.seed)
    db = LoanDB(rng, cfg.loader_delay)
    nodes: list[Any]
    if kind == "naive":
        nodes = [NaiveNode(db) for _ in range(cfg.nodes)]
    else:
        from .backends.memory import MemoryBackend

        shared = MemoryBackend()
        nodes = [FreshlinkNode(db, shared) for _ in range(cfg.nodes)]
    for n in nodes:  # warm: the page is cached everywhere before the first renewal
        n.get_loan(LOAN)
    pages: list[tuple[int, float, float, int]] = []
    acks: list[tuple[int, float]] = []
    stop = threading.Event()
    workers = [
        threading.Thread(
            target=_pages, args=(n.get_loan, i, stop, cfg.think_time, pages), daemon=True
        )
        for i, n in enumerate(nodes)
        for _ in range(cfg.threads_per_node)
    ]
    start = time.monotonic()
    for w in workers:
        w.start()
    next_renewal = start + cfg.renew_every
    while (now := time.monotonic()) < start + cfg.duration:
        if now >= next_renewal:
            version = db.renew()
            if kind == "naive":
                nodes[0].forget(LOAN)
                for other in nodes[1:]:
                    t = threading.Timer(rng.uniform(*cfg.broadcast_delay), other.forget, (LOAN,))
                    t.daemon = True
                    t.start()
            else:
                nodes[0].cache.invalidate(f"loan:{LOAN}")
            acks.append((version, time.monotonic()))
            next_renewal += cfg.renew_every
        progress(kind, now - start, len(pages))
        time.sleep(0.001)
    stop.set()
    for w in workers:
        w.join(2)
    for n in nodes:
        if kind != "naive":
            n.cache.close()
    return pages, acks, db.loads


# -------------------------------------------------------------------------- nodes (processes)


def _proc_node(
    kind: str,
    url: str,
    node: int,
    cfg: DemoConfig,
    version: Any,
    loads: Any,
    start_at: float,
    out: Any,
) -> None:
    rng = random.Random(cfg.seed + node)

    class SharedDB(LoanDB):
        def load(self, loan_id: int) -> dict[str, Any]:
            with loads.get_lock():
                loads.value += 1
            v = int(version.value)
            time.sleep(rng.uniform(*cfg.loader_delay))
            return {"loan": loan_id, "version": v, "link": f"https://pay.example/l/{v}"}

    db = SharedDB(rng, cfg.loader_delay)
    closer: Callable[[], None]
    if kind == "naive":
        import redis

        n = NaiveNode(db)
        client: Any = redis.Redis.from_url(url)
        ps = client.pubsub(ignore_subscribe_messages=True)

        def on_delete(msg: dict[str, Any]) -> None:
            # The delete broadcast, as an app's message bus would deliver it: a little late.
            time.sleep(rng.uniform(*cfg.broadcast_delay))
            n.forget(LOAN)

        ps.subscribe(**{"demo:naive:deletes": on_delete})
        listener = ps.run_in_thread(sleep_time=0.001, daemon=True)
        get_loan: Callable[[int], dict[str, Any]] = n.get_loan

        def closer() -> None:
            # Stop the pub/sub thread before closing its connection under it.
            listener.stop()
            listener.join(2)
            ps.close()
            client.close()

    else:
        cache = Cache(url, namespace="demo", local=Local(mode="strict"))

        @cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}"])
        def cached_get_loan(loan_id: int) -> dict[str, Any]:
            return db.load(loan_id)

        get_loan = cached_get_loan
        closer = cache.close
    get_loan(LOAN)
    pages: list[tuple[int, float, float, int]] = []
    stop = threading.Event()
    ts = [
        threading.Thread(
            target=_pages, args=(get_loan, node, stop, cfg.think_time, pages), daemon=True
        )
        for _ in range(cfg.threads_per_node)
    ]
    time.sleep(max(start_at - time.monotonic(), 0))
    for t in ts:
        t.start()
    time.sleep(max(start_at + cfg.duration - time.monotonic(), 0))
    stop.set()
    for t in ts:
        t.join(2)
    closer()
    out.put(pages)


def _run_processes(
    kind: str, cfg: DemoConfig, progress: Callable[[str, float, int], None]
) -> tuple[list[tuple[int, float, float, int]], list[tuple[int, float]], int]:
    import redis

    assert cfg.url is not None
    ctx = mp.get_context("spawn")
    version = ctx.Value("q", 1)
    loads = ctx.Value("q", 0)
    out = ctx.Queue()
    start_at = time.monotonic() + 3.0  # spawned interpreters import first
    procs = [
        ctx.Process(target=_proc_node, args=(kind, cfg.url, i, cfg, version, loads, start_at, out))
        for i in range(cfg.nodes)
    ]
    for p in procs:
        p.start()
    writer = Cache(cfg.url, namespace="demo", local=None)
    client = redis.Redis.from_url(cfg.url)
    acks: list[tuple[int, float]] = []
    time.sleep(max(start_at - time.monotonic(), 0))
    next_renewal = start_at + cfg.renew_every
    while (now := time.monotonic()) < start_at + cfg.duration:
        if now >= next_renewal:
            with version.get_lock():
                version.value += 1
                v = int(version.value)
            try:
                if kind == "naive":
                    client.publish("demo:naive:deletes", "loan:7")
                else:
                    writer.invalidate(f"loan:{LOAN}")
                acks.append((v, time.monotonic()))
            except BackendError:
                pass  # not acknowledged: promises nothing
            next_renewal += cfg.renew_every
        progress(kind, now - start_at, 0)
        time.sleep(0.001)
    pages: list[tuple[int, float, float, int]] = []
    for _ in procs:
        pages += out.get(timeout=cfg.duration + 60)
    for p in procs:
        p.join(10)
    writer.close()
    client.close()
    return pages, acks, int(loads.value)


# ------------------------------------------------------------------------------------ running


def _percentile(xs: list[float], q: float) -> float:
    if not xs:
        return 0.0
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _measure(
    name: str, pages: list[tuple[int, float, float, int]], acks: list[tuple[int, float]], loads: int
) -> SetupResult:
    reads = [ReadRecord("loan", v, t0, t1) for _node, t0, t1, v in pages]
    writes = [WriteRecord("loan", v, t, t) for v, t in acks]
    violations = check(writes, reads)
    bad = {(v.read.started, v.read.version) for v in violations}
    window = max((v.read.started - v.acked for v in violations), default=0.0)
    lat = [(t1 - t0) * 1000 for _n, t0, t1, _v in pages]
    timeline = [(node, t0, v, (t0, v) in bad) for node, t0, _t1, v in pages]
    return SetupResult(
        name,
        len(pages),
        len(violations),
        window * 1000,
        loads,
        len(acks),
        statistics.median(lat) if lat else 0.0,
        _percentile(lat, 0.99),
        timeline,
        acks,
    )


def run_demo(cfg: DemoConfig, *, progress: bool = False) -> list[SetupResult]:
    """Run the naive setup, then freshlink, under the same traffic; return both results."""
    last = [0.0]

    def report(kind: str, elapsed: float, pages: int) -> None:
        if progress and time.monotonic() - last[0] > 0.2:
            last[0] = time.monotonic()
            label = "naive" if kind == "naive" else "freshlink"
            extra = f", {pages} pages" if pages else ""
            sys.stderr.write(
                f"\r  running {label:9s} {elapsed:4.1f}/{cfg.duration:.1f} s{extra}   "
            )
            sys.stderr.flush()

    run = _run_processes if cfg.url else _run_threads
    results = []
    for kind, name in (("naive", NaiveNode.name), ("freshlink", FreshlinkNode.name)):
        pages, acks, loads = run(kind, cfg, report)
        results.append(_measure(name, pages, acks, loads))
    if progress:
        sys.stderr.write("\r" + " " * 60 + "\r")
    return results


def render_table(results: list[SetupResult], cfg: DemoConfig) -> str:
    """The demo's Markdown table."""
    where = (
        f"{cfg.nodes} processes on {cfg.url}"
        if cfg.url
        else (f"{cfg.nodes} nodes as threads, embedded backend")
    )
    lines = [
        f"freshlink demo: {where}; {cfg.threads_per_node} page threads per node, "
        f"{cfg.duration:g} s, a link renewal every {cfg.renew_every * 1000:.0f} ms",
        "",
        "| setup | pages | 'link expired' after renewal acked | worst staleness | "
        "loader calls | p50 | p99 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.name} | {r.pages} | {r.expired_after_ack} | {r.stale_window_ms:.1f} ms | "
            f"{r.loader_calls} | {r.p50_ms:.2f} ms | {r.p99_ms:.2f} ms |"
        )
    return "\n".join(lines)


def to_json(results: list[SetupResult], cfg: DemoConfig) -> str:
    """Machine-readable results (``freshlink demo --json``)."""
    return json.dumps(
        {
            "config": asdict(cfg),
            "setups": [
                {k: v for k, v in asdict(r).items() if k not in ("timeline", "acks")}
                for r in results
            ],
        },
        indent=2,
    )
