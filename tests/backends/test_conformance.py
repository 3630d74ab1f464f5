"""The conformance suite on every backend and mode, sync and async."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from freshlink import Cache, Local
from freshlink.testing.conformance import BackendConformance


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
