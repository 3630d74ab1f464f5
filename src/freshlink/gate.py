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


class ReadGate:
    """Read coalescing for threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._out: dict[str, _Batch[Any]] = {}

    def read(self, key: str, do: Callable[[], T], share: Callable[[T], T]) -> T:
        """``do()`` for this caller, or ``share()`` of a read sent after it arrived."""
        with self._lock:
            out = self._out.get(key)
            if out is None:
                batch: _Batch[T] = _Batch()
                self._out[key] = batch
                lead = True
            else:
                if out.done is None:
                    out.done = threading.Event()
                nxt = out.next
                lead = nxt is None
                if nxt is None:
                    nxt = out.next = _Batch()
                    nxt.done = threading.Event()
                batch = nxt
                wait_for = out
        if out is None:
            return self._send(key, batch, do)
        wait_for.done.wait()  # the read that was out when this caller came
        if lead:
            return self._send(key, batch, do)
        batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return share(batch.result)  # type: ignore[arg-type]

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
        out = table.get(key)
        if out is None:
            batch: _Batch[T] = _Batch()
            table[key] = batch
            return await self._send(table, key, batch, do)
        if out.done is None:
            out.done = loop.create_future()
        nxt = out.next
        lead = nxt is None
        if nxt is None:
            nxt = out.next = _Batch()
            nxt.done = loop.create_future()
        await asyncio.shield(out.done)  # the read that was out when this task came
        if lead:
            return await self._send(table, key, nxt, do)
        await asyncio.shield(nxt.done)
        if nxt.error is not None:
            raise nxt.error
        return share(nxt.result)  # type: ignore[arg-type]

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
