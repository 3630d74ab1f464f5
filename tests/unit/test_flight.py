"""Single-flight: 50 threads or 50 tasks missing one key run the loader once."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from freshlink import Cache


def test_fifty_threads_one_load() -> None:
    cache = Cache()
    loads = 0
    gate = threading.Barrier(50)

    @cache.cached(ttl=60)
    def slow(x: int) -> int:
        nonlocal loads
        loads += 1
        time.sleep(0.2)
        return x * 2

    results: list[int] = []

    def worker() -> None:
        gate.wait()
        results.append(slow(21))

    threads = [threading.Thread(target=worker) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [42] * 50
    assert loads == 1


def test_loader_exception_reaches_every_waiter_and_is_not_cached() -> None:
    cache = Cache()
    calls = 0
    gate = threading.Barrier(20)

    @cache.cached(ttl=60)
    def broken(x: int) -> int:
        nonlocal calls
        calls += 1
        time.sleep(0.2)
        raise LookupError("no such loan")

    errors: list[BaseException] = []

    def worker() -> None:
        gate.wait()
        try:
            broken(1)
        except LookupError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 20
    assert calls == 1
    with pytest.raises(LookupError):
        broken(1)
    assert calls == 2  # not cached


def test_other_keys_are_not_blocked_by_a_slow_load() -> None:
    cache = Cache()
    started = threading.Event()
    release = threading.Event()

    @cache.cached(ttl=60)
    def load(x: int) -> int:
        if x == 1:
            started.set()
            release.wait(5)
        return x

    t = threading.Thread(target=load, args=(1,))
    t.start()
    assert started.wait(5)
    t0 = time.monotonic()
    assert load(2) == 2
    assert time.monotonic() - t0 < 1.0
    release.set()
    t.join()


async def test_fifty_tasks_one_load() -> None:
    cache = Cache()
    loads = 0

    @cache.cached(ttl=60)
    async def slow(x: int) -> int:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.1)
        return x * 2

    results = await asyncio.gather(*(slow(21) for _ in range(50)))
    assert results == [42] * 50
    assert loads == 1


async def test_async_exception_reaches_all_tasks_and_is_not_cached() -> None:
    cache = Cache()
    loads = 0

    @cache.cached(ttl=60)
    async def broken(x: int) -> Any:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.05)
        raise LookupError("nope")

    results = await asyncio.gather(*(broken(1) for _ in range(50)), return_exceptions=True)
    assert all(isinstance(r, LookupError) for r in results)
    assert loads == 1
    with pytest.raises(LookupError):
        await broken(1)
    assert loads == 2


async def test_cancelled_waiter_does_not_cancel_the_load() -> None:
    cache = Cache()

    @cache.cached(ttl=60)
    async def slow(x: int) -> int:
        await asyncio.sleep(0.1)
        return x

    leader = asyncio.create_task(slow(1))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(slow(1))
    await asyncio.sleep(0.01)
    waiter.cancel()
    assert await leader == 1
    with pytest.raises(asyncio.CancelledError):
        await waiter
