"""The tracing hook's contract: which spans open, around what, and nothing when it is off."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator

import pytest

from freshlink import Cache


class Recorder:
    """A tracer that logs each span's opening and closing, nested by depth."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.depth = 0

    @contextlib.contextmanager
    def span(self, op: str, function: str | None) -> Iterator[None]:
        self.log.append("  " * self.depth + op)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def later(
        self, op: str, function: str | None
    ) -> Callable[[], contextlib.AbstractContextManager[None]]:
        return lambda: self.span(op, function)


@pytest.fixture
def traced() -> tuple[Cache, Recorder]:
    cache = Cache(namespace="t")
    rec = Recorder()
    cache.tracer = rec
    return cache, rec


def test_get_wraps_load_and_the_loader_runs_inside(traced: tuple[Cache, Recorder]) -> None:
    cache, rec = traced
    inside: list[int] = []

    @cache.cached(ttl=60, key="k:{x}")
    def f(x: int) -> int:
        inside.append(rec.depth)
        return x

    f(1)
    f(1)  # the first hit after a fill takes the read path
    f(1)  # inline L1 hit: no span (reported by the hit event instead)
    cache.invalidate("anything")
    f.refresh(1)
    assert rec.log == [
        "get",
        "  load",
        "get",
        "invalidate",
        "refresh",
        "  invalidate",
        "  get",
        "    load",
    ]
    assert inside == [2, 3]  # the loader ran with its load span open


def test_async_calls_are_traced_too(traced: tuple[Cache, Recorder]) -> None:
    cache, rec = traced

    @cache.cached(ttl=60, key="k:{x}")
    async def f(x: int) -> int:
        return x

    async def main() -> None:
        await f(1)
        await cache.ainvalidate("t")
        await f.refresh(1)

    asyncio.run(main())
    assert rec.log == [
        "get",
        "  load",
        "invalidate",
        "refresh",
        "  invalidate",
        "  get",
        "    load",
    ]


def test_off_by_default_and_removable() -> None:
    cache = Cache(namespace="t")
    assert cache.tracer is None
    rec = Recorder()
    cache.tracer = rec

    @cache.cached(ttl=60, key="k:{x}")
    def f(x: int) -> int:
        return x

    f(1)
    cache.tracer = None
    f(2)
    cache.invalidate("t")
    assert rec.log == ["get", "  load"]
