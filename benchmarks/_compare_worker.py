"""One side of ``python -m benchmarks.compare``: times freshlink's hot paths from one tree.

Run as a script with ``PYTHONPATH=<tree>/src``; reads commands from stdin (``case n``), answers
nanoseconds per call (wall, then this process's CPU) on stdout. Self-contained: it must run
against any version of the tree.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
import timeit
from typing import Any


def _value(k: int) -> dict[str, Any]:
    return {"loan": k, "status": "active", "link": f"https://pay.example/{k}"}


def cases(url: str, ns: str) -> dict[str, Any]:
    """Case name -> a zero-argument callable doing one operation."""
    from freshlink import Cache, Local

    mem = Cache(namespace=ns + "-mem")
    l1_mem = mem.cached(ttl=600, key="loan:{k}", tags=["loan:{k}", "user:42"])(_value)
    l1_mem(7)
    strict = Cache(url, namespace=ns + "-strict")
    l2 = strict.cached(ttl=600, key="loan:{k}", tags=["loan:{k}", "user:42"])(_value)
    l2(7)
    bounded = Cache(url, namespace=ns + "-bounded", local=Local(max_staleness=1.0))
    l1_redis = bounded.cached(ttl=600, key="loan:{k}", tags=["loan:{k}", "user:42"])(_value)
    l1_redis(7)
    miss_fn = strict.cached(ttl=600, key="new:{k}", tags=["loan:{k}"])(_value)
    fresh = itertools.count(10**6)
    loop = asyncio.new_event_loop()
    acache = Cache(url, namespace=ns + "-async")
    al2 = acache.cached(ttl=600, key="loan:{k}", tags=["loan:{k}", "user:42"])(_avalue)
    loop.run_until_complete(al2(7))
    canned = _canned(url, ns, loop)
    return {
        "L1 hit, memory://": lambda: l1_mem(7),
        "L1 hit, Redis bounded": lambda: l1_redis(7),
        "L2 hit, Redis strict (sync)": lambda: l2(7),
        "L2 hit, Redis strict (async)": lambda: loop.run_until_complete(al2(7)),
        "miss, Redis strict (load + store)": lambda: miss_fn(next(fresh)),
        **canned,
    }


def _canned(url: str, ns: str, loop: asyncio.AbstractEventLoop) -> dict[str, Any]:
    """L2 hits whose Redis reply is canned: only the library's own Python runs.

    The client's ``execute_command`` is replaced by one returning the reply it gave to the
    same warm read, so a change in freshlink's code shows without the noise of a round trip.
    """
    from freshlink import Cache

    sync = Cache(url, namespace=ns + "-canned")
    l2 = sync.cached(ttl=600, key="loan:{k}", tags=["loan:{k}", "user:42"])(_value)
    l2(7)
    client = sync.backend.inner.client  # type: ignore[attr-defined]
    reply = client.execute_command
    seen: list[Any] = []
    client.execute_command = lambda *a, **k: seen.append(reply(*a, **k)) or seen[-1]
    l2(7)
    client.execute_command = lambda *a, **k: seen[-1]
    acache = Cache(url, namespace=ns + "-acanned")
    al2 = acache.cached(ttl=600, key="loan:{k}", tags=["loan:{k}", "user:42"])(_avalue)
    loop.run_until_complete(al2(7))
    aclient = acache.backend.inner.aclient  # type: ignore[attr-defined]
    areply = aclient.execute_command
    aseen: list[Any] = []

    async def spy(*a: Any, **k: Any) -> Any:
        aseen.append(await areply(*a, **k))
        return aseen[-1]

    async def canned(*a: Any, **k: Any) -> Any:
        return aseen[-1]

    aclient.execute_command = spy
    loop.run_until_complete(al2(7))
    aclient.execute_command = canned
    assert l2(7) == _value(7)
    assert loop.run_until_complete(al2(7)) == _value(7)
    return {
        "L2 hit, canned reply (sync)": lambda: l2(7),
        "L2 hit, canned reply (async)": lambda: loop.run_until_complete(al2(7)),
    }


async def _avalue(k: int) -> dict[str, Any]:
    return _value(k)


def main() -> None:
    url, ns = sys.argv[1], sys.argv[2]
    table = cases(url, ns)
    print("ready", flush=True)
    for line in sys.stdin:
        name, _, n = line.rstrip("\n").rpartition(" ")
        fn, calls = table[name], int(n)
        cpu0 = time.process_time()
        took = timeit.timeit(fn, number=calls)
        cpu = time.process_time() - cpu0
        # Wall time per call, and this process's CPU time per call: the library's own cost,
        # without the wait for Redis (which a busy machine makes noisy).
        print(took / calls * 1e9, cpu / calls * 1e9, flush=True)


if __name__ == "__main__":
    main()
