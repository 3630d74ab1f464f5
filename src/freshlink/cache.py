"""Cache: configuration and the public API.

The read path, in order (each step only when the previous one did not answer):

1. **L1** (:class:`~freshlink.local.NearCache`): a decoded value whose stamps equal the
   generations this process knows, within its TTL and while the channel is trusted.
2. **L2** (the backend): one generation-aware read returns the entry if its stamps are current,
   and otherwise the current generations, read *before* the loader starts.
3. **Load** under single-flight keyed by ``(key, generations)``; the entry is stamped with the
   generations from step 2 and stored only if they are still current.

Stamping with generations read before loading is what makes the cache-aside "stale set" race
harmless: a loader that read old data stamps old generations, and the write's invalidation has
already made those generations old.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
import weakref
from collections.abc import Callable, Coroutine, Hashable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, overload

from .backends import open_backend
from .backends.base import Backend, Entry, Read
from .backends.guard import GuardedBackend
from .breaker import CircuitBreaker
from .errors import (
    BackendError,
    CircuitOpenError,
    ConfigurationError,
    FreshlinkError,
    InvalidationError,
    SerializationError,
    TamperedPayloadError,
)
from .events import Event, Events, logger
from .flight import AsyncFlight, Flight
from .keys import check_tag, safe_key
from .local import Local, NearCache, NearEntry
from .policy import (
    Action,
    Freshness,
    backoff,
    check_ttl,
    decide,
    fresh_horizon,
    jittered_ttl,
)
from .readpath import MISS as _MISS
from .readpath import ReadPath, Stale, arun, run
from .refresh import AsyncRefresher, Refresher
from .serializers import Codec, Serializer, make_codec

if TYPE_CHECKING:
    from .decorators import FunctionSpec
    from .handles import AsyncCached, Cached, CachedDecorator
    from .stats import CacheStats

__all__ = ["Cache"]

P = ParamSpec("P")
R = TypeVar("R")


class _Unset:
    def __repr__(self) -> str:
        return "<default>"


_UNSET: Final = _Unset()
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


_UNREADABLE: Final = object()  # an entry that failed to decode (already logged and reported)

# Bytes an L1 entry costs beyond its serialized payload (the entry object, its stamps, the
# dict slot), measured with tracemalloc for a 3-tag entry; used by Local(max_bytes=).
_NEAR_OVERHEAD = 600

_NAMESPACE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class Cache:
    """A coherent cache in front of the functions that read your data.

    ``Cache()`` is the embedded default (``memory://``: one process, no server). Pass a
    ``redis://`` URL to share entries and invalidations between processes.
    """

    def __init__(
        self,
        url: Any = "memory://",
        *,
        namespace: str = "freshlink",
        local: Local | _Unset | None = _UNSET,
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
        self.codec: Codec = make_codec(serializer, secret=secret, max_value_size=max_value_size)
        if not isinstance(lease_ttl, int | float) or not lease_ttl > 0:
            raise ConfigurationError(f"lease_ttl must be > 0 seconds, got {lease_ttl!r}")
        self.lease_ttl = float(lease_ttl)
        self.clock = clock
        self.monotonic = monotonic
        self.rng = rng
        self.events = Events()
        raw = backend if backend is not None else open_backend(url, namespace=namespace)
        self.breaker: CircuitBreaker | None = None
        if raw.synchronous:
            self.backend: Backend = raw  # in-process: nothing to break or retry
        else:
            self.breaker = breaker or CircuitBreaker(clock=monotonic)
            theirs = self.breaker.on_change
            if theirs is None:
                self.breaker.on_change = self._breaker_changed
            else:  # keep the caller's own listener too

                def both(state: str) -> None:
                    self._breaker_changed(state)
                    theirs(state)  # type: ignore[arg-type]

                self.breaker.on_change = both
            self.backend = GuardedBackend(raw, self.breaker, rng=rng)
        if isinstance(local, _Unset):
            # An in-process backend delivers invalidations synchronously, so an L1 in front of
            # it is exactly as strict as the backend and only saves decoding: on by default.
            local = Local(mode="strict") if self.backend.synchronous else None
        if local is not None and not isinstance(local, Local):
            raise ConfigurationError(f"local= must be a freshlink.Local or None, got {local!r}")
        self.local = local
        self.near: NearCache | None = None
        # Strict L1 over a shared backend: every L1 candidate is confirmed by reading its
        # generations (one small round trip, no payload transfer or decoding).
        self._verify_near = False
        if local is not None:
            near = self.near = NearCache(local, clock=monotonic)
            if self.backend.synchronous:
                self.backend.subscribe(near.learn)
            elif local.mode == "bounded":
                # Trusted only once the channel has proved it delivers (see backends.channel).
                near.trusted_until = -math.inf
                bound = local.max_staleness
                self.backend.on_channel(alive=lambda t: near.trust(t + bound), reset=near.distrust)
                self.backend.subscribe(near.learn)
            else:
                near.trusted_until = -math.inf
                self._verify_near = True
        self._flight = Flight()
        self._aflight = AsyncFlight()
        self.refresher = Refresher(refresh_workers, max_pending_refreshes)
        self.arefresher = AsyncRefresher(max_pending_refreshes)
        # key -> (failed attempts, monotonic time of the next try): stale-if-error backoff.
        self._retry_at: dict[str, tuple[int, float]] = {}
        self._path = ReadPath(self)
        # Set in a forked child whose L1 needs the channel: the first read there starts it.
        self._reopen = False
        self._closed = False
        _reset_in_forked_children(self)
        #: The decorated functions' specs (their hot-path counters feed :attr:`stats`).
        self.specs: list[FunctionSpec] = []
        self.stats: CacheStats | None = None
        self._tag_prefix = namespace + ":t:"
        self._self_prefix = namespace + ":k:"
        self._entry_prefix = namespace + ":e:"

    def enable_stats(self) -> CacheStats:
        """Start counting hits, misses, loads... per function (idempotent); return the stats."""
        if self.stats is None:
            from .stats import CacheStats

            self.stats = CacheStats(self)
            self.stats.attach()
        return self.stats

    def _breaker_changed(self, state: str) -> None:
        name = "circuit_open" if state == "open" else "circuit_close" if state == "closed" else ""
        if not name:
            return
        log = logger.error if state == "open" else logger.warning
        log(
            "freshlink: backend circuit %s",
            "opened: calls go to the loaders" if state == "open" else "closed again",
            extra={"freshlink_event": name, "freshlink_cache": self.name},
        )
        if getattr(self.events, name):
            self.events.emit(Event(name))

    def __repr__(self) -> str:
        return f"Cache({self.url!r}, namespace={self.namespace!r}, local={self.local!r})"

    # ------------------------------------------------------------------ decorators

    @overload
    def cached(
        self,
        ttl: float | _Unset | None = ...,
        *,
        key: str | None = ...,
        tags: Iterable[str] = ...,
        version: str | int | None = ...,
        code_identity: bool = ...,
        jitter: float | _Unset = ...,
        ahead: float | _Unset | None = ...,
        beta: float | _Unset = ...,
        stale_while_revalidate: float | _Unset = ...,
        stale_if_error: float | _Unset = ...,
        none_ttl: float | _Unset | None = ...,
        cache_none: bool | _Unset = ...,
        should_cache: Callable[[Any], bool] | None = ...,
        expiring_within: float | _Unset | None = ...,
    ) -> CachedDecorator: ...
    @overload
    def cached(  # type: ignore[overload-overlap]
        self, ttl: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncCached[P, R]: ...
    @overload
    def cached(self, ttl: Callable[P, R]) -> Cached[P, R]: ...
    def cached(
        self,
        ttl: Any = _UNSET,
        *,
        key: str | None = None,
        tags: Iterable[str] = (),
        version: str | int | None = None,
        code_identity: bool = True,
        should_cache: Callable[[Any], bool] | None = None,
        **policy: Any,
    ) -> Any:
        """Decorate a function (sync or async, method, classmethod, staticmethod) to cache it.

        ``key`` is a template such as ``"loan:{loan_id}"`` (default: a hash of all arguments);
        ``tags`` are templates whose invalidation kills the entry; ``version`` is part of
        every key, so bumping it makes old entries unreachable. The freshness options
        (``ahead``, ``beta``, ``stale_while_revalidate``, ``stale_if_error``, ``none_ttl``,
        ``cache_none``, ``should_cache``, ``jitter``, ``expiring_within``) default to the
        cache's own; see :class:`~freshlink.policy.Freshness`.
        """
        from .decorators import make_cached

        if callable(ttl) and not isinstance(ttl, _Unset):
            # Bare ``@cache.cached`` without parentheses.
            return make_cached(
                self,
                ttl,
                policy=self.freshness,
                key=None,
                tags=(),
                version=None,
                code_identity=True,
            )
        changes = {k: v for k, v in policy.items() if not isinstance(v, _Unset)}
        unknown = set(changes) - _POLICY_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"cached() got unknown option(s) {', '.join(sorted(unknown))}; freshness "
                f"options are {', '.join(sorted(_POLICY_OPTIONS))}"
            )
        if not isinstance(ttl, _Unset):
            changes["ttl"] = check_ttl(ttl)
        if should_cache is not None:
            changes["should_cache"] = should_cache
        fresh = self.freshness.with_(**changes)

        def decorate(func: Any) -> Any:
            return make_cached(
                self,
                func,
                policy=fresh,
                key=key,
                tags=tags,
                version=version,
                code_identity=code_identity,
            )

        return decorate

    def invalidates(self, *tags: str) -> Callable[[Callable[..., R]], Callable[..., R]]:
        """Decorate a write: after it returns without raising, invalidate the rendered tags."""
        from .decorators import make_invalidates

        return make_invalidates(self, tags)

    def updates(self, reader: Any) -> Callable[[Callable[..., R]], Callable[..., R]]:
        """Decorate a write whose return value becomes ``reader``'s entry (write-through)."""
        from .decorators import make_updates

        return make_updates(self, reader)

    # ------------------------------------------------------------------ names

    def tag_gen(self, tag: str) -> str:
        """The backend name of a tag's generation counter."""
        return self._tag_prefix + safe_key(tag)

    def gen_names(self, key: str, tags: Sequence[str]) -> tuple[str, ...]:
        """Generation names an entry is stamped with: its own key's, then its tags'."""
        return (self._self_prefix + key, *(self._tag_prefix + safe_key(t) for t in tags))

    def entry_key(self, key: str) -> str:
        """The backend key under which an entry is stored."""
        return self._entry_prefix + key

    def _context(self, key: str, names: Sequence[str], stamps: Sequence[int]) -> bytes:
        # What a signed payload's MAC covers besides the value: the entry key and the
        # generations, so a payload replayed under another key or generation is rejected.
        if not self.codec.signed:
            return b""
        return ("\x00".join((key, *names)) + "\x00" + ",".join(map(str, stamps))).encode(
            "utf-8", "surrogatepass"
        )

    # ------------------------------------------------------------------ codec

    def _encode(
        self, fname: str, key: str, names: Sequence[str], stamps: Sequence[int], value: Any
    ) -> tuple[bytes, Any]:
        """Serialize (and sign) a value; also return the decoded copy that L1 and callers get."""
        try:
            payload = self.codec.encode(value, self._context(key, names, stamps))
        except FreshlinkError as exc:
            raise type(exc)(f"{fname}: {exc}") from exc
        return payload, self._decode(fname, key, names, stamps, payload)

    def _decode(
        self, fname: str, key: str, names: Sequence[str], stamps: Sequence[int], payload: bytes
    ) -> Any:
        try:
            return self.codec.decode(payload, self._context(key, names, stamps))
        except (TamperedPayloadError, SerializationError) as exc:
            logger.warning(
                "freshlink: unreadable entry %s treated as a miss: %s",
                key,
                exc,
                extra={"freshlink_key": key, "freshlink_function": fname},
            )
            if self.events.error:
                self.events.emit(Event("error", fname, key, "l2", error=exc))
            return _MISS

    def decode_entry(self, key: str, entry: Entry) -> Any:
        """Decode a stored entry, verifying its signature like a read would (for tools)."""
        return self.codec.decode(entry.payload, self._context(key, entry.names, entry.stamps))

    def _entry_value(self, fname: str, key: str, entry: Entry) -> Any:
        return self._decode(fname, key, entry.names, entry.stamps, entry.payload)

    # ------------------------------------------------------------------ read path (shared)

    def _near_put(
        self, near_key: Hashable, value: Any, entry: Entry, policy: Freshness, mark: int
    ) -> None:
        """Remember a decoded value in L1 (if the reply is not older than an L1 wipe)."""
        near = self.near
        if near is None or not near.learn_since(entry.names, entry.stamps, mark):
            return
        now = self.monotonic()
        born = now - max(self.clock() - entry.created, 0.0)
        ttl = entry.ttl
        hard = math.inf if ttl is None else born + ttl + policy.grace
        if near.config.ttl is not None:
            hard = min(hard, now + near.config.ttl)
        # Until ``fresh`` the inlined hot path may serve it without asking the policy.
        horizon = fresh_horizon(policy, ttl, entry.load_time)
        fresh = math.inf if horizon is None else born + horizon
        if policy.expiring_within is not None and ttl is not None:
            fresh = min(fresh, born + ttl - policy.expiring_within)
        near.put(
            near_key,
            NearEntry(
                value,
                entry.names,
                entry.stamps,
                hard,
                fresh,
                born,
                ttl,
                entry.load_time,
                entry.created,
                len(entry.payload) + _NEAR_OVERHEAD,
            ),
        )

    def _report(
        self, fname: str, key: str, tier: str, action: Action, policy: Freshness, left: float | None
    ) -> None:
        """Emit hit / stale_served / expiring for a value about to be served."""
        ev = self.events
        if action is Action.SERVE_STALE_AND_REFRESH:
            if ev.stale_served:
                ev.emit(Event("stale_served", fname, key, tier, ttl_left=left))
        else:
            if self.stats is not None:
                self.stats.hit(fname, tier)
            if ev.hit:
                ev.emit(Event("hit", fname, key, tier, ttl_left=left))
        within = policy.expiring_within
        if within is not None and left is not None and left < within and ev.expiring:
            ev.emit(Event("expiring", fname, key, tier, ttl_left=left))

    def _judge_near(self, e: NearEntry, policy: Freshness) -> tuple[Action, float | None]:
        age = self.monotonic() - e.born
        left = None if e.ttl is None else e.ttl - age
        return decide(policy, age, e.ttl, e.load_time, self.rng), left

    def _judge(self, entry: Entry, policy: Freshness) -> tuple[Action, float | None]:
        age = self.clock() - entry.created
        left = None if entry.ttl is None else entry.ttl - age
        return decide(policy, age, entry.ttl, entry.load_time, self.rng), left

    def _backend_failed(self, fname: str, key: str, exc: BackendError, doing: str) -> None:
        if isinstance(exc, CircuitOpenError):
            # Announced once by the circuit_open event and log line; one line per read
            # during an outage would flood the logs.
            logger.debug("freshlink: circuit open, %s of %s skipped", doing, key)
            return
        logger.warning(
            "freshlink: %s failed for %s, serving from the loader: %s",
            doing,
            key,
            exc,
            extra={"freshlink_key": key, "freshlink_function": fname},
        )
        if self.events.error:
            self.events.emit(Event("error", fname, key, "l2", error=exc))

    def _backing_off(self, key: str) -> bool:
        """True while a key whose loader failed waits for its next retry."""
        due = self._retry_at.get(key)
        return due is not None and self.monotonic() < due[1]

    def _loader_failed(
        self, fname: str, key: str, exc: Exception, policy: Freshness, stale: Stale | None
    ) -> Any:
        """Stale-if-error: serve a still-usable old value and back off, or re-raise."""
        attempts = self._retry_at.get(key, (0, 0.0))[0] + 1
        if len(self._retry_at) > 10_000:
            self._retry_at.clear()  # bounded: forgetting a backoff only costs an early retry
        self._retry_at[key] = (
            attempts,
            self.monotonic() + backoff(attempts, policy.retry_base, policy.retry_cap, self.rng),
        )
        if self.events.error:
            self.events.emit(Event("error", fname, key, error=exc))
        if stale is None or not stale.usable(policy):
            raise exc
        logger.warning(
            "freshlink: loader of %s failed (%s: %s); serving the last value",
            key,
            type(exc).__name__,
            exc,
            extra={"freshlink_key": key, "freshlink_function": fname},
        )
        if self.events.stale_served:
            self.events.emit(Event("stale_served", fname, key, error=exc, ttl_left=stale.left))
        return stale.value

    def _stored(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        stamps: Sequence[int],
        value: Any,
        policy: Freshness,
        took: float,
    ) -> tuple[Entry, Any, float | None]:
        """Stamp a loaded value: (entry, decoded copy, retention in the backend)."""
        ttl = jittered_ttl(policy.ttl_for(value), policy.jitter, self.rng)
        entry, copy = self._stamp(fname, key, names, stamps, value, ttl, took)
        return entry, copy, policy.retain(ttl)

    def _stamp(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        stamps: Sequence[int],
        value: Any,
        ttl: float | None,
        load_time: float,
    ) -> tuple[Entry, Any]:
        payload, copy = self._encode(fname, key, names, stamps, value)
        if copy is _MISS:  # a serializer that cannot read its own output
            raise SerializationError(f"{fname}: the serializer could not decode what it wrote")
        return Entry(payload, tuple(names), tuple(stamps), self.clock(), ttl, load_time), copy

    # ------------------------------------------------------------------ read path

    def fetch(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        load: Callable[[], Any],
        policy: Freshness,
        near_key: Hashable | None = None,
    ) -> Any:
        """Return the cached value for ``key`` or load, stamp and store it (the sync read path).

        ``names`` are the entry's generation names (:meth:`gen_names`); the steps are in
        :mod:`freshlink.readpath`, shared with :meth:`afetch`.
        """
        if self._reopen:
            self._reopen_channel()
        nk = key if near_key is None else near_key
        first: Read | BackendError | None = None
        if self.near is None:
            # Strict without L1, the common L2 hit: one read and a fresh entry need none of the
            # read path's machinery. Anything else continues there with this read in hand.
            try:
                first = self.backend.read(self.entry_key(key), names)
            except BackendError as exc:
                first = exc
            else:
                value = self._fresh_hit(fname, key, first, policy)
                if value is _UNREADABLE:
                    first = Read(None, first.gens)  # already reported: a miss from here on
                elif value is not _MISS:
                    return value
        return run(self, self._path.fetch(fname, key, names, policy, nk, first), load)

    async def afetch(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        load: Callable[[], Coroutine[Any, Any, Any]],
        policy: Freshness,
        near_key: Hashable | None = None,
    ) -> Any:
        """Async :meth:`fetch`: the same steps with the backend's async methods."""
        if self._reopen:
            self._reopen_channel()
        nk = key if near_key is None else near_key
        first: Read | BackendError | None = None
        if self.near is None:
            try:
                first = await self.backend.aread(self.entry_key(key), names)
            except BackendError as exc:
                first = exc
            else:
                value = self._fresh_hit(fname, key, first, policy)
                if value is _UNREADABLE:
                    first = Read(None, first.gens)
                elif value is not _MISS:
                    return value
        return await arun(self, self._path.fetch(fname, key, names, policy, nk, first), load)

    def _fresh_hit(self, fname: str, key: str, read: Read, policy: Freshness) -> Any:
        """The value of a valid, fresh entry in ``read`` (reported as an L2 hit), or _MISS."""
        entry = read.entry
        if entry is None:
            return _MISS
        if entry.ttl is not None:
            action, left = self._judge(entry, policy)
            if action is not Action.SERVE:
                return _MISS
        else:
            left = None
        value = self._entry_value(fname, key, entry)
        if value is _MISS:
            return _UNREADABLE
        self._report(fname, key, "l2", Action.SERVE, policy, left)
        return value

    def _refresh_failed(self, fname: str, key: str, exc: Exception, policy: Freshness) -> None:
        attempts = self._retry_at.get(key, (0, 0.0))[0] + 1
        self._retry_at[key] = (
            attempts,
            self.monotonic() + backoff(attempts, policy.retry_base, policy.retry_cap, self.rng),
        )
        logger.warning(
            "freshlink: background refresh of %s failed: %s: %s",
            key,
            type(exc).__name__,
            exc,
            extra={"freshlink_key": key},
        )
        if self.events.error:
            self.events.emit(Event("error", fname, key, error=exc))

    # ------------------------------------------------------------------ refresh / write-through

    def store(
        self, fname: str, key: str, tags: Sequence[str], value: Any, policy: Freshness
    ) -> Any:
        """Store ``value`` as the current entry for ``key``, invalidating its tags atomically.

        This is the write-through primitive behind :meth:`updates` and :meth:`set`: it reads
        the current generations and stores the value stamped one past them only if nothing
        invalidated them in between (otherwise it degrades to a plain invalidation).
        """
        names = self.gen_names(key, tags)
        expected = self.backend.current(names)
        return self.store_expected(fname, key, names, expected, value, policy)

    def _write_through_entry(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        expected: Sequence[int],
        value: Any,
        policy: Freshness,
    ) -> tuple[Entry, Any, float | None, int]:
        # Stamped one past the generations read before the write: exactly the values the
        # atomic increment produces if nothing else invalidated them meanwhile.
        stamps = tuple(g + 1 for g in expected)
        entry, copy, retain = self._stored(fname, key, names, stamps, value, policy, 0.0)
        return entry, copy, retain, self.near.mark() if self.near is not None else 0

    def store_expected(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        expected: Sequence[int] | None,
        value: Any,
        policy: Freshness,
    ) -> Any:
        """Write-through with generations read earlier (before the wrapped write ran).

        ``expected=None`` (they could not be read) degrades to a plain invalidation.
        """
        if expected is None:
            self.invalidate_names(names)
            return value
        try:
            entry, copy, retain, mark = self._write_through_entry(
                fname, key, names, expected, value, policy
            )
        except FreshlinkError:
            self.invalidate_names(names)  # the write happened: never leave the old value valid
            raise
        with self._confirming(names):
            stored = self.backend.write_through(self.entry_key(key), entry, expected, retain)
        self._after_write_through(key, copy, entry, policy, mark, stored)
        return copy

    async def astore_expected(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        expected: Sequence[int] | None,
        value: Any,
        policy: Freshness,
    ) -> Any:
        """Async :meth:`store_expected`."""
        if expected is None:
            await self.ainvalidate_names(names)
            return value
        try:
            entry, copy, retain, mark = self._write_through_entry(
                fname, key, names, expected, value, policy
            )
        except FreshlinkError:
            await self.ainvalidate_names(names)
            raise
        with self._confirming(names):
            stored = await self.backend.awrite_through(self.entry_key(key), entry, expected, retain)
        self._after_write_through(key, copy, entry, policy, mark, stored)
        return copy

    def _after_write_through(
        self, key: str, copy: Any, entry: Entry, policy: Freshness, mark: int, stored: bool
    ) -> None:
        self._after_invalidate(entry.names, entry.stamps if stored else None, mark)
        if stored:
            self._near_put(key, copy, entry, policy, mark)
        self._emit_invalidation(())

    # ------------------------------------------------------------------ invalidation

    @contextlib.contextmanager
    def _confirming(self, names: Sequence[str]) -> Iterator[None]:
        """Turn a backend failure during an invalidation into InvalidationError, loudly.

        The write may have happened in the backend or not; either way this process cannot
        vouch for other processes' copies, so it drops its own L1 and tells the caller: a
        write must never be reported done while old values may still be served.
        """
        try:
            yield
        except BackendError as exc:
            if self.near is not None:
                self.near.clear()
            logger.error(
                "freshlink: invalidation of %s not confirmed: %s",
                list(names),
                exc,
                extra={"freshlink_event": "invalidation_failed"},
            )
            if self.events.error:
                self.events.emit(Event("error", tags=tuple(names), error=exc))
            if isinstance(exc, InvalidationError):
                raise
            raise InvalidationError(f"invalidation not confirmed: {exc}") from exc

    def _after_invalidate(
        self, names: Sequence[str], values: Sequence[int] | None, mark: int
    ) -> None:
        # A synchronous backend already told our L1 through its listener. For a shared backend
        # the writer learns its own result at once, so it reads its own writes; ``mark`` was
        # taken before the increment was sent (see NearCache.learn_own).
        near = self.near
        if near is not None and not self.backend.synchronous:
            if values is None:
                # A write-through that met another write: our new generations are unknown, and
                # a message published before ours could still arrive and look current. Start
                # afresh: whatever is filled after this was read after our increment.
                near.clear()
            else:
                near.learn_own(names, values, mark)

    def _check_tags(self, tags: Sequence[object]) -> tuple[str, ...]:
        if len(tags) == 1 and not isinstance(tags[0], str) and isinstance(tags[0], Iterable):
            tags = tuple(tags[0])  # invalidate(["a", "b"]) as well as invalidate("a", "b")
        return tuple(check_tag(t) for t in tags)

    def invalidate(self, *tags: str) -> None:
        """Invalidate every entry stamped with any of ``tags`` (one O(1) increment per tag).

        Raises :class:`~freshlink.errors.InvalidationError` if the backend cannot confirm it.
        """
        checked = self._check_tags(tags)
        if checked:
            self.invalidate_names([self.tag_gen(t) for t in checked], checked)

    async def ainvalidate(self, *tags: str) -> None:
        """Async :meth:`invalidate`."""
        checked = self._check_tags(tags)
        if checked:
            await self.ainvalidate_names([self.tag_gen(t) for t in checked], checked)

    def invalidate_names(self, names: Sequence[str], tags: Sequence[str] = ()) -> None:
        """Invalidate raw generation names (tags or entry keys)."""
        mark = self.near.mark() if self.near is not None else 0
        with self._confirming(names):
            values = self.backend.invalidate(names)
        self._after_invalidate(names, values, mark)
        self._emit_invalidation(tags)

    async def ainvalidate_names(self, names: Sequence[str], tags: Sequence[str] = ()) -> None:
        """Async :meth:`invalidate_names`."""
        mark = self.near.mark() if self.near is not None else 0
        with self._confirming(names):
            values = await self.backend.ainvalidate(names)
        self._after_invalidate(names, values, mark)
        self._emit_invalidation(tags)

    def _emit_invalidation(self, tags: Sequence[str]) -> None:
        if self.events.invalidation:
            self.events.emit(Event("invalidation", tags=tuple(tags)))

    def invalidate_key(self, key: str) -> None:
        """Invalidate one entry by key, race-safely (a fill already running cannot revive it)."""
        self.invalidate_names([self._self_prefix + key])

    async def ainvalidate_key(self, key: str) -> None:
        """Async :meth:`invalidate_key`."""
        await self.ainvalidate_names([self._self_prefix + key])

    # ------------------------------------------------------------------ low-level API

    def _user_key(self, key: str) -> str:
        if not isinstance(key, str) or not key:
            raise ConfigurationError(f"a cache key must be a non-empty str, got {key!r}")
        return safe_key(key)

    def get(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        """The value stored under ``key`` (by :meth:`set` or a decorator), or ``default``."""
        k = self._user_key(key)
        names = self.gen_names(k, [check_tag(t) for t in tags])
        read = self.backend.read(self.entry_key(k), names)
        if read.entry is None:
            return default
        value = self._entry_value("get", k, read.entry)
        return default if value is _MISS else value

    async def aget(self, key: str, default: Any = None, *, tags: Sequence[str] = ()) -> Any:
        """Async :meth:`get`."""
        k = self._user_key(key)
        names = self.gen_names(k, [check_tag(t) for t in tags])
        read = await self.backend.aread(self.entry_key(k), names)
        if read.entry is None:
            return default
        value = self._entry_value("get", k, read.entry)
        return default if value is _MISS else value

    def set(
        self, key: str, value: Any, *, ttl: float | _Unset | None = _UNSET, tags: Sequence[str] = ()
    ) -> None:
        """Store ``value`` under ``key``, dying when any of ``tags`` is invalidated."""
        k = self._user_key(key)
        checked = [check_tag(t) for t in tags]
        policy = self.freshness if isinstance(ttl, _Unset) else self._ttl_policy(ttl)
        self.store("set", k, checked, value, policy)

    async def aset(
        self, key: str, value: Any, *, ttl: float | _Unset | None = _UNSET, tags: Sequence[str] = ()
    ) -> None:
        """Async :meth:`set`."""
        k = self._user_key(key)
        checked = [check_tag(t) for t in tags]
        policy = self.freshness if isinstance(ttl, _Unset) else self._ttl_policy(ttl)
        names = self.gen_names(k, checked)
        expected = await self.backend.acurrent(names)
        await self.astore_expected("set", k, names, expected, value, policy)

    def _ttl_policy(self, ttl: float | None) -> Freshness:
        # A plain TTL for set(): explicit values get neither jitter nor a None-specific TTL.
        return self.freshness.with_(ttl=check_ttl(ttl), jitter=0.0, none_ttl=None)

    def delete(self, key: str) -> None:
        """Make the entry under ``key`` invalid everywhere (race-safe, see invalidate_key)."""
        self.invalidate_key(self._user_key(key))

    async def adelete(self, key: str) -> None:
        """Async :meth:`delete`."""
        await self.ainvalidate_key(self._user_key(key))

    def clear_local(self) -> None:
        """Drop this process's L1 (other processes and the backend are untouched)."""
        if self.near is not None:
            self.near.clear()

    def _after_fork(self) -> None:
        # In a forked child (gunicorn --preload, Celery prefork, multiprocessing): threads did
        # not survive the fork, and locks they held stay held. Start afresh; the backend drops
        # the parent's channel and connections and flushes a bounded L1 through its reset hook.
        self._flight = Flight()
        self._aflight = AsyncFlight()
        self.refresher = Refresher(self.refresher.workers, self.refresher.max_pending)
        self.arefresher = AsyncRefresher(self.arefresher.max_pending)
        if self.breaker is not None:
            self.breaker.after_fork()
        if self.near is not None:
            self.near.after_fork()
        if self._closed:
            return
        self.backend.after_fork()
        self._reopen = (
            self.local is not None and self.local.mode == "bounded" and not self.backend.synchronous
        )

    def _reopen_channel(self) -> None:
        self._reopen = False
        try:
            self.backend.ensure_listener()  # type: ignore[attr-defined]
        except Exception:  # retried by the next read; L1 stays untrusted meanwhile
            self._reopen = True
            logger.warning("freshlink: could not reopen the invalidation channel", exc_info=True)

    def close(self) -> None:
        """Release the backend's connections and threads (background refreshes are dropped)."""
        self._closed = True
        self.refresher.close()
        self.backend.close()

    async def aclose(self) -> None:
        """Async :meth:`close` (running async refreshes are awaited first)."""
        self._closed = True
        await self.arefresher.drain()
        self.refresher.close()
        await self.backend.aclose()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reset_in_forked_children(cache: Cache) -> None:
    """Have ``cache`` start afresh in every forked child (it is not kept alive for it)."""
    ref = weakref.ref(cache)

    def after_in_child() -> None:
        alive = ref()
        if alive is not None:
            alive._after_fork()

    os.register_at_fork(after_in_child=after_in_child)
