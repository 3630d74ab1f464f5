"""The conformance suite on every backend and mode, sync and async.

Every ``BackendConformance`` subclass lives here: memory; one Redis server (strict, strict L1,
bounded L1); Redis Cluster and Sentinel; one Redis server as the restricted ACL user of
docs/security.md, with nothing denied in ``ACL LOG``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis

from freshlink import Cache, Local
from freshlink.testing import RedisServer
from freshlink.testing.conformance import BackendConformance
from restricted_acl import ACL_NAMESPACE, acl_url


class TestMemory(BackendConformance):
    shared = False

    @pytest.fixture
    def make_cache(self) -> Callable[..., Cache]:
        from freshlink.backends.memory import MemoryBackend

        backend = MemoryBackend()
        return lambda **kw: Cache(backend=backend, **kw)


@pytest.mark.redis
class TestRedisStrict(BackendConformance):
    @pytest.fixture
    def make_cache(self, make_redis_cache: Callable[..., Cache]) -> Callable[..., Cache]:
        return make_redis_cache


@pytest.mark.redis
class TestRedisStrictL1(BackendConformance):
    @pytest.fixture
    def make_cache(self, make_redis_cache: Callable[..., Cache]) -> Callable[..., Cache]:
        def make(**kw: Any) -> Cache:
            return make_redis_cache(local=Local(mode="strict"), **kw)

        return make


@pytest.mark.redis
class TestRedisBounded(BackendConformance):
    staleness = 0.1

    @pytest.fixture
    def make_cache(self, make_redis_cache: Callable[..., Cache]) -> Callable[..., Cache]:
        def make(**kw: Any) -> Cache:
            cache = make_redis_cache(local=Local(mode="bounded", max_staleness=0.1), **kw)
            listener = cache.backend.listener  # type: ignore[attr-defined]
            assert listener.alive.wait(5), "the invalidation channel never came alive"
            return cache

        return make


# ---------------------------------------------------------------------------- Cluster, Sentinel


def _bounded(make: Callable[..., Cache]) -> Callable[..., Cache]:
    def build(**kw: Any) -> Cache:
        cache = make(local=Local(mode="bounded", max_staleness=0.1), **kw)
        listener = cache.backend.listener or cache.backend.ensure_listener()  # type: ignore[attr-defined]
        assert listener.alive.wait(5), "the invalidation channel never came alive"
        return cache

    return build


@pytest.mark.cluster
class TestClusterStrict(BackendConformance):
    @pytest.fixture
    def make_cache(self, make_cluster_cache: Callable[..., Cache]) -> Callable[..., Cache]:
        return make_cluster_cache


@pytest.mark.cluster
class TestClusterStrictL1(BackendConformance):
    @pytest.fixture
    def make_cache(self, make_cluster_cache: Callable[..., Cache]) -> Callable[..., Cache]:
        return lambda **kw: make_cluster_cache(local=Local(mode="strict"), **kw)


@pytest.mark.cluster
class TestClusterBounded(BackendConformance):
    staleness = 0.1

    @pytest.fixture
    def make_cache(self, make_cluster_cache: Callable[..., Cache]) -> Callable[..., Cache]:
        return _bounded(make_cluster_cache)


@pytest.mark.sentinel
class TestSentinelStrict(BackendConformance):
    @pytest.fixture
    def make_cache(self, make_sentinel_cache: Callable[..., Cache]) -> Callable[..., Cache]:
        return make_sentinel_cache


@pytest.mark.sentinel
class TestSentinelBounded(BackendConformance):
    staleness = 0.1

    @pytest.fixture
    def make_cache(self, make_sentinel_cache: Callable[..., Cache]) -> Callable[..., Cache]:
        return _bounded(make_sentinel_cache)


# ---------------------------------------------------------------------------- restricted ACL user


class _AsRestrictedUser(BackendConformance):
    local: Local | None = None

    @pytest.fixture
    def make_cache(
        self, acl_server: RedisServer, acl_admin: redis.Redis, caches: list[Cache]
    ) -> Callable[..., Cache]:
        def make(**kw: Any) -> Cache:
            kw.setdefault("local", self.local)
            cache = Cache(acl_url(acl_server), namespace=ACL_NAMESPACE, **kw)
            caches.append(cache)
            if self.staleness:
                assert cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
            return cache

        return make


@pytest.mark.redis
class TestConformanceAsRestrictedUser(_AsRestrictedUser):
    pass


@pytest.mark.redis
class TestConformanceAsRestrictedUserStrictL1(_AsRestrictedUser):
    local = Local(mode="strict")


@pytest.mark.redis
class TestConformanceAsRestrictedUserBounded(_AsRestrictedUser):
    local = Local(mode="bounded", max_staleness=0.1)
    staleness = 0.1
