"""Writes: confirmed invalidation and write-through, each written once for sync and async.

A write is reported done only once the backend confirmed it; otherwise the caller gets
:class:`~freshlink.errors.InvalidationError` and this process drops its L1 (it can no longer
vouch for its copies). The writer learns its own new generations at once, so it reads its own
writes even before its invalidation message comes back on the channel.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterable, Iterator, Sequence
from typing import Any

from ._drive import adrive, drive
from ._entries import Entries
from ._ops import Call
from .backends.base import Backend
from .errors import BackendError, FreshlinkError, InvalidationError
from .events import Event, Events, logger
from .keys import check_tag
from .keyspace import Keyspace
from .local import NearCache
from .policy import Freshness
from .tracing import Tracer

__all__ = ["Writes"]

#: A write's steps: backend calls (``a`` + name in async code), the value of the last.
Steps = Generator[Call, Any, Any]


def check_tags(tags: Sequence[object]) -> tuple[str, ...]:
    """Validated tags, from ``f("a", "b")`` as well as ``f(["a", "b"])``."""
    if len(tags) == 1 and not isinstance(tags[0], str) and isinstance(tags[0], Iterable):
        tags = tuple(tags[0])
    return tuple(check_tag(t) for t in tags)


class Writes:
    """Invalidation and write-through for one cache."""

    def __init__(
        self,
        backend: Backend,
        entries: Entries,
        near: NearCache | None,
        events: Events,
        keyspace: Keyspace,
    ) -> None:
        self.backend = backend
        self.entries = entries
        self.near = near
        self.events = events
        self.keyspace = keyspace
        self.tracer: Tracer | None = None  # set through Engine.trace

    # -- driving the steps below with the sync or the async backend

    def _perform(self, call: Call) -> Any:
        return getattr(self.backend, call.name)(*call.args)

    async def _aperform(self, call: Call) -> Any:
        return await getattr(self.backend, "a" + call.name)(*call.args)

    def run(self, steps: Steps) -> Any:
        """Perform write steps with the sync backend."""
        return drive(steps, self._perform)

    async def arun(self, steps: Steps) -> Any:
        """Perform write steps with the async backend."""
        return await adrive(steps, self._aperform)

    # -- the steps

    def invalidate_tags(self, tags: Sequence[object]) -> Steps:
        """Invalidate every entry stamped with any of ``tags``."""
        checked = check_tags(tags)
        if checked:
            yield from self.invalidate_names([self.keyspace.tag(t) for t in checked], checked)

    def invalidate_key(self, key: str) -> Steps:
        """Invalidate one entry by key, race-safely (a fill already running cannot revive it)."""
        return self.invalidate_names([self.keyspace.own(key)])

    def invalidate_names(self, names: Sequence[str], tags: Sequence[str] = ()) -> Steps:
        """Invalidate raw generation names (tags' or entry keys')."""
        tracer = self.tracer
        if tracer is None:
            yield from self._invalidate(names, tags)
        else:
            with tracer.span("invalidate", None):
                yield from self._invalidate(names, tags)

    def _invalidate(self, names: Sequence[str], tags: Sequence[str]) -> Steps:
        mark = self.entries.mark()
        with self._confirming(names):
            values = yield Call("invalidate", (names,))
        self._learn_own(names, values, mark)
        self._emitted(tags)

    def store(
        self,
        fname: str,
        key: str,
        names: Sequence[str],
        expected: Sequence[int] | None,
        value: Any,
        policy: Freshness,
    ) -> Steps:
        """Write-through with generations read before the write: store ``value`` as the entry.

        It is stamped one past ``expected``, exactly the values the atomic increment produces
        if nothing else invalidated them meanwhile; otherwise the backend degrades it to a
        plain invalidation. ``expected=None`` (they could not be read) is an invalidation.
        """
        if expected is None:
            yield from self.invalidate_names(names)
            return value
        try:
            stamps = tuple(g + 1 for g in expected)
            entry, copy, retain = self.entries.loaded(fname, key, names, stamps, value, policy, 0.0)
        except FreshlinkError:
            # The write happened: never leave the old value valid.
            yield from self.invalidate_names(names)
            raise
        mark = self.entries.mark()
        with self._confirming(names):
            stored = yield Call(
                "write_through", (self.keyspace.entry(key), entry, expected, retain)
            )
        self._learn_own(entry.names, entry.stamps if stored else None, mark)
        if stored:
            self.entries.fill_near(key, copy, entry, policy, mark)
        self._emitted(())
        return copy

    def store_now(
        self, fname: str, key: str, names: Sequence[str], value: Any, policy: Freshness
    ) -> Steps:
        """:meth:`store` reading the current generations first (``cache.set``)."""
        expected = yield Call("current", (names,))
        return (yield from self.store(fname, key, names, expected, value, policy))

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

    def _learn_own(self, names: Sequence[str], values: Sequence[int] | None, mark: int) -> None:
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

    def _emitted(self, tags: Sequence[str]) -> None:
        if self.events.invalidation:
            self.events.emit(Event("invalidation", tags=tuple(tags)))


def current_or_none(backend: Backend, names: Sequence[str]) -> tuple[int, ...] | None:
    """Generations read before a write-through's write runs, or None if the backend failed."""
    # A backend failure here must not stop the write itself: without the generations the
    # write-through degrades to a plain invalidation after the write (which reports failure).
    try:
        return backend.current(names)
    except BackendError:
        return None


async def acurrent_or_none(backend: Backend, names: Sequence[str]) -> tuple[int, ...] | None:
    """Async :func:`current_or_none`."""
    try:
        return await backend.acurrent(names)
    except BackendError:
        return None
