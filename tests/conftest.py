from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from freshlink import Cache
from freshlink.testing import RedisServer


@pytest.fixture
def cache() -> Cache:
    return Cache(namespace="test")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; .ci/run installs it")
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    if not redis_server.ping():  # a test may have stopped it
        redis_server.start()
    redis_server.cli("FLUSHALL")
    return redis_server.url


@pytest.fixture
def caches() -> Iterator[list[Cache]]:
    """Caches created by a test; closed (threads stopped) after it."""
    made: list[Cache] = []
    yield made
    for c in made:
        c.close()


@pytest.fixture
def cache_factory(caches: list[Cache]) -> Callable[[str], Callable[..., Cache]]:
    """``cache_factory(url)``: make caches on ``url`` (namespace "t" unless given), closed after."""

    def on(url: str) -> Callable[..., Cache]:
        def make(**kw: Any) -> Cache:
            kw.setdefault("namespace", "t")
            c = Cache(url, **kw)
            caches.append(c)
            return c

        return make

    return on


@pytest.fixture
def make_redis_cache(
    redis_url: str, cache_factory: Callable[[str], Callable[..., Cache]]
) -> Callable[..., Cache]:
    return cache_factory(redis_url)
