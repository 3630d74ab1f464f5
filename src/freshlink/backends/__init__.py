"""Backends by URL scheme; optional drivers are imported only when their scheme is used."""

from __future__ import annotations

import sys
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from ..keyspace import (
    CLUSTER_SCHEMES,
    MEMORY_SCHEMES,
    REDIS_SCHEMES,
    SENTINEL_SCHEMES,
    schemes_phrase,
)
from .base import Backend, Entry, Read

__all__ = ["Backend", "Entry", "Read", "client_kind", "open_backend"]


def client_kind(client: Any) -> tuple[str, bool] | None:
    """("cluster" | "redis", is asyncio) for a redis-py client (subclasses included), else None.

    redis-py is looked up only if already imported: a client of it cannot exist otherwise.
    """
    redis = sys.modules.get("redis")
    if redis is None or isinstance(client, str):
        return None
    import redis.asyncio
    import redis.asyncio.cluster
    import redis.cluster

    kinds = (
        (redis.cluster.RedisCluster, "cluster", False),
        (redis.asyncio.cluster.RedisCluster, "cluster", True),
        (redis.asyncio.Redis, "redis", True),
        (redis.Redis, "redis", False),
    )
    for cls, kind, is_async in kinds:
        if isinstance(client, cls):
            return kind, is_async
    return None


def open_backend(url: Any, *, namespace: str = "freshlink", **options: Any) -> Backend:
    """Create the backend a URL names (``memory://``, ``redis://``...) or wrap a redis client."""
    kind = client_kind(url)
    if kind is not None:
        given = {"aclient" if kind[1] else "client": url}
        if kind[0] == "cluster":
            from .cluster import RedisClusterBackend

            return RedisClusterBackend(**given, namespace=namespace, **options)
        from .redis import RedisBackend
        from .sentinel import SentinelBackend, is_sentinel_managed

        if is_sentinel_managed(url):
            return SentinelBackend(**given, namespace=namespace, **options)
        return RedisBackend(**given, namespace=namespace, **options)
    if not isinstance(url, str):
        raise ConfigurationError(
            f"the cache URL must be a str or a redis-py client, got {type(url).__name__}"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme in MEMORY_SCHEMES:
        from .memory import MemoryBackend

        return MemoryBackend(**options)
    if scheme in REDIS_SCHEMES:
        from .redis import RedisBackend  # imports redis-py lazily, naming the extra if missing

        backend: Backend = RedisBackend.from_url(url, namespace=namespace, **options)
        return backend
    if scheme in CLUSTER_SCHEMES:
        from .cluster import RedisClusterBackend

        return RedisClusterBackend.from_url(url, namespace=namespace, **options)
    if scheme in SENTINEL_SCHEMES:
        from .sentinel import SentinelBackend

        return SentinelBackend.from_url(url, namespace=namespace, **options)
    raise ConfigurationError(
        f"unknown cache URL scheme {scheme!r} in {url!r}; use {schemes_phrase()}"
    )
