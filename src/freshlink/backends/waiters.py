"""Processes waiting for another process's fill, woken by the fill channel."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

from ._wire import notice_read
from .base import Notice
from .channel import Channel

__all__ = ["Waiters"]


def _recheck_every(channel: Channel) -> float:
    # Seconds between safety re-reads while waiting for a fill: rare while the channel is
    # up (its notice wakes us), frequent while it is connecting and notices can be lost.
    return 0.25 if channel.connected.is_set() else 0.02


class Waiters:
    """Callbacks by entry key, called once with the fill's outcome when its notice arrives.

    The fill notice on the channel is the normal wake-up. ``recheck`` (a read) runs after
    registering, so a notice sent before the registration is not missed, and again now and
    then: a notice published while the channel was (re)connecting is lost, and the waiter
    must not sleep out the whole lease for it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[str, list[Callable[[Notice], None]]] = {}

    def add(self, key: str, callback: Callable[[Notice], None]) -> None:
        """Call ``callback(notice)`` on the next notice about ``key``."""
        with self._lock:
            self._by_key.setdefault(key, []).append(callback)

    def remove(self, key: str, callback: Callable[[Notice], None]) -> None:
        """Stop waiting (the notice came, or the wait ended without one)."""
        with self._lock:
            lst = self._by_key.get(key)
            if lst and callback in lst:
                lst.remove(callback)
                if not lst:
                    del self._by_key[key]

    def notify(self, status: str, rest: str) -> None:
        """A fill notice from the channel: ``rest`` is the key, a newline, the message (for
        "ok", the stored entry when the notice carries it)."""
        key, _, message = rest.partition("\n")
        with self._lock:
            callbacks = self._by_key.pop(key, [])
        if not callbacks:
            return  # nobody here waits for it: not even parsed
        if status == "ok":
            notice = Notice(status, "", notice_read(message) if message else None)
        else:  # an error's text: shown to people, so no escaped bytes
            text = message.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            notice = Notice(status, text)
        for cb in callbacks:
            cb(notice)

    def wait(
        self, key: str, timeout: float, recheck: Callable[[], bool], channel: Channel
    ) -> Notice | None:
        """Block until a notice about ``key``, or None when ``recheck`` says the entry is
        there or ``timeout`` passes."""
        done = threading.Event()
        outcome: list[Notice] = []

        def wake(notice: Notice) -> None:
            outcome.append(notice)
            done.set()

        self.add(key, wake)
        try:
            deadline = time.monotonic() + timeout
            while not recheck():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                if done.wait(min(left, _recheck_every(channel))):
                    return outcome[0]
            return None
        finally:
            self.remove(key, wake)

    async def await_(
        self, key: str, timeout: float, recheck: Callable[[], Awaitable[bool]], channel: Channel
    ) -> Notice | None:
        """Async :meth:`wait`: the listener thread wakes the task through its loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Notice] = loop.create_future()

        def wake(notice: Notice) -> None:
            def settle() -> None:
                if not fut.done():
                    fut.set_result(notice)

            loop.call_soon_threadsafe(settle)

        self.add(key, wake)
        try:
            deadline = time.monotonic() + timeout
            while not await recheck():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                try:
                    return await asyncio.wait_for(
                        asyncio.shield(fut), min(left, _recheck_every(channel))
                    )
                except TimeoutError:
                    continue
            return None
        finally:
            self.remove(key, wake)
