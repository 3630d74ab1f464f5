"""Connections opened ahead of need: a client made from a URL warms its pool (issue 17).

Every pooled connection is named (``client_name``), so the server's ``CLIENT LIST`` tells how
many a cache opened, whichever thread or task opened them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from freshlink import Cache, ConfigurationError
from freshlink.backends._warmup import warm_count
from freshlink.backends.redis import RedisBackend

pytestmark = pytest.mark.redis


@pytest.fixture
def admin(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def named(admin: redis.Redis, name: str) -> int:
    """Open connections to the server named ``name``."""
    return sum(1 for c in admin.client_list() if c.get("name") == name)


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def make(redis_url: str, caches: list[Cache], name: str, **options: Any) -> Cache:
    backend = RedisBackend.from_url(
        redis_url, namespace="warm", client_options={"client_name": name}, **options
    )
    cache = Cache(backend=backend, namespace="warm", local=None)
    caches.append(cache)
    return cache


def test_the_first_call_leaves_the_pool_warm(
    redis_url: str, caches: list[Cache], admin: redis.Redis
) -> None:
    cache = make(redis_url, caches, "warm-sync", warm_connections=5)
    assert named(admin, "warm-sync") == 0  # nothing is opened before the first use
    cache.set("k", 1)
    # The warm-up opens 5 beside the caller's own (or hands it one of them).
    assert eventually(lambda: named(admin, "warm-sync") >= 5)
    assert named(admin, "warm-sync") <= 6
    pool: Any = cache.backend.inner.client.connection_pool  # type: ignore[attr-defined]
    assert eventually(lambda: len(pool._available_connections) >= 5)  # idle, not held
    assert cache.get("k") == 1


async def test_an_async_client_is_warmed_on_its_loop(
    redis_url: str, caches: list[Cache], admin: redis.Redis
) -> None:
    cache = make(redis_url, caches, "warm-async", warm_connections=3)
    await cache.aset("k", 1)
    backend: Any = cache.backend.inner  # type: ignore[attr-defined]
    assert backend.warmup._task is not None
    await backend.warmup._task
    assert 3 <= named(admin, "warm-async") <= 4
    assert len(backend.aclient.connection_pool._available_connections) >= 3
    assert await cache.aget("k") == 1
    await cache.aclose()


def test_warm_connections_0_opens_only_what_callers_need(
    redis_url: str, caches: list[Cache], admin: redis.Redis
) -> None:
    cache = make(redis_url, caches, "warm-none", warm_connections=0)
    cache.set("k", 1)
    time.sleep(0.05)  # room for a warm-up that must not happen
    assert named(admin, "warm-none") == 1


def test_warm_connections_must_be_a_count(redis_url: str) -> None:
    for bad in (-1, 1.5, True, "4"):
        with pytest.raises(ConfigurationError, match="warm_connections"):
            RedisBackend.from_url(redis_url, warm_connections=bad)


def test_a_bounded_pool_is_warmed_to_a_quarter_at_most() -> None:
    assert warm_count(redis.ConnectionPool(max_connections=8), 4) == 2
    assert warm_count(redis.ConnectionPool(max_connections=3), 4) == 0
    assert warm_count(redis.ConnectionPool(), 4) == 4  # redis-py's default bound is 100


def test_a_forked_child_warms_its_own_pool(
    redis_url: str,
    caches: list[Cache],
    admin: redis.Redis,
    in_child: Callable[..., dict[str, Any]],
) -> None:
    cache = make(redis_url, caches, "warm-fork", warm_connections=3)
    cache.set("k", 1)
    assert eventually(lambda: named(admin, "warm-fork") >= 3)
    parent = named(admin, "warm-fork")
    parent_client = cache.backend.inner.client  # type: ignore[attr-defined]

    def child() -> dict[str, Any]:
        value = cache.get("k")
        fresh = cache.backend.inner.client is not parent_client  # type: ignore[attr-defined]
        opened = eventually(lambda: named(admin, "warm-fork") >= parent + 3)
        return {"value": value, "fresh": fresh, "opened": opened}

    result = in_child(child)
    # The child made its own client (the parent's connections are not shared) and warmed it.
    assert result == {"value": 1, "fresh": True, "opened": True}
    assert cache.get("k") == 1  # the parent's pool is untouched
