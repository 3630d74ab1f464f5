"""One command on a pooled connection, without ``execute_command``'s per-call bookkeeping.

redis-py 8's ``execute_command`` wraps every call in a retry closure, observability records
(operation duration, connection counts, pool names) and reconnect checks: about 6 µs of
client CPU per command on this project's benchmark machine, as much as the rest of a
freshlink L2 hit. The hot commands (the read, write and lease scripts) are sent here
instead: take a connection from the client's own pool, send, read the reply, give it back.

Nothing is lost on failure: a connection or timeout error drops the connection and the
command is sent again through ``execute_command``, with the client's own retry policy,
exactly as if its first attempt had failed. (Every command sent this way may run twice:
the scripts are written so that a second run is harmless.) A client bound to a single
connection, or one whose pool must reconnect for server maintenance, uses
``execute_command`` directly.
"""

from __future__ import annotations

from typing import Any

from ._redis_base import _redis

__all__ = ["acall", "call"]


def _plain(client: Any) -> bool:
    # single_connection_client=True: the client owns one connection and a lock around it.
    return getattr(client, "connection", None) is None


def call(client: Any, args: tuple[Any, ...]) -> Any:
    """``client.execute_command(*args)``, minus redis-py's per-call bookkeeping."""
    if not _plain(client):
        return client.execute_command(*args)
    exc = _redis().exceptions
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_command(*args)
        reply = conn.read_response()
    except (exc.ConnectionError, exc.TimeoutError, OSError):
        conn.disconnect()
        pool.release(conn)
        return client.execute_command(*args)  # the client's retry policy from here on
    except exc.ResponseError:
        pool.release(conn)  # an error reply leaves the connection in step
        raise
    except BaseException:
        # Interrupted in the middle of a reply: never hand a half-read connection back.
        conn.disconnect()
        pool.release(conn)
        raise
    pool.release(conn)
    return reply


async def acall(client: Any, args: tuple[Any, ...]) -> Any:
    """Async :func:`call`."""
    if not _plain(client):
        return await client.execute_command(*args)
    exc = _redis().exceptions
    pool = client.connection_pool
    conn = await pool.get_connection()
    try:
        await conn.send_command(*args)
        reply = await conn.read_response()
    except (exc.ConnectionError, exc.TimeoutError, OSError):
        await conn.disconnect()
        await pool.release(conn)
        return await client.execute_command(*args)
    except exc.ResponseError:
        await pool.release(conn)
        raise
    except BaseException:
        # Cancelled mid-reply (a request timeout): the reply may still come; drop it.
        await conn.disconnect()
        await pool.release(conn)
        raise
    await pool.release(conn)
    return reply
