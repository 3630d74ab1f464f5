"""One command on a pooled connection, without ``execute_command``'s per-call bookkeeping.

redis-py 8 spends, per command, about 6 µs of client CPU outside the socket on this
project's benchmark machine (a 2-vCPU VM) in ``execute_command`` (a retry closure,
observability records, reconnect checks) and as much again in the pool's
``get_connection`` / ``release`` (a lock, connection-count records, an event dispatch, a
``poll`` for unread data): together more than the rest of a freshlink L2 hit. The hot
commands (the read, write and lease scripts) go through a :class:`Lane` instead.

A lane keeps the connections it took from the client's pool (one per thread that was ever
inside a command at the same time), and hands them out with a list ``pop`` / ``append``
(atomic under the GIL). The pool's checks are not needed for them: a lane connection always
has its reply read in full before it is handed out again, and one that failed in any way is
disconnected and given back to the pool, never reused. Nothing is lost on failure either: a
connection or timeout error sends the command again through ``execute_command``, with the
client's own retry policy, exactly as if its first attempt had failed (the scripts are
written so that a second run is harmless), and a connection the server asked to reconnect
(maintenance notifications) is dropped as the pool's ``release`` would. The lane is only used
where the pool is a plain ``redis.ConnectionPool``: a Sentinel pool (which must drop
connections to a demoted master), a blocking pool (its size limit) or a client-side cache
go through ``execute_command`` as before, as does a client bound to a single connection.

Commands are packed with ``hiredis.pack_command`` directly (what redis-py's own hiredis
serializer calls, after argument checks that cost as much as the packing).
"""

from __future__ import annotations

import asyncio
import os
import weakref
from collections.abc import Callable
from typing import Any

from ._redis_base import _redis

__all__ = ["ALane", "Lane", "Lanes"]


def _packer() -> Callable[[tuple[Any, ...]], bytes] | None:
    try:
        import hiredis
    except ImportError:  # redis-py packs in Python then: use its connection's packer
        return None
    return hiredis.pack_command


_PACK = _packer()


def _own(client: Any, plain: type) -> bool:
    """Whether a lane may keep ``client``'s connections: a plain pool of exactly that class (a
    Sentinel or blocking pool checks or limits every hand-out), no client-side cache, and no
    single connection the client owns."""
    pool = getattr(client, "connection_pool", None)
    return (
        type(pool) is plain
        and getattr(client, "connection", None) is None
        and getattr(pool, "cache", None) is None
    )


class Lane:
    """The hot commands of one sync client, on connections kept out of its pool."""

    def __init__(self, client: Any) -> None:
        self.client = client
        redis = _redis()
        self._pool: Any = getattr(client, "connection_pool", None)
        self._own = _own(client, redis.ConnectionPool)
        self._lean = self._own  # False while commands must be seen (see Lanes.observe)
        self._idle: list[Any] = []
        self._pid = os.getpid()
        self._errors = redis.exceptions

    def call(self, args: tuple[Any, ...]) -> Any:
        """``client.execute_command(*args)``, minus redis-py's per-call bookkeeping."""
        if not self._lean:
            return self.client.execute_command(*args)
        if self._pid != os.getpid():
            # A forked child: these sockets are the parent's (the pool starts afresh too).
            self._idle, self._pid = [], os.getpid()
        idle = self._idle
        try:
            conn = idle.pop()
        except IndexError:
            conn = self._pool.get_connection()
        errors = self._errors
        try:
            if _PACK is not None:
                conn.send_packed_command([_PACK(args)])
            else:
                conn.send_command(*args)
            reply = conn.read_response()
        except (errors.ConnectionError, errors.TimeoutError, OSError):
            self._drop(conn)
            return self.client.execute_command(*args)  # the client's retry policy from here on
        except errors.ResponseError:
            self._keep(idle, conn)  # an error reply leaves the connection in step
            raise
        except BaseException:
            self._drop(conn)  # interrupted in the middle of a reply: never reuse it
            raise
        if conn.should_reconnect():
            self._drop(conn)  # the server announced maintenance: as the pool's release does
        else:
            self._keep(idle, conn)
        return reply

    def _keep(self, idle: list[Any], conn: Any) -> None:
        idle.append(conn)
        if self._idle is not idle or not self._lean:
            # close() (or observe) swapped the list while this command ran, or observation
            # began between its lean check and its taking the list: nothing takes from this
            # list until observation ends, so it goes back to the pool. Whoever pops a
            # connection (close() or this) releases it, so it is released exactly once.
            self._release(idle)

    def _release(self, idle: list[Any]) -> None:
        while True:
            try:
                conn = idle.pop()  # atomic: a thread finishing a command may drain it too
            except IndexError:
                return
            self._pool.release(conn)

    def _drop(self, conn: Any) -> None:
        conn.disconnect()
        self._pool.release(conn)

    def observe(self, on: bool) -> None:
        """Send every command through ``execute_command`` (on) or by the lane again (off)."""
        self._lean = self._own and not on
        if on:
            # The kept connections go back to the pool now; a command under way gives its
            # connection back when it ends (see _keep).
            self.close()

    def close(self) -> None:
        """Give every kept connection back to the pool (which the client then disconnects)."""
        idle, self._idle = self._idle, []
        if self._pid == os.getpid():
            self._release(idle)


class Lanes:
    """The lanes of one backend's clients (sync and asyncio), made on first use."""

    def __init__(self) -> None:
        self._sync: Lane | None = None
        self._async: ALane | None = None
        self._observed = False

    def observe(self, on: bool) -> None:
        """Route the hot commands through ``execute_command`` while ``on``, where a client
        instrumentation (OpenTelemetry's for redis-py) sees them, inside the caller's span."""
        self._observed = on
        for lane in (self._sync, self._async):
            if lane is not None:
                lane.observe(on)

    def sync(self, client: Any) -> Lane:
        """The lane of ``client`` (a new one if the backend's client changed)."""
        lane = self._sync
        if lane is None or lane.client is not client:
            lane = self._sync = Lane(client)
            lane.observe(self._observed)
        return lane

    def asyncio(self, client: Any) -> ALane:
        """The lane of the asyncio ``client``."""
        lane = self._async
        if lane is None or lane.client is not client:
            lane = self._async = ALane(client)
            lane.observe(self._observed)
        return lane

    def close(self) -> None:
        """Give the sync lane's connections back to its pool."""
        if self._sync is not None:
            self._sync.close()

    async def aclose(self) -> None:
        """Give this event loop's asyncio connections back to their pool."""
        if self._async is not None:
            await self._async.aclose()


class ALane:
    """:class:`Lane` for an asyncio client: kept connections per event loop (a connection
    belongs to the loop it was opened on)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._pool: Any = getattr(client, "connection_pool", None)
        self._own = _own(client, _redis("redis.asyncio").ConnectionPool)
        self._lean = self._own
        self._idle: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Any]] = (
            weakref.WeakKeyDictionary()
        )
        self._pid = os.getpid()
        self._errors = _redis().exceptions

    async def call(self, args: tuple[Any, ...]) -> Any:
        """``await client.execute_command(*args)``, minus redis-py's per-call bookkeeping."""
        if not self._lean:
            if self._idle and self._pid == os.getpid():
                # Connections kept before observing began: back to the pool first (observe
                # cannot await), before execute_command asks the pool for one.
                await self._release(self._idle.pop(asyncio.get_running_loop(), []))
            return await self.client.execute_command(*args)
        if self._pid != os.getpid():
            self._idle, self._pid = weakref.WeakKeyDictionary(), os.getpid()
        loop = asyncio.get_running_loop()
        idle = self._idle.get(loop)
        if idle is None:
            idle = self._idle[loop] = []
        try:
            conn = idle.pop()
        except IndexError:
            conn = await self._pool.get_connection()
        errors = self._errors
        try:
            if _PACK is not None:
                await conn.send_packed_command([_PACK(args)])
            else:
                await conn.send_command(*args)
            reply = await conn.read_response()
        except (errors.ConnectionError, errors.TimeoutError, OSError):
            await self._drop(conn)
            return await self.client.execute_command(*args)
        except errors.ResponseError:
            await self._keep(loop, idle, conn)
            raise
        except BaseException:
            # Cancelled mid-reply (a request timeout): the reply may still come; drop it.
            await self._drop(conn)
            raise
        if conn.should_reconnect():
            await self._drop(conn)
        else:
            await self._keep(loop, idle, conn)
        return reply

    async def _keep(self, loop: asyncio.AbstractEventLoop, idle: list[Any], conn: Any) -> None:
        idle.append(conn)
        if self._idle.get(loop) is not idle:
            # aclose() or an observed command took the list while this one ran (Lane._keep).
            await self._release(idle)

    async def _release(self, idle: list[Any]) -> None:
        while True:
            try:
                conn = idle.pop()
            except IndexError:
                return
            await self._pool.release(conn)

    async def _drop(self, conn: Any) -> None:
        await conn.disconnect()
        await self._pool.release(conn)

    def observe(self, on: bool) -> None:
        """:meth:`Lane.observe`, except that the kept connections of an event loop go back to
        the pool at its first command while observed (releasing one awaits, this cannot)."""
        self._lean = self._own and not on

    async def aclose(self) -> None:
        """Give the kept connections of this event loop back to the pool."""
        idle = self._idle.pop(asyncio.get_running_loop(), [])
        if self._pid == os.getpid():
            await self._release(idle)
