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

import random
import time
from collections.abc import Callable, Coroutine, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, overload

from .backends import open_backend
from .backends.base import Backend, Entry
from .errors import (
    ConfigurationError,
    FreshlinkError,
    SerializationError,
    TamperedPayloadError,
)
from .events import Event, Events, logger
from .flight import AsyncFlight, Flight
from .keys import check_tag, safe_key
from .local import Local, NearCache, NearEntry
from .policy import check_ttl, jittered_ttl
from .serializers import Codec, Serializer, make_codec

if TYPE_CHECKING:
    from .handles import AsyncCached, Cached, CachedDecorator

__all__ = ["Cache"]

P = ParamSpec("P")
R = TypeVar("R")


class _Unset:
    def __repr__(self) -> str:
        return "<default>"


_UNSET: Final = _Unset()
_MISS: Final = object()
_NAMESPACE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class Cache:
    """A coherent cache in front of the functions that read your data.

    ``Cache()`` is the embedded default (``memory://``: one process, no server). Pass a
    ``redis://`` URL to share entries and invalidations between processes.
    """

    def __init__(
        self,
        url: str = "memory://",
        *,
        namespace: str = "freshlink",
        local: Local | _Unset | None = _UNSET,
        serializer: str | Serializer = "json",
        default_ttl: float | None = 300.0,
        jitter: float = 0.0,
        secret: str | bytes | Sequence[str | bytes] | None = None,
        max_value_size: int | None = 1 << 20,
        name: str | None = None,
        backend: Backend | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
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
        if not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise ConfigurationError(f"jitter must be a fraction in [0, 1), got {jitter!r}")
        self.namespace = namespace
        self.name = name or namespace
        self.url = url
        self.default_ttl = check_ttl(default_ttl, "default_ttl")
        self.jitter = float(jitter)
        self.codec: Codec = make_codec(serializer, secret=secret, max_value_size=max_value_size)
        self.backend: Backend = backend if backend is not None else open_backend(url)
        self.clock = clock
        self.monotonic = monotonic
        self.rng = rng
        self.events = Events()
        if isinstance(local, _Unset):
            # An in-process backend delivers invalidations synchronously, so an L1 in front of
            # it is exactly as strict as the backend and only saves decoding: on by default.
            local = Local(mode="strict") if self.backend.synchronous else None
        if local is not None and not isinstance(local, Local):
            raise ConfigurationError(f"local= must be a freshlink.Local or None, got {local!r}")
        self.local = local
        self.near: NearCache | None = None
        if local is not None:
            if not self.backend.synchronous:
                raise ConfigurationError(
                    "an L1 (local=) in front of a shared backend needs its invalidation "
                    "channel, which this backend does not provide yet"
                )
            self.near = NearCache(local, clock=monotonic)
            self.backend.subscribe(self.near.learn)
        self._flight = Flight()
        self._aflight = AsyncFlight()
        self._tag_prefix = namespace + ":t:"
        self._self_prefix = namespace + ":k:"
        self._entry_prefix = namespace + ":e:"

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
    ) -> Any:
        """Decorate a function (sync or async, method, classmethod, staticmethod) to cache it.

        ``key`` is a template such as ``"loan:{loan_id}"`` (default: a hash of all arguments);
        ``tags`` are templates whose invalidation kills the entry; ``version`` is part of
        every key, so bumping it makes old entries unreachable.
        """
        from .decorators import make_cached

        if callable(ttl) and not isinstance(ttl, _Unset):
            # Bare ``@cache.cached`` without parentheses.
            return make_cached(
                self, ttl, ttl=self.default_ttl, key=None, tags=(), version=None, code_identity=True
            )
        ttl_value = self.default_ttl if isinstance(ttl, _Unset) else check_ttl(ttl)

        def decorate(func: Any) -> Any:
            return make_cached(
                self,
                func,
                ttl=ttl_value,
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

    def _entry_value(self, fname: str, key: str, entry: Entry) -> Any:
        return self._decode(fname, key, entry.names, entry.stamps, entry.payload)

    # ------------------------------------------------------------------ read path (sync)

    def _near_put(
        self,
        near_key: Hashable,
        value: Any,
        names: Sequence[str],
        stamps: Sequence[int],
        ttl_left: float | None,
        resets: int,
    ) -> None:
        near = self.near
        if near is None or not near.learn_since(names, stamps, resets):
            return
        limit = near.config.ttl
        life = ttl_left if limit is None else limit if ttl_left is None else min(limit, ttl_left)
        expires = self.monotonic() + life if life is not None else float("inf")
        near.put(near_key, NearEntry(value, tuple(zip(names, stamps, strict=True)), expires))

    def _ttl_left(self, entry: Entry) -> float | None:
        return None if entry.ttl is None else entry.created + entry.ttl - self.clock()

    def fetch(
        self,
        fname: str,
        key: str,
        tags: Sequence[str],
        load: Callable[[], Any],
        ttl: float | None,
        near_key: Hashable | None = None,
    ) -> Any:
        """Return the cached value for ``key`` or load, stamp and store it (the sync read path)."""
        near = self.near
        nk = key if near_key is None else near_key
        resets = 0
        if near is not None:
            e = near.get(nk, self.monotonic())
            if e is not None:
                if self.events.hit:
                    self.events.emit(Event("hit", fname, key, "l1"))
                return e.value
            resets = near.resets
        names = self.gen_names(key, tags)
        ekey = self.entry_key(key)
        read = self.backend.read(ekey, names)
        if read.entry is not None:
            value = self._entry_value(fname, key, read.entry)
            if value is not _MISS:
                if self.events.hit:
                    self.events.emit(Event("hit", fname, key, "l2"))
                self._near_put(
                    nk,
                    value,
                    read.entry.names,
                    read.entry.stamps,
                    self._ttl_left(read.entry),
                    resets,
                )
                return value
        if self.events.miss:
            self.events.emit(Event("miss", fname, key))

        def fill() -> Any:
            return self._fill(fname, key, names, read.gens, load, ttl, nk, resets)

        value, _leader = self._flight.run((key, read.gens), fill)
        return value

    def _stamp(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        stamps: Sequence[int],
        value: Any,
        ttl: float | None,
        load_time: float,
    ) -> tuple[Entry, Any, float | None]:
        ttl = jittered_ttl(ttl, self.jitter, self.rng)
        payload, copy = self._encode(fname, key, names, stamps, value)
        if copy is _MISS:  # a serializer that cannot read its own output
            raise SerializationError(f"{fname}: the serializer could not decode what it wrote")
        entry = Entry(payload, tuple(names), tuple(stamps), self.clock(), ttl, load_time)
        return entry, copy, ttl

    def _fill(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        stamps: tuple[int, ...],
        load: Callable[[], Any],
        ttl: float | None,
        near_key: Hashable,
        resets: int,
    ) -> Any:
        t0 = self.monotonic()
        value = load()
        took = self.monotonic() - t0
        if self.events.load:
            self.events.emit(Event("load", fname, key, duration=took))
        entry, copy, ttl = self._stamp(fname, key, names, stamps, value, ttl, took)
        # A fill that lost a race with an invalidation is not stored (and not put in L1); the
        # caller still gets the value, which is allowed: its read began before the write.
        if self.backend.write(self.entry_key(key), entry, ttl):
            self._near_put(near_key, copy, names, stamps, ttl, resets)
        # The caller gets the loader's own object, L1 keeps a decoded copy: mutating the
        # result of a call can never change what the next caller is served.
        return value

    # ------------------------------------------------------------------ read path (async)

    async def afetch(
        self,
        fname: str,
        key: str,
        tags: Sequence[str],
        load: Callable[[], Coroutine[Any, Any, Any]],
        ttl: float | None,
        near_key: Hashable | None = None,
    ) -> Any:
        """Async :meth:`fetch`: the same steps with the backend's async methods."""
        near = self.near
        nk = key if near_key is None else near_key
        resets = 0
        if near is not None:
            e = near.get(nk, self.monotonic())
            if e is not None:
                if self.events.hit:
                    self.events.emit(Event("hit", fname, key, "l1"))
                return e.value
            resets = near.resets
        names = self.gen_names(key, tags)
        read = await self.backend.aread(self.entry_key(key), names)
        if read.entry is not None:
            value = self._entry_value(fname, key, read.entry)
            if value is not _MISS:
                if self.events.hit:
                    self.events.emit(Event("hit", fname, key, "l2"))
                self._near_put(
                    nk,
                    value,
                    read.entry.names,
                    read.entry.stamps,
                    self._ttl_left(read.entry),
                    resets,
                )
                return value
        if self.events.miss:
            self.events.emit(Event("miss", fname, key))

        async def fill() -> Any:
            t0 = self.monotonic()
            value = await load()
            took = self.monotonic() - t0
            if self.events.load:
                self.events.emit(Event("load", fname, key, duration=took))
            entry, copy, ttl_ = self._stamp(fname, key, names, read.gens, value, ttl, took)
            if await self.backend.awrite(self.entry_key(key), entry, ttl_):
                self._near_put(nk, copy, names, read.gens, ttl_, resets)
            return value

        value, _leader = await self._aflight.run((key, read.gens), fill)
        return value

    # ------------------------------------------------------------------ refresh / write-through

    def store(
        self, fname: str, key: str, tags: Sequence[str], value: Any, ttl: float | None
    ) -> Any:
        """Store ``value`` as the current entry for ``key``, invalidating its tags atomically.

        This is the write-through primitive behind :meth:`updates` and ``.refresh()``: it reads
        the current generations and stores the value stamped one past them only if nothing
        invalidated them in between (otherwise it degrades to a plain invalidation).
        """
        names = self.gen_names(key, tags)
        expected = self.backend.current(names)
        return self.store_expected(fname, key, names, expected, value, ttl)

    def store_expected(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        expected: Sequence[int],
        value: Any,
        ttl: float | None,
    ) -> Any:
        """Write-through with generations read earlier (before the wrapped write ran)."""
        stamps = tuple(g + 1 for g in expected)
        entry, copy, ttl = self._stamp(fname, key, names, stamps, value, ttl, 0.0)
        resets = self.near.resets if self.near is not None else 0
        stored = self.backend.write_through(self.entry_key(key), entry, expected, ttl)
        self._after_invalidate(names, stamps if stored else None)
        if stored:
            self._near_put(key, copy, names, stamps, ttl, resets)
        return copy

    async def astore_expected(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        expected: Sequence[int],
        value: Any,
        ttl: float | None,
    ) -> Any:
        """Async :meth:`store_expected`."""
        stamps = tuple(g + 1 for g in expected)
        entry, copy, ttl = self._stamp(fname, key, names, stamps, value, ttl, 0.0)
        resets = self.near.resets if self.near is not None else 0
        stored = await self.backend.awrite_through(self.entry_key(key), entry, expected, ttl)
        self._after_invalidate(names, stamps if stored else None)
        if stored:
            self._near_put(key, copy, names, stamps, ttl, resets)
        return copy

    # ------------------------------------------------------------------ invalidation

    def _after_invalidate(self, names: Sequence[str], values: Sequence[int] | None) -> None:
        # A synchronous backend already told our L1 through its listener. For a shared backend
        # the writer learns its own result at once, so it reads its own writes.
        near = self.near
        if near is not None and not self.backend.synchronous:
            if values is None:
                near.forget(names)
            else:
                near.learn(names, values)

    def _check_tags(self, tags: Sequence[object]) -> tuple[str, ...]:
        if len(tags) == 1 and not isinstance(tags[0], str) and isinstance(tags[0], Iterable):
            tags = tuple(tags[0])  # invalidate(["a", "b"]) as well as invalidate("a", "b")
        return tuple(check_tag(t) for t in tags)

    def invalidate(self, *tags: str) -> None:
        """Invalidate every entry stamped with any of ``tags`` (one O(1) increment per tag)."""
        checked = self._check_tags(tags)
        if checked:
            self.invalidate_names([self.tag_gen(t) for t in checked], checked)

    async def ainvalidate(self, *tags: str) -> None:
        """Async :meth:`invalidate`."""
        checked = self._check_tags(tags)
        if checked:
            names = [self.tag_gen(t) for t in checked]
            values = await self.backend.ainvalidate(names)
            self._after_invalidate(names, values)
            self._emit_invalidation(checked)

    def invalidate_names(self, names: Sequence[str], tags: Sequence[str] = ()) -> None:
        """Invalidate raw generation names (tags or entry keys)."""
        values = self.backend.invalidate(names)
        self._after_invalidate(names, values)
        self._emit_invalidation(tags)

    async def ainvalidate_names(self, names: Sequence[str], tags: Sequence[str] = ()) -> None:
        """Async :meth:`invalidate_names`."""
        values = await self.backend.ainvalidate(names)
        self._after_invalidate(names, values)
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
        ttl_value = self.default_ttl if isinstance(ttl, _Unset) else check_ttl(ttl)
        self.store("set", k, checked, value, ttl_value)

    async def aset(
        self, key: str, value: Any, *, ttl: float | _Unset | None = _UNSET, tags: Sequence[str] = ()
    ) -> None:
        """Async :meth:`set`."""
        k = self._user_key(key)
        checked = [check_tag(t) for t in tags]
        ttl_value = self.default_ttl if isinstance(ttl, _Unset) else check_ttl(ttl)
        names = self.gen_names(k, checked)
        expected = await self.backend.acurrent(names)
        await self.astore_expected("set", k, names, expected, value, ttl_value)

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

    def close(self) -> None:
        """Release the backend's connections and threads."""
        self.backend.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        await self.backend.aclose()

    def __enter__(self) -> Cache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
