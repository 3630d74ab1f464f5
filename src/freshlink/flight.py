"""Single-flight: concurrent misses of one key run the loader once and share its outcome.

Flights are keyed by ``(key, generations)`` rather than by key alone. A caller that read newer
generations than a running flight (an invalidation happened in between) must not join it: that
loader may have read the data before the write. Keying by generations makes such a caller start
its own flight, which is what keeps "a read that starts after ``invalidate()`` returned never
sees the old value" true under single-flight.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncFlight", "Flight"]

T = TypeVar("T")


class Flight:
    """Single-flight for threads. No lock is held while a loader runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, Future[Any]] = {}

    def run(
        self, key: Hashable, fn: Callable[[], T], on_follow: Callable[[], object] | None = None
    ) -> tuple[T, bool]:
        """Run ``fn`` once for all concurrent callers of ``key``; return (result, was_leader).

        ``on_follow`` runs in a caller that finds a flight already running, before it waits.
        """
        with self._lock:
            fut = self._calls.get(key)
            leader = fut is None
            if fut is None:
                fut = self._calls[key] = Future()
        if not leader:
            if on_follow is not None:
                on_follow()
            return fut.result(), False
        try:
            result = fn()
        except BaseException as exc:
            fut.set_exception(exc)
            # Nobody may be waiting; mark the exception retrieved so it is not logged as lost.
            fut.exception()
            raise
        else:
            fut.set_result(result)
            return result, True
        finally:
            with self._lock:
                del self._calls[key]

    def __len__(self) -> int:
        return len(self._calls)


class AsyncFlight:
    """Single-flight for asyncio tasks, one table per event loop."""

    def __init__(self) -> None:
        self._tables: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[Hashable, asyncio.Future[Any]]
        ] = weakref.WeakKeyDictionary()

    async def run(
        self,
        key: Hashable,
        fn: Callable[[], Awaitable[T]],
        on_follow: Callable[[], Awaitable[object]] | None = None,
    ) -> tuple[T, bool]:
        """Await ``fn()`` once for all concurrent tasks of ``key``; return (result, was_leader).

        ``on_follow`` is awaited by a task that finds a flight already running, before it waits.
        """
        import asyncio  # here: already loaded in async code, and `import freshlink` stays light

        loop = asyncio.get_running_loop()
        table = self._tables.get(loop)
        if table is None:
            table = self._tables[loop] = {}
        fut = table.get(key)
        if fut is not None:
            if on_follow is not None:
                await on_follow()
            # shield: a waiter being cancelled must not cancel the shared load.
            return await asyncio.shield(fut), False
        fut = table[key] = loop.create_future()
        try:
            result = await fn()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()  # retrieved: no "exception never retrieved" warning
            raise
        else:
            fut.set_result(result)
            return result, True
        finally:
            del table[key]
