"""The backend contract: one documented place for what every backend must guarantee.

A backend stores *entries* (a serialized payload plus the generations it was stamped with)
and *generations* (one integer counter per tag, and one per entry key). It knows nothing of
functions, templates, serializers or L1 caches. Its one subtle duty is the generation-aware
read: an entry is returned only while every generation it was stamped with is still current.

Generation rules every backend keeps (the conformance suite in :mod:`freshlink.testing`
checks them):

* A missing generation is *unknown*, never zero: reading it creates a fresh random value, so an
  entry stamped before the generation was lost (eviction, restart, flush) can never match.
* Invalidation increments, so values only grow while a generation exists.
* ``write`` stores an entry only if its stamps are still current; a fill that lost a race with
  an invalidation is dropped (it would be invalid anyway; dropping it keeps a newer entry).
"""

from __future__ import annotations

import abc
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "GEN_MAX",
    "GEN_MIN",
    "Backend",
    "Entry",
    "InvalidationListener",
    "Notice",
    "Read",
    "new_generation",
]

# Fresh generations are drawn from [GEN_MIN, GEN_MAX): large enough that a re-created
# generation never meets an old stamp by chance (p ~ 2**-52), small enough to stay exact in
# Lua's doubles and in JSON.
GEN_MIN = 1 << 40
GEN_MAX = 1 << 52


def new_generation(rng: Callable[[], float] = random.random) -> int:
    """A fresh random generation for a tag whose counter is missing."""
    return GEN_MIN + int(rng() * (GEN_MAX - GEN_MIN))


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value: its payload and the generations it was stamped with before loading.

    ``names`` are the generation names (the entry's own key's, then its tags') and ``stamps``
    their values read before the loader started. Keeping the names in the entry lets any reader
    validate it without knowing its tags, and lets tools show stamped vs current generations.
    """

    payload: bytes
    names: tuple[str, ...]
    stamps: tuple[int, ...]
    created: float
    ttl: float | None
    load_time: float = 0.0


class Read(NamedTuple):
    """The answer to a generation-aware read."""

    entry: Entry | None
    """The stored entry if it exists and its stamps are all current, else None."""
    current: tuple[int, ...]
    """The current generations of the names asked for (fresh ones created where missing)."""
    token: str | None = None
    """The fill lease this read took (:meth:`Backend.read_lease` on a miss), else None."""
    left: float | None = None
    """Seconds left on another caller's lease (a miss whose lease was taken), else None."""


class Notice(NamedTuple):
    """Another process's fill outcome, as its notice told a waiter."""

    status: str
    """"ok" (stored, or nothing to store), "err" (its loader raised) or "skip" (retry)."""
    message: str
    """The error for "err", else ""."""
    read: Read | None = None
    """The entry the fill stored, when the notice carried it: no re-read is needed."""


InvalidationListener = Callable[[Sequence[str], Sequence[int]], None]
"""Called with generation names and their new values after every invalidation it hears of."""


class Backend(abc.ABC):
    """Storage for entries and generations. Sync and async methods have the same semantics.

    ``names`` arguments are full generation names (namespaced by the caller), in the same order
    as an entry's ``stamps``. The async methods default to calling the sync ones, which is right
    for backends that never block (memory); I/O backends override both.
    """

    #: True when invalidations reach this process's listeners before ``invalidate`` returns
    #: and no other process shares the data, so an L1 in front is as strict as the backend.
    synchronous = False

    @abc.abstractmethod
    def read(self, key: str, names: Sequence[str]) -> Read:
        """Return the entry under ``key`` if all its stamps are current, and ``names``' values."""

    #: True when the backend coordinates fills across processes (lease / wait_fill / release).
    supports_leases = False

    @abc.abstractmethod
    def write(self, key: str, entry: Entry, retain: float | None, token: str = "") -> bool:
        """Store ``entry`` for ``retain`` seconds if its stamps are still current; say if stored.

        ``token`` is the fill's single-flight lease, ended (and waiters woken) by the write.
        """

    @abc.abstractmethod
    def write_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> bool:
        """Atomically invalidate ``entry.names``; store ``entry`` only if they were ``expected``.

        ``entry.stamps`` must be ``expected`` plus one each: the values the increment produces.
        """

    @abc.abstractmethod
    def invalidate(self, names: Sequence[str]) -> tuple[int, ...]:
        """Increment every generation in ``names`` atomically and tell listeners; return them."""

    @abc.abstractmethod
    def current(self, names: Sequence[str]) -> tuple[int, ...]:
        """The current generations (fresh random values are created for missing ones)."""

    @abc.abstractmethod
    def get_entry(self, key: str) -> Entry | None:
        """The raw stored entry, valid or not (for inspection tools)."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove an entry; say whether it existed."""

    @abc.abstractmethod
    def subscribe(self, listener: InvalidationListener) -> None:
        """Register ``listener`` for invalidations made by any process sharing this backend."""

    def after_fork(self) -> None:  # noqa: B027 - optional hook
        """In a forked child: drop the parent's threads and connections (reopened on use)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and threads."""

    def observe_commands(self, on: bool) -> None:  # noqa: B027 - optional hook
        """While ``on`` (the cache is traced), send every command by the client's public
        path, where its own instrumentation sees it; a backend may take shortcuts otherwise."""

    async def aread(self, key: str, names: Sequence[str]) -> Read:
        """Async :meth:`read`."""
        return self.read(key, names)

    async def awrite(self, key: str, entry: Entry, retain: float | None, token: str = "") -> bool:
        """Async :meth:`write`."""
        return self.write(key, entry, retain, token)

    # Cross-process single-flight; only called when ``supports_leases`` is true.

    def read_lease(self, key: str, names: Sequence[str], ttl: float, keep: float = 0.0) -> Read:
        """:meth:`read`, and on a miss :meth:`lease` (``token`` or ``left`` set on the Read).

        ``keep``: seconds the fill would keep the entry (0: unknown, or for ever), a hint for
        the lifetime of generations the read creates. Backends that can do both in one round
        trip override it; this default takes two.
        """
        read = self.read(key, names)
        if read.entry is not None:
            return read
        token, left = self.lease(key, ttl)
        return read._replace(token=token, left=None if token else left)

    async def aread_lease(
        self, key: str, names: Sequence[str], ttl: float, keep: float = 0.0
    ) -> Read:
        """Async :meth:`read_lease`."""
        read = await self.aread(key, names)
        if read.entry is not None:
            return read
        token, left = await self.alease(key, ttl)
        return read._replace(token=token, left=None if token else left)

    def lease(self, key: str, ttl: float) -> tuple[str | None, float]:
        """Try to fill ``key``: (token, 0), or (None, seconds the lease has left)."""
        raise NotImplementedError

    async def alease(self, key: str, ttl: float) -> tuple[str | None, float]:
        """Async :meth:`lease`."""
        raise NotImplementedError

    def release(self, key: str, token: str, error: str) -> None:
        """Give the lease back without a fill; waiters get ``error`` ("" = just retry)."""
        raise NotImplementedError

    async def arelease(self, key: str, token: str, error: str) -> None:
        """Async :meth:`release`."""
        raise NotImplementedError

    def wait_fill(self, key: str, timeout: float, recheck: Callable[[], bool]) -> Notice | None:
        """Wait for another process's fill of ``key``: its notice, or None (timeout, or
        ``recheck`` ended the wait)."""
        raise NotImplementedError

    async def await_fill(
        self, key: str, timeout: float, recheck: Callable[[], Awaitable[bool]]
    ) -> Notice | None:
        """Async :meth:`wait_fill`."""
        raise NotImplementedError

    def on_channel(self, *, alive: Callable[[float], None], reset: Callable[[], None]) -> None:
        """Register L1 hooks: ``alive(t)`` proves delivery up to ``t``; ``reset()`` loses trust."""
        raise NotImplementedError

    async def awrite_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> bool:
        """Async :meth:`write_through`."""
        return self.write_through(key, entry, expected, retain)

    async def ainvalidate(self, names: Sequence[str]) -> tuple[int, ...]:
        """Async :meth:`invalidate`."""
        return self.invalidate(names)

    async def acurrent(self, names: Sequence[str]) -> tuple[int, ...]:
        """Async :meth:`current`."""
        return self.current(names)

    async def adelete(self, key: str) -> bool:
        """Async :meth:`delete`."""
        return self.delete(key)

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        self.close()
