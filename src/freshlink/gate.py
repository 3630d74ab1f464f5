"""Read coalescing: concurrent reads of one key in a process share one round trip.

A caller never takes the answer of a read that was sent before it arrived: that read may
predate an invalidation acknowledged before the caller started, and strict mode promises such
a caller the new value. So a caller that finds a read of its key in flight waits for it to
end and then joins the *next* read, which one of the waiting callers sends on behalf of all
of them, and which therefore started after every one of them. Under a stampede (a hundred
threads missing one key at once) a process sends a handful of reads instead of a hundred;
a read nobody else wants costs one uncontended lock round.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncReadGate", "ReadGate"]

T = TypeVar("T")


class _Batch(Generic[T]):
    """One read and the callers that share it."""

    __slots__ = ("done", "error", "next", "result")

    def __init__(self) -> None:
        self.next: _Batch[T] | None = None  # callers that arrived while this read was out
        self.done: Any = None  # an Event (threads) or a Future (asyncio), made by a follower
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self, share: Callable[[T], T]) -> T:
        """The read's result as a caller that did not send it sees it, or its error."""
        if self.error is not None:
            raise self.error
        return share(self.result)  # type: ignore[arg-type]


def _join(
    table: dict[str, _Batch[Any]], key: str, signal: Callable[[], Any]
) -> tuple[_Batch[Any] | None, _Batch[Any], bool]:
    """Where a caller stands: (the read out when it came or None, its batch, whether it sends
    that batch's read). ``signal`` makes what callers wait on (an Event, or a Future)."""
    out = table.get(key)
    if out is None:
        batch: _Batch[Any] = _Batch()
        table[key] = batch
        return None, batch, True
    if out.done is None:
        out.done = signal()
    nxt = out.next
    if nxt is not None:
        return out, nxt, False
    nxt = out.next = _Batch()
    nxt.done = signal()
    return out, nxt, True


class ReadGate:
    """Read coalescing for threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._out: dict[str, _Batch[Any]] = {}

    def read(self, key: str, do: Callable[[], T], share: Callable[[T], T]) -> T:
        """``do()`` for this caller, or ``share()`` of a read sent after it arrived."""
        batch: _Batch[T]
        with self._lock:
            out, batch, lead = _join(self._out, key, threading.Event)
        if out is None:
            return self._send(key, batch, do)
        out.done.wait()  # the read that was out when this caller came
        if lead:
            return self._send(key, batch, do)
        batch.done.wait()
        return batch.outcome(share)

    def _send(self, key: str, batch: _Batch[T], do: Callable[[], T]) -> T:
        try:
            result = batch.result = do()
        except BaseException as exc:
            batch.error = exc
            raise
        finally:
            with self._lock:
                if batch.next is None:
                    del self._out[key]
                else:
                    self._out[key] = batch.next  # its leader sends it now
                if batch.done is None:
                    batch.done = _SET
            batch.done.set()
        return result


class _Set:
    """A stand-in for an Event nobody waits on (the common case: no follower came)."""

    def set(self) -> None:
        """Nothing waits."""

    def wait(self) -> bool:
        """Already set."""
        return True


_SET = _Set()


class AsyncReadGate:
    """Read coalescing for asyncio tasks, one table per event loop."""

    def __init__(self) -> None:
        self._tables: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[str, _Batch[Any]]
        ] = weakref.WeakKeyDictionary()

    async def read(self, key: str, do: Callable[[], Awaitable[T]], share: Callable[[T], T]) -> T:
        """``await do()`` for this task, or ``share()`` of a read sent after it arrived."""
        import asyncio  # here: already loaded in async code, and `import freshlink` stays light

        loop = asyncio.get_running_loop()
        table = self._tables.get(loop)
        if table is None:
            table = self._tables[loop] = {}
        batch: _Batch[T]
        out, batch, lead = _join(table, key, loop.create_future)
        if out is None:
            return await self._send(table, key, batch, do)
        await asyncio.shield(out.done)  # the read that was out when this task came
        if lead:
            return await self._send(table, key, batch, do)
        await asyncio.shield(batch.done)
        return batch.outcome(share)

    async def _send(
        self,
        table: dict[str, _Batch[Any]],
        key: str,
        batch: _Batch[T],
        do: Callable[[], Awaitable[T]],
    ) -> T:
        try:
            result = batch.result = await do()
        except BaseException as exc:
            batch.error = exc
            raise
        finally:
            if batch.next is None:
                del table[key]
            else:
                table[key] = batch.next
            if batch.done is not None and not batch.done.done():
                batch.done.set_result(None)
        return result
