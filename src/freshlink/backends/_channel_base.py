"""The channel side of a shared backend: invalidation listeners, L1 hooks and fill waiters.

A backend shared between processes hears of other processes' invalidations and fills on a
:class:`~freshlink.backends.channel.Channel`; this is where the backend starts it, tells it
whom to call, and hands it back to a forked child or a closing app.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from ..keyspace import Keyspace
from .base import Backend, InvalidationListener, Notice
from .channel import Channel
from .waiters import Waiters

__all__ = ["ChannelBackend"]


class ChannelBackend(Backend):
    """A backend with a channel: subscriptions, L1 hooks, fill waiters, fork and close."""

    def __init__(self, namespace: str, ping_interval: float) -> None:
        self.namespace = namespace
        #: The names this backend writes (entries, generations, leases, channels).
        self.keyspace = Keyspace(namespace)
        self._ping_interval = ping_interval
        self._lock = threading.Lock()
        self._listeners: list[InvalidationListener] = []
        self._alive_hooks: list[Callable[[float], None]] = []
        self._reset_hooks: list[Callable[[], None]] = []
        self._listener: Channel | None = None
        self._waiters = Waiters()

    def wait_fill(self, key: str, timeout: float, recheck: Callable[[], bool]) -> Notice | None:
        """Block until another process fills ``key`` (or fails), or ``timeout`` passes."""
        return self._waiters.wait(key, timeout, recheck, self.ensure_listener())

    async def await_fill(
        self, key: str, timeout: float, recheck: Callable[[], Awaitable[bool]]
    ) -> Notice | None:
        """Async :meth:`wait_fill`: the listener thread wakes the task through its loop."""
        return await self._waiters.await_(key, timeout, recheck, self.ensure_listener())

    # ------------------------------------------------------------------ channel

    def subscribe(self, listener: InvalidationListener) -> None:
        """See :meth:`Backend.subscribe`; starts the channel thread."""
        self._listeners.append(listener)
        self.ensure_listener()

    def on_channel(self, *, alive: Callable[[float], None], reset: Callable[[], None]) -> None:
        """Hooks for L1: ``alive(t)`` on each proof of liveness, ``reset()`` when trust is lost."""
        self._alive_hooks.append(alive)
        self._reset_hooks.append(reset)

    def poll_channel(self) -> bool:
        """Drain the channel in the calling thread (the L1 hook); False if another thread is."""
        listener = self._listener
        return listener is None or listener.poll()

    def ensure_listener(self) -> Channel:
        """Start the pub/sub listener thread if it is not running."""
        if self._listener is None:
            with self._lock:
                if self._listener is None:
                    listener = self._new_listener()
                    listener.start()
                    self._listener = listener
        return self._listener

    @abc.abstractmethod
    def _new_listener(self) -> Channel:
        """The channel of this backend (not started)."""

    def _channel_options(self) -> dict[str, Any]:
        """What every channel is told: the channel names, how often to ping, whom to call."""
        return {
            "invalidations": self.keyspace.invalidations,
            "fills": self.keyspace.fills,
            "ping_interval": self._ping_interval,
            "on_invalidate": self._dispatch_invalidation,
            "on_fill": self._waiters.notify,
            "on_alive": self._dispatch_alive,
        }

    @property
    def listener(self) -> Channel | None:
        """The running channel listener, if any."""
        return self._listener

    def _dispatch_invalidation(self, names: Sequence[str], values: Sequence[int]) -> None:
        for listener in self._listeners:
            listener(names, values)

    def _dispatch_alive(self, t: float) -> None:
        for hook in self._alive_hooks:
            hook(t)

    def _dispatch_reset(self) -> None:
        for hook in self._reset_hooks:
            hook()

    def after_fork(self) -> None:
        """In a forked child (gunicorn ``--preload``, Celery prefork, multiprocessing).

        The channel thread did not survive the fork, and a connection must never be shared
        with the parent (replies would go to whichever process reads first). The channel is
        started again by :meth:`ensure_listener` on first use; until its first proof L1 is
        not trusted.
        """
        self._lock = threading.Lock()
        self._waiters = Waiters()
        self._listener = None
        self._dispatch_reset()

    def close(self) -> None:
        """Stop the channel."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
