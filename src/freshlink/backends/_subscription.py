"""A subscribed pub/sub connection that any thread can drain, one at a time.

The channel's listener thread waits for data *without* holding the drain lock (a readiness
wait on the socket releases the GIL and holds nothing else); whoever then holds the lock,
the listener thread or a caller polling from the L1 hot path, reads every complete frame
there is. Reading stops only when redis-py's parser buffer is empty, so a frame never sits
in a buffer while the listener waits on the socket for data that already arrived.
"""

from __future__ import annotations

import math
import select
from collections import deque
from typing import Any

__all__ = ["Subscription", "readable"]

#: How long a reader waits for the rest of a frame whose first bytes it already holds (the
#: server writes a reply at once; only a broken connection makes this run out).
REST_OF_FRAME = 0.05


class Subscription:
    """One subscribed connection, the pings sent on it, and how far it has been drained."""

    __slots__ = ("conn", "drains", "error", "pings", "poller", "ps", "sock")

    def __init__(self, ps: Any, conn: Any, sock: Any) -> None:
        self.ps = ps
        self.conn = conn
        self.sock = sock
        # The drainers' own readiness check, used under the drain lock only (a poll object
        # must not be used by two threads at once); the listener waits with another one.
        self.poller: Any = None
        if hasattr(select, "poll"):
            self.poller = select.poll()
            self.poller.register(sock, select.POLLIN)
        # (sequence number, monotonic time sent), oldest first. The listener thread appends
        # (before sending, so a pong is never read before its ping is known); the drainers,
        # serialized by the drain lock, only pop from the left. deque's append and popleft
        # are atomic, so the two sides need no lock between them.
        self.pings: deque[tuple[int, float]] = deque()
        # Drains that read at least one frame: the listener tells from it whether callers
        # are keeping up (see Listener._loop).
        self.drains = 0
        # Set by a drainer that failed: the connection can no longer be trusted.
        self.error: BaseException | None = None

    @classmethod
    def of(cls, ps: Any) -> Subscription | None:
        """The subscription of redis-py ``ps``; None if its socket cannot be reached.

        Without a socket to wait on (another client, a stand-in), the listener reads as it
        always did, blocking in ``get_message`` on its own thread.
        """
        conn = getattr(ps, "connection", None)
        sock = getattr(conn, "_sock", None)
        needed = ("can_read", "read_response")
        if sock is None or not all(hasattr(conn, n) for n in needed):
            return None
        if not hasattr(ps, "handle_message"):
            return None
        return cls(ps, conn, sock)

    def read(self, *, buffered: bool = False) -> list[dict[str, Any]]:
        """Every message the connection holds now (the caller holds the drain lock).

        ``buffered``: the parser may hold frames already (only right after subscribing);
        otherwise every drain left it empty, and a quiet socket means there is nothing.
        Raises what redis-py raises for a broken connection: the caller ends the session.
        """
        if not buffered and self.poller is not None and not self.poller.poll(0):
            return []  # the common case of a poll from the hot path: one syscall, 0.3 µs
        conn, ps = self.conn, self.ps
        if getattr(conn, "_sock", None) is not self.sock:
            # redis-py reconnected it underneath (a command on a dropped connection does):
            # what was published meanwhile is lost, so nothing read on it may prove delivery.
            raise ConnectionError("the pub/sub connection was replaced")
        out = []
        # can_read is true while the parser holds any byte, so the loop ends with its buffer
        # empty: the next wait on the socket cannot miss a frame that is already here.
        while conn.can_read(timeout=0):
            response = conn.read_response(
                disconnect_on_error=False, push_request=True, timeout=REST_OF_FRAME
            )
            msg = ps.handle_message(response)
            if msg is not None:
                out.append(msg)
        if out:
            self.drains += 1
        return out


def readable(sock: Any, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``sock`` to be readable (or closed); holds no lock."""
    if hasattr(select, "poll"):
        poller = select.poll()  # per call: a poll object must not be shared between threads
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(math.ceil(timeout * 1000)))
    r, _, _ = select.select([sock], [], [], timeout)  # pragma: no cover - Windows
    return bool(r)
