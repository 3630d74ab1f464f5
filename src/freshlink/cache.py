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
import random
import time
from collections.abc import Callable, Coroutine, Hashable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar, overload

from .backends import open_backend
from .backends.base import Backend, Entry, Read
from .errors import (
    BackendError,
    ConfigurationError,
    FreshlinkError,
    InvalidationError,
    RemoteLoaderError,
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
        if not isinstance(jitter, int | float) or not 0 <= jitter < 1:
            raise ConfigurationError(f"jitter must be a fraction in [0, 1), got {jitter!r}")
        self.namespace = namespace
        self.name = name or namespace
        self.url = url
        self.default_ttl = check_ttl(default_ttl, "default_ttl")
        self.jitter = float(jitter)
        self.codec: Codec = make_codec(serializer, secret=secret, max_value_size=max_value_size)
        if not isinstance(lease_ttl, int | float) or not lease_ttl > 0:
            raise ConfigurationError(f"lease_ttl must be > 0 seconds, got {lease_ttl!r}")
        self.lease_ttl = float(lease_ttl)
        self.backend: Backend = (
            backend if backend is not None else open_backend(url, namespace=namespace)
        )
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
        expires = self.monotonic() + life if life is not None else math.inf
        near.put(near_key, NearEntry(value, tuple(zip(names, stamps, strict=True)), expires))

    def _ttl_left(self, entry: Entry) -> float | None:
        return None if entry.ttl is None else entry.created + entry.ttl - self.clock()

    def _near_hit(self, fname: str, key: str, near_key: Hashable) -> tuple[Any, int]:
        """L1 lookup without I/O: (value or _MISS, resets token for a later put)."""
        near = self.near
        if near is None:
            return _MISS, 0
        e = near.get(near_key, self.monotonic())
        if e is None:
            return _MISS, near.resets
        if self.events.hit:
            self.events.emit(Event("hit", fname, key, "l1"))
        return e.value, near.resets

    def _verified(self, fname: str, key: str, e: NearEntry, current: Sequence[int]) -> Any:
        if tuple(v for _, v in e.stamps) != tuple(current):
            return _MISS
        if self.events.hit:
            self.events.emit(Event("hit", fname, key, "l1"))
        return e.value

    def _served(self, fname: str, key: str, read: Read, near_key: Hashable, resets: int) -> Any:
        """Decode a valid backend entry, remember it in L1; _MISS if it cannot be read."""
        if read.entry is None:
            return _MISS
        value = self._entry_value(fname, key, read.entry)
        if value is not _MISS:
            if self.events.hit:
                self.events.emit(Event("hit", fname, key, "l2"))
            entry = read.entry
            self._near_put(
                near_key, value, entry.names, entry.stamps, self._ttl_left(entry), resets
            )
        return value

    def _backend_failed(self, fname: str, key: str, exc: BackendError, doing: str) -> None:
        logger.warning(
            "freshlink: %s failed for %s, serving from the loader: %s",
            doing,
            key,
            exc,
            extra={"freshlink_key": key, "freshlink_function": fname},
        )
        if self.events.error:
            self.events.emit(Event("error", fname, key, "l2", error=exc))

    def fetch(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        load: Callable[[], Any],
        ttl: float | None,
        near_key: Hashable | None = None,
    ) -> Any:
        """Return the cached value for ``key`` or load, stamp and store it (the sync read path).

        ``names`` are the entry's generation names (:meth:`gen_names`).
        """
        nk = key if near_key is None else near_key
        value, resets = self._near_hit(fname, key, nk)
        if value is not _MISS:
            return value
        try:
            if self._verify_near:
                e = self.near.peek(nk, self.monotonic())  # type: ignore[union-attr]
                if e is not None:
                    value = self._verified(fname, key, e, self.backend.current(e.names))
                    if value is not _MISS:
                        return value
            read = self.backend.read(self.entry_key(key), names)
        except BackendError as exc:
            # Redis down or slow: the page still renders, from the source of truth.
            self._backend_failed(fname, key, exc, "read")
            return load()
        value = self._served(fname, key, read, nk, resets)
        if value is not _MISS:
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

    def _lease(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        stamps: tuple[int, ...],
        near_key: Hashable,
        resets: int,
    ) -> tuple[str, tuple[int, ...], Any]:
        """Cross-process single-flight: (lease token, stamps, _MISS) or ("", _, served value).

        Waiters do not poll: they sleep until the fill channel says the leader wrote (or
        failed), or until the leader's lease runs out, when one of them takes over.
        """
        backend, ekey = self.backend, self.entry_key(key)
        found: list[Any] = []
        while True:
            token, left = backend.lease(ekey, self.lease_ttl)
            if token is not None:
                return token, stamps, _MISS
            found.clear()

            def recheck() -> bool:
                found.append(self._served(fname, key, backend.read(ekey, names), near_key, resets))
                return found[-1] is not _MISS

            outcome = backend.wait_fill(ekey, left, recheck)
            if found and found[-1] is not _MISS:
                return "", stamps, found[-1]
            if outcome is not None and outcome[0] == "err":
                raise RemoteLoaderError(f"{fname}: the process loading {key} failed: {outcome[1]}")
            read = backend.read(ekey, names)
            value = self._served(fname, key, read, near_key, resets)
            if value is not _MISS:
                return "", stamps, value
            stamps = read.gens  # invalidated meanwhile: the next load stamps the newer gens

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
        backend, ekey, token = self.backend, self.entry_key(key), ""
        if backend.supports_leases:
            try:
                token, stamps, served = self._lease(fname, key, names, stamps, near_key, resets)
            except BackendError as exc:
                self._backend_failed(fname, key, exc, "lease")
                return load()
            if served is not _MISS:
                return served
        t0 = self.monotonic()
        try:
            value = load()
        except BaseException as exc:
            if token:
                self._release(ekey, token, exc)
            raise
        took = self.monotonic() - t0
        if self.events.load:
            self.events.emit(Event("load", fname, key, duration=took))
        entry, copy, ttl = self._stamp(fname, key, names, stamps, value, ttl, took)
        # A fill that lost a race with an invalidation is not stored (and not put in L1); the
        # caller still gets the value, which is allowed: its read began before the write.
        try:
            if backend.write(ekey, entry, ttl, token):
                self._near_put(near_key, copy, names, stamps, ttl, resets)
        except BackendError as exc:
            self._backend_failed(fname, key, exc, "write")
        # The caller gets the loader's own object, L1 keeps a decoded copy: mutating the
        # result of a call can never change what the next caller is served.
        return value

    def _release(self, ekey: str, token: str, exc: BaseException) -> None:
        try:
            self.backend.release(ekey, token, f"{type(exc).__name__}: {exc}")
        except BackendError:
            logger.warning("freshlink: could not release the lease of %s", ekey)

    # ------------------------------------------------------------------ read path (async)

    async def afetch(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        load: Callable[[], Coroutine[Any, Any, Any]],
        ttl: float | None,
        near_key: Hashable | None = None,
    ) -> Any:
        """Async :meth:`fetch`: the same steps with the backend's async methods."""
        nk = key if near_key is None else near_key
        value, resets = self._near_hit(fname, key, nk)
        if value is not _MISS:
            return value
        try:
            if self._verify_near:
                e = self.near.peek(nk, self.monotonic())  # type: ignore[union-attr]
                if e is not None:
                    current = await self.backend.acurrent(e.names)
                    value = self._verified(fname, key, e, current)
                    if value is not _MISS:
                        return value
            read = await self.backend.aread(self.entry_key(key), names)
        except BackendError as exc:
            self._backend_failed(fname, key, exc, "read")
            return await load()
        value = self._served(fname, key, read, nk, resets)
        if value is not _MISS:
            return value
        if self.events.miss:
            self.events.emit(Event("miss", fname, key))

        async def fill() -> Any:
            return await self._afill(fname, key, names, read.gens, load, ttl, nk, resets)

        value, _leader = await self._aflight.run((key, read.gens), fill)
        return value

    async def _alease(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        stamps: tuple[int, ...],
        near_key: Hashable,
        resets: int,
    ) -> tuple[str, tuple[int, ...], Any]:
        """Async :meth:`_lease`."""
        backend, ekey = self.backend, self.entry_key(key)
        found: list[Any] = []
        while True:
            token, left = await backend.alease(ekey, self.lease_ttl)
            if token is not None:
                return token, stamps, _MISS
            found.clear()

            async def recheck() -> bool:
                read = await backend.aread(ekey, names)
                found.append(self._served(fname, key, read, near_key, resets))
                return found[-1] is not _MISS

            outcome = await backend.await_fill(ekey, left, recheck)
            if found and found[-1] is not _MISS:
                return "", stamps, found[-1]
            if outcome is not None and outcome[0] == "err":
                raise RemoteLoaderError(f"{fname}: the process loading {key} failed: {outcome[1]}")
            read = await backend.aread(ekey, names)
            value = self._served(fname, key, read, near_key, resets)
            if value is not _MISS:
                return "", stamps, value
            stamps = read.gens

    async def _afill(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        stamps: tuple[int, ...],
        load: Callable[[], Coroutine[Any, Any, Any]],
        ttl: float | None,
        near_key: Hashable,
        resets: int,
    ) -> Any:
        backend, ekey, token = self.backend, self.entry_key(key), ""
        if backend.supports_leases:
            try:
                token, stamps, served = await self._alease(
                    fname, key, names, stamps, near_key, resets
                )
            except BackendError as exc:
                self._backend_failed(fname, key, exc, "lease")
                return await load()
            if served is not _MISS:
                return served
        t0 = self.monotonic()
        try:
            value = await load()
        except BaseException as exc:
            if token:
                try:
                    await backend.arelease(ekey, token, f"{type(exc).__name__}: {exc}")
                except BackendError:
                    logger.warning("freshlink: could not release the lease of %s", ekey)
            raise
        took = self.monotonic() - t0
        if self.events.load:
            self.events.emit(Event("load", fname, key, duration=took))
        entry, copy, ttl = self._stamp(fname, key, names, stamps, value, ttl, took)
        try:
            if await backend.awrite(ekey, entry, ttl, token):
                self._near_put(near_key, copy, names, stamps, ttl, resets)
        except BackendError as exc:
            self._backend_failed(fname, key, exc, "write")
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
        expected: Sequence[int] | None,
        value: Any,
        ttl: float | None,
    ) -> Any:
        """Write-through with generations read earlier (before the wrapped write ran).

        ``expected=None`` (they could not be read) degrades to a plain invalidation.
        """
        if expected is None:
            self.invalidate_names(names)
            return value
        stamps = tuple(g + 1 for g in expected)
        entry, copy, ttl = self._stamp(fname, key, names, stamps, value, ttl, 0.0)
        resets = self.near.resets if self.near is not None else 0
        with self._confirming(names):
            stored = self.backend.write_through(self.entry_key(key), entry, expected, ttl)
        self._after_write_through(key, copy, names, stamps, ttl, resets, stored)
        return copy

    async def astore_expected(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        expected: Sequence[int] | None,
        value: Any,
        ttl: float | None,
    ) -> Any:
        """Async :meth:`store_expected`."""
        if expected is None:
            await self.ainvalidate_names(names)
            return value
        stamps = tuple(g + 1 for g in expected)
        entry, copy, ttl = self._stamp(fname, key, names, stamps, value, ttl, 0.0)
        resets = self.near.resets if self.near is not None else 0
        with self._confirming(names):
            stored = await self.backend.awrite_through(self.entry_key(key), entry, expected, ttl)
        self._after_write_through(key, copy, names, stamps, ttl, resets, stored)
        return copy

    def _after_write_through(
        self,
        key: str,
        copy: Any,
        names: Sequence[str],
        stamps: Sequence[int],
        ttl: float | None,
        resets: int,
        stored: bool,
    ) -> None:
        self._after_invalidate(names, stamps if stored else None)
        if stored:
            self._near_put(key, copy, names, stamps, ttl, resets)
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
        with self._confirming(names):
            values = self.backend.invalidate(names)
        self._after_invalidate(names, values)
        self._emit_invalidation(tags)

    async def ainvalidate_names(self, names: Sequence[str], tags: Sequence[str] = ()) -> None:
        """Async :meth:`invalidate_names`."""
        with self._confirming(names):
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
