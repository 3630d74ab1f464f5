"""Cache: configuration and the public API.

``Cache`` checks its options, builds its :class:`~freshlink._engine.Engine` (the backend, the L1,
writes, events) and the read path, and delegates to them; nothing here is plumbing.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ._engine import Engine
from ._entries import UNREADABLE
from ._writes import Steps as WriteSteps
from .backends import open_backend
from .backends.base import Backend, Read
from .breaker import CircuitBreaker
from .decorators import FunctionSpec, make_cached, make_invalidates, make_updates
from .errors import ConfigurationError
from .events import Events
from .handles import UNSET, CachedFactory, Unset
from .keys import check_tag, safe_key
from .keyspace import Keyspace
from .local import Local, NearCache
from .policy import Freshness, check_ttl
from .readpath import ReadPath, fetch_own
from .refresh import AsyncRefresher, Refresher
from .serializers import Codec, Serializer, make_codec
from .stats import CacheStats
from .tracing import Tracer

__all__ = ["Cache"]

R = TypeVar("R")


_POLICY_OPTIONS = frozenset(
    {
        "jitter",
        "ahead",
        "beta",
        "stale_while_revalidate",
        "stale_if_error",
        "none_ttl",
        "cache_none",
        "expiring_within",
    }
)

_NAMESPACE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class Cache(CachedFactory):
    """A coherent cache in front of the functions that read your data.

    ``Cache()`` is the embedded default (``memory://``: one process, no server). Pass a
    ``redis://`` URL to share entries and invalidations between processes.
    """

    def __init__(
        self,
        url: Any = "memory://",
        *,
        namespace: str = "freshlink",
        local: Local | Unset | None = UNSET,
        serializer: str | Serializer = "json",
        default_ttl: float | None = 300.0,
        jitter: float = 0.0,
        ahead: float | None = None,
        beta: float = 0.0,
        stale_while_revalidate: float = 0.0,
        stale_if_error: float = 0.0,
        none_ttl: float | None = None,
        cache_none: bool = True,
        expiring_within: float | None = None,
        secret: str | bytes | Sequence[str | bytes] | None = None,
        max_value_size: int | None = 1 << 20,
        name: str | None = None,
        backend: Backend | None = None,
        breaker: CircuitBreaker | None = None,
        refresh_workers: int = 2,
        max_pending_refreshes: int = 1000,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        lease_ttl: float = 10.0,
    ) -> None:
        if (
            not isinstance(namespace, str)
            or not namespace
            or not _NAMESPACE_CHARS.issuperset(namespace)
        ):
            raise ConfigurationError(
                f"namespace must be a non-empty str of letters, digits, '_', '.', '-'; "
                f"got {namespace!r}"
            )
        self.namespace = namespace
        self.name = name or namespace
        self.url = url if isinstance(url, str) else type(url).__name__
        #: The backend names of this cache's entries, generations and leases.
        self.keyspace = Keyspace(namespace)
        #: The default freshness policy of every function this cache decorates.
        self.freshness = Freshness(
            ttl=check_ttl(default_ttl, "default_ttl"),
            jitter=jitter,
            ahead=ahead,
            beta=beta,
            stale_while_revalidate=stale_while_revalidate,
            stale_if_error=stale_if_error,
            none_ttl=none_ttl,
            cache_none=cache_none,
            expiring_within=expiring_within,
        )
        codec = make_codec(serializer, secret=secret, max_value_size=max_value_size)
        if not isinstance(lease_ttl, int | float) or not lease_ttl > 0:
            raise ConfigurationError(f"lease_ttl must be > 0 seconds, got {lease_ttl!r}")
        if local is not None and not isinstance(local, Unset | Local):
            raise ConfigurationError(f"local= must be a freshlink.Local or None, got {local!r}")
        raw = backend if backend is not None else open_backend(url, namespace=namespace)
        if isinstance(local, Unset):
            # An in-process backend delivers invalidations synchronously, so an L1 in front of
            # it is exactly as strict as the backend and only saves decoding: on by default.
            local = Local(mode="strict") if raw.synchronous else None
        self.local = local
        self._engine = Engine(
            raw,
            keyspace=self.keyspace,
            codec=codec,
            local=local,
            name=self.name,
            breaker=breaker,
            refresh_workers=refresh_workers,
            max_pending_refreshes=max_pending_refreshes,
            lease_ttl=float(lease_ttl),
            clock=clock,
            monotonic=monotonic,
            rng=rng,
        )
        self._path = ReadPath(self._engine)
        #: The decorated functions' specs (their hot-path counters feed :attr:`stats`).
        self.specs: list[FunctionSpec] = []

    # The engine's parts, read-only: the engine holds its own references, so reassigning one
    # here could only leave the cache half-changed.

    @property
    def backend(self) -> Backend:
        """The backend (wrapped by the circuit breaker when it is shared)."""
        return self._engine.backend

    @property
    def near(self) -> NearCache | None:
        """This process's L1 store, or None without ``local=``."""
        return self._engine.near

    @property
    def events(self) -> Events:
        """The hooks: ``cache.events.on("miss", callback)``."""
        return self._engine.events

    @property
    def breaker(self) -> CircuitBreaker | None:
        """The circuit breaker in front of a shared backend (None for ``memory://``)."""
        return self._engine.breaker

    @property
    def codec(self) -> Codec:
        """The serializer (and signer, with ``secret=``) of stored values."""
        return self._engine.entries.codec

    @property
    def clock(self) -> Callable[[], float]:
        """The wall clock entries are stamped and aged with."""
        return self._engine.entries.clock

    @property
    def monotonic(self) -> Callable[[], float]:
        """The monotonic clock of L1 ages, back-off and the breaker."""
        return self._engine.monotonic

    @property
    def stats(self) -> CacheStats | None:
        """Per-function counters, once :meth:`enable_stats` was called."""
        return self._engine.outcomes.stats

    @property
    def refresher(self) -> Refresher:
        """The thread pool that runs background refreshes of sync functions."""
        return self._engine.refresher

    @property
    def arefresher(self) -> AsyncRefresher:
        """The task set that runs background refreshes of async functions."""
        return self._engine.arefresher

    @property
    def tracer(self) -> Tracer | None:
        """What opens spans around this cache's work (None: off; see freshlink.contrib.otel)."""
        return self._engine.tracer

    @tracer.setter
    def tracer(self, tracer: Tracer | None) -> None:
        self._engine.trace(tracer)

    def enable_stats(self) -> CacheStats:
        """Start counting hits, misses, loads... per function (idempotent); return the stats."""
        outcomes = self._engine.outcomes
        if outcomes.stats is None:
            outcomes.stats = CacheStats(self.events, self.specs)
            outcomes.stats.attach()
        return outcomes.stats

    def __repr__(self) -> str:
        return f"Cache({self.url!r}, namespace={self.namespace!r}, local={self.local!r})"

    def _decorator(self, ttl: Any, options: dict[str, Any]) -> Callable[[Any], Any]:
        key = options.pop("key", None)
        tags = options.pop("tags", ())
        version = options.pop("version", None)
        code_identity = options.pop("code_identity", True)
        should_cache = options.pop("should_cache", None)
        changes = {k: v for k, v in options.items() if not isinstance(v, Unset)}
        unknown = set(changes) - _POLICY_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"cached() got unknown option(s) {', '.join(sorted(unknown))}; freshness "
                f"options are {', '.join(sorted(_POLICY_OPTIONS))}"
            )
        if not isinstance(ttl, Unset):
            changes["ttl"] = check_ttl(ttl)
        if should_cache is not None:
            changes["should_cache"] = should_cache
        fresh = self.freshness.with_(**changes) if changes else self.freshness

        def decorate(func: Any) -> Any:
            wrapper = make_cached(
                self._path,
                func,
                policy=fresh,
                key=key,
                tags=tags,
                version=version,
                code_identity=code_identity,
            )
            self.specs.append(wrapper._self_spec)
            return wrapper

        return decorate

    def invalidates(self, *tags: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
        """Decorate a write: after it returns without raising, invalidate the rendered tags."""
        return make_invalidates(self._engine, tags)

    def updates(self, reader: Any) -> Callable[[Callable[..., R]], Callable[..., R]]:
        """Decorate a write whose return value becomes ``reader``'s entry (write-through)."""
        return make_updates(self._engine, reader)

    # ------------------------------------------------------------------ invalidation

    def _run(self, steps: WriteSteps) -> Any:
        return self._engine.writes.run(steps)

    async def _arun(self, steps: WriteSteps) -> Any:
        return await self._engine.writes.arun(steps)

    def invalidate(self, *tags: str) -> None:
        """Invalidate every entry stamped with any of ``tags`` (one O(1) increment per tag).

        Raises :class:`~freshlink.errors.InvalidationError` if the backend cannot confirm it.
        """
        self._run(self._engine.writes.invalidate_tags(tags))

    async def ainvalidate(self, *tags: str) -> None:
        """Async :meth:`invalidate`."""
        await self._arun(self._engine.writes.invalidate_tags(tags))

    # ------------------------------------------------------------------ low-level API

    def _located(self, key: str, tags: Sequence[str]) -> tuple[str, tuple[str, ...]]:
        """A user's key made safe, and the generation names of its entry."""
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"a cache key must be a non-empty str, got {key!r}")
        k = safe_key(key)
        return k, self.keyspace.names(k, [check_tag(t) for t in tags])

    def _fetch_own(
        self,
        fname: str,
        key: str,
        tags: Sequence[str],
        load: Callable[[], Any],
        policy: Freshness,
        withheld: object,
    ) -> Any:
        """Internal to :mod:`freshlink.contrib` (cached views and fragments): serve ``key``
        through the read path, traced, with ``load``'s failures its caller's own (see
        :func:`freshlink.readpath.fetch_own`)."""
        k, names = self._located(key, tags)
        return fetch_own(self._path, fname, k, names, load, policy, withheld)

    def _value(self, key: str, read: Read, default: Any) -> Any:
        if read.entry is None:
            return default
        value = self._engine.entries.value("get", key, read.entry)
        return default if value is UNREADABLE else value

    def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        """The value stored under ``key`` (by :meth:`set` or a decorator), or ``default``."""
        k, names = self._located(key, tags)
        return self._value(k, self.backend.read(self.keyspace.entry(k), names), default)

    async def aget(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        """Async :meth:`get`."""
        k, names = self._located(key, tags)
        return self._value(k, await self.backend.aread(self.keyspace.entry(k), names), default)

    def _setting(
        self, key: str, value: Any, ttl: float | Unset | None, tags: Sequence[str]
    ) -> WriteSteps:
        k, names = self._located(key, tags)
        # A plain TTL for set(): explicit values get neither jitter nor a None-specific TTL.
        policy = (
            self.freshness
            if isinstance(ttl, Unset)
            else self.freshness.with_(ttl=check_ttl(ttl), jitter=0.0, none_ttl=None)
        )
        return self._engine.writes.store_now("set", k, names, value, policy)

    def set(
        self, key: str, value: Any, *, ttl: float | Unset | None = UNSET, tags: Sequence[str] = ()
    ) -> None:
        """Store ``value`` under ``key``, dying when any of ``tags`` is invalidated."""
        self._run(self._setting(key, value, ttl, tags))

    async def aset(
        self, key: str, value: Any, *, ttl: float | Unset | None = UNSET, tags: Sequence[str] = ()
    ) -> None:
        """Async :meth:`set`."""
        await self._arun(self._setting(key, value, ttl, tags))

    def delete(self, key: str) -> None:
        """Make the entry under ``key`` invalid everywhere (race-safe: a fill cannot revive it)."""
        self._run(self._engine.writes.invalidate_key(self._located(key, ())[0]))

    async def adelete(self, key: str) -> None:
        """Async :meth:`delete`."""
        await self._arun(self._engine.writes.invalidate_key(self._located(key, ())[0]))

    def clear_local(self) -> None:
        """Drop this process's L1 (other processes and the backend are untouched)."""
        if self.near is not None:
            self.near.clear()

    def close(self) -> None:
        """Release the backend's connections and threads (background refreshes are dropped)."""
        self._engine.close()

    async def aclose(self) -> None:
        """Async :meth:`close` (running async refreshes are awaited first)."""
        await self._engine.aclose()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
