"""Opening a redis-py client's pooled connections ahead of need.

A pool opens a connection when a caller finds none idle, and that caller waits for it: the
TCP connect and the handshake (``HELLO``, ``CLIENT SETINFO``, the ``INFO`` that tells freshlink
the server's identity), several round trips. When an app's first requests arrive together,
every one of them pays that at once, and under GIL contention (threads) or on one busy event
loop (tasks) each waits for the others' handshakes too: 7 to 17 ms instead of 0.1-1 ms.
Opening a few connections when the client is made, off the request path, spares them that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

from ..errors import ConfigurationError

__all__ = ["Warmup", "awarm", "warm", "warm_count", "warm_in_thread"]

logger = logging.getLogger("freshlink")


def warm_count(pool: Any, wanted: int) -> int:
    """How many connections to open in ``pool``: at most a quarter of a bounded pool.

    The warm-up holds its connections until all are open (a pool hands out an idle connection
    before it opens another), so it must leave callers nearly all of ``max_connections``.
    """
    bound = getattr(pool, "max_connections", None)
    if isinstance(bound, int):
        wanted = min(wanted, bound // 4)
    return max(wanted, 0)


def warm(pool: Any, wanted: int) -> None:
    """Open up to ``wanted`` connections in a sync pool and leave them idle there."""
    held: list[Any] = []
    try:
        for _ in range(warm_count(pool, wanted)):
            held.append(pool.get_connection())
    except Exception:  # Redis down or slow: the first real call reports it, not this
        logger.debug("freshlink: warming the connection pool failed", exc_info=True)
    finally:
        for conn in held:
            pool.release(conn)


def warm_in_thread(pool: Any, wanted: int) -> threading.Thread | None:
    """:func:`warm` in a one-shot daemon thread (None when there is nothing to open)."""
    if warm_count(pool, wanted) == 0:
        return None
    thread = threading.Thread(
        target=warm, args=(pool, wanted), name="freshlink-warmup", daemon=True
    )
    thread.start()
    return thread


async def awarm(pool: Any, wanted: int) -> None:
    """:func:`warm` for an asyncio pool, on the loop its connections will serve."""
    held: list[Any] = []
    try:
        for _ in range(warm_count(pool, wanted)):
            held.append(await pool.get_connection())
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.debug("freshlink: warming the connection pool failed", exc_info=True)
    finally:
        for conn in held:
            await pool.release(conn)


class Warmup:
    """The warm-ups of one backend's clients: a thread for a sync pool, a task for asyncio."""

    def __init__(self, connections: int) -> None:
        if not isinstance(connections, int) or isinstance(connections, bool) or connections < 0:
            raise ConfigurationError(f"warm_connections must be an int >= 0, got {connections!r}")
        #: Connections each client opens ahead of need.
        self.connections = connections
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    def sync(self, pool: Any) -> None:
        """Warm a sync pool in a one-shot background thread."""
        self._thread = warm_in_thread(pool, self.connections)

    def aio(self, pool: Any) -> None:
        """Warm an asyncio pool in a task on the running loop (whose connections these are)."""
        # A client first touched outside a loop is not warmed: there is no loop to own them.
        loop = _running_loop()
        if loop is not None and warm_count(pool, self.connections):
            self._task = loop.create_task(awarm(pool, self.connections))

    def join(self) -> None:
        """Let a sync warm-up under way finish (it holds connections a close would drop)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=2)  # a down server fails it within the connect timeout

    async def astop(self) -> None:
        """Stop an async warm-up under way on this loop."""
        task, self._task = self._task, None
        if task is not None and not task.done() and task.get_loop() is _running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def after_fork(self) -> None:
        """Forget the parent's warm-ups (its thread did not survive; its task is its loop's)."""
        self._thread = self._task = None


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
