"""Backends by URL scheme; optional drivers are imported only when their scheme is used."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .base import Backend, Entry, Read

__all__ = ["Backend", "Entry", "Read", "open_backend"]

_REDIS_SCHEMES = frozenset({"redis", "rediss", "unix"})
_CLUSTER_SCHEMES = frozenset({"redis+cluster", "rediss+cluster"})
_SENTINEL_SCHEMES = frozenset({"redis+sentinel", "rediss+sentinel"})


def open_backend(url: Any, *, namespace: str = "freshlink", **options: Any) -> Backend:
    """Create the backend a URL names (``memory://``, ``redis://``...) or wrap a redis client."""
    module = type(url).__module__
    if module in ("redis.cluster", "redis.asyncio.cluster"):
        from .cluster import RedisClusterBackend

        if module.startswith("redis.asyncio"):
            return RedisClusterBackend(aclient=url, namespace=namespace, **options)
        return RedisClusterBackend(client=url, namespace=namespace, **options)
    if module.startswith("redis."):
        from .redis import RedisBackend
        from .sentinel import SentinelBackend, is_sentinel_managed

        if is_sentinel_managed(url):
            if module.startswith("redis.asyncio"):
                return SentinelBackend(aclient=url, namespace=namespace, **options)
            return SentinelBackend(client=url, namespace=namespace, **options)

        if module.startswith("redis.asyncio"):
            return RedisBackend(aclient=url, namespace=namespace, **options)
        return RedisBackend(client=url, namespace=namespace, **options)
    if not isinstance(url, str):
        raise ConfigurationError(
            f"the cache URL must be a str or a redis-py client, got {type(url).__name__}"
        )
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from .memory import MemoryBackend

        return MemoryBackend(**options)
    if scheme in _REDIS_SCHEMES:
        from .redis import RedisBackend  # imports redis-py lazily, naming the extra if missing

        backend: Backend = RedisBackend.from_url(url, namespace=namespace, **options)
        return backend
    if scheme in _CLUSTER_SCHEMES:
        from .cluster import RedisClusterBackend

        return RedisClusterBackend.from_url(url, namespace=namespace, **options)
    if scheme in _SENTINEL_SCHEMES:
        from .sentinel import SentinelBackend

        return SentinelBackend.from_url(url, namespace=namespace, **options)
    raise ConfigurationError(
        f"unknown cache URL scheme {scheme!r} in {url!r}; use memory://, redis://, rediss://, "
        "unix://, redis+cluster:// or redis+sentinel://"
    )
