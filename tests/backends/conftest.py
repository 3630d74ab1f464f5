"""Fixtures of the backend tests: a Redis Cluster, a Sentinel setup, a restricted ACL user."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest
import redis

from freshlink import Cache
from freshlink.testing import RedisServer
from freshlink.testing.cluster import RedisClusterSetup, RedisSentinelSetup
from restricted_acl import ACL_RULES


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterSetup]:
    """A local Redis Cluster (3 masters, 1 replica each) shared by the session."""
    if shutil.which("redis-cli") is None:  # joins the nodes (redis-server: see ../conftest.py)
        pytest.fail("redis-cli is not installed (apt-get install redis-tools); .ci/run installs it")
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
    with RedisSentinelSetup() as setup:
        yield setup


@pytest.fixture
def sentinel_url(redis_sentinel: RedisSentinelSetup) -> str:
    """The Sentinel URL, healthy (repaired or recreated if a test broke it) and empty."""
    redis_sentinel.reset()
    redis_sentinel.flushall()
    return redis_sentinel.url


@pytest.fixture
def make_cluster_cache(
    cluster_url: str, cache_factory: Callable[[str], Callable[..., Cache]]
) -> Callable[..., Cache]:
    return cache_factory(cluster_url)


@pytest.fixture
def make_sentinel_cache(
    sentinel_url: str, cache_factory: Callable[[str], Callable[..., Cache]]
) -> Callable[..., Cache]:
    return cache_factory(sentinel_url)


@pytest.fixture(scope="module")
def acl_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        server.cli("ACL", "SETUSER", "freshlink", *ACL_RULES.split())
        yield server


@pytest.fixture
def acl_admin(acl_server: RedisServer) -> Iterator[redis.Redis]:
    """The default (admin) user: flushes before each test, and checks nothing was denied."""
    admin = redis.Redis.from_url(acl_server.url)
    admin.flushall()
    admin.acl_log_reset()
    yield admin
    denied = admin.acl_log()
    admin.close()
    assert not denied, f"the restricted user was denied: {denied}"
