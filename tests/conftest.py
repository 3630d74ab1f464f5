from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from freshlink import Cache
from freshlink.testing import RedisServer
from freshlink.testing.cluster import RedisClusterSetup, RedisSentinelSetup


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


def cache_factory(url: str, caches: list[Cache]) -> Callable[..., Cache]:
    """Make caches on ``url`` (namespace "t" unless given), closed after the test."""

    def make(**kw: Any) -> Cache:
        kw.setdefault("namespace", "t")
        c = Cache(url, **kw)
        caches.append(c)
        return c

    return make


@pytest.fixture
def make_redis_cache(redis_url: str, caches: list[Cache]) -> Callable[..., Cache]:
    return cache_factory(redis_url, caches)


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterSetup]:
    """A local Redis Cluster (3 masters, 1 replica each) shared by the session."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.fail("redis-server/redis-cli are not installed; .ci/run installs them")
    with RedisClusterSetup() as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: RedisClusterSetup) -> str:
    """The cluster's URL, healthy (repaired or recreated if a test broke it) and empty."""
    redis_cluster.reset()
    redis_cluster.flushall()
    return redis_cluster.url


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelSetup]:
    """A local Sentinel setup (master, replica, 3 Sentinels) shared by the session."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; .ci/run installs it")
    with RedisSentinelSetup() as setup:
        yield setup


@pytest.fixture
def sentinel_url(redis_sentinel: RedisSentinelSetup) -> str:
    """The Sentinel URL, healthy (repaired or recreated if a test broke it) and empty."""
    redis_sentinel.reset()
    redis_sentinel.flushall()
    return redis_sentinel.url
