"""The invalidation channel: one Redis pub/sub connection per backend, on a daemon thread.

Why pub/sub and not RESP3 client tracking: tracking reports *keys* a connection has read,
so every entry write would also invalidate, and the messages carry no generation values; it
needs Redis >= 6 (redis-py's own client cache refuses < 7.4) and arrives as RESP3 push frames
that some clients never surface. A pub/sub message carries the new generations themselves, is
published by the same Lua script that increments them, and works on every Redis and with
redis-py's defaults (RESP3 included).

Liveness is *proved*, not assumed: every ``ping_interval`` the listener sends ``PING`` on the
subscribed connection. Redis answers in order on that connection, so when the pong for a ping
sent at time ``t`` arrives, every message published before the server saw the ping has already
been handled. L1 may then be trusted until ``t + max_staleness``; a silent or broken channel
simply stops extending that, and a lost connection flushes L1 at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Listener"]

logger = logging.getLogger("freshlink")


class Listener:
    """Subscribes to the invalidation and fill channels and reports what it hears."""

    def __init__(
        self,
        make_pubsub: Callable[[], Any],
        *,
        invalidations: str,
        fills: str,
        ping_interval: float,
        on_invalidate: Callable[[Sequence[str], Sequence[int]], None],
        on_fill: Callable[[str, str], None],
        on_alive: Callable[[float], None],
        on_subscribed: Callable[[], None],
        on_lost: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._make_pubsub = make_pubsub
        self._inv = invalidations.encode()
        self._fill = fills.encode()
        self._interval = ping_interval
        self._on_invalidate = on_invalidate
        self._on_fill = on_fill
        self._on_alive = on_alive
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pubsub: Any = None
        self.connected = threading.Event()
        self.alive = threading.Event()

    def start(self) -> None:
        """Start the listener thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="freshlink-channel", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread and close the connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._close()

    def _close(self) -> None:
        ps, self._pubsub = self._pubsub, None
        if ps is not None:
            try:
                ps.close()
            except Exception:  # already broken; nothing more to release
                logger.debug("freshlink: closing a broken pub/sub connection", exc_info=True)

    def _run(self) -> None:
        backoff = 0.01
        while not self._stop.is_set():
            try:
                self._session()
                backoff = 0.01
            except Exception as exc:
                if self._stop.is_set():
                    break
                logger.warning(
                    "freshlink: invalidation channel lost (%s); L1 flushed until it is back",
                    exc,
                    extra={"freshlink_event": "channel_lost"},
                )
            self.connected.clear()
            self.alive.clear()
            self._on_lost()
            self._close()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 1.0)

    def _session(self) -> None:
        ps = self._pubsub = self._make_pubsub()
        ps.subscribe(self._inv, self._fill)
        pending = 2
        while pending and not self._stop.is_set():
            msg = ps.get_message(timeout=1.0)
            if msg is not None and msg["type"] == "subscribe":
                pending -= 1
        # Messages published while we were not subscribed are lost: flush L1 now, before the
        # first pong makes it trusted again.
        self._on_subscribed()
        self.connected.set()
        sent: dict[bytes, float] = {}
        seq = 0
        next_ping = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if now >= next_ping:
                if sent and now - min(sent.values()) > max(1.0, 20 * self._interval):
                    raise ConnectionError("no pong on the pub/sub connection")
                seq += 1
                token = str(seq).encode()
                sent[token] = now
                ps.ping(token)
                next_ping = now + self._interval
            msg = ps.get_message(timeout=max(next_ping - self._clock(), 0.0))
            if msg is not None:
                self._dispatch(msg, sent)

    def _dispatch(self, msg: dict[str, Any], sent: dict[bytes, float]) -> None:
        kind = msg["type"]
        if kind == "pong":
            t = sent.pop(msg["data"], None)
            if t is not None:
                # Older pings whose pongs we skipped are proven too (replies are in order).
                for token in [k for k, v in sent.items() if v < t]:
                    del sent[token]
                self.alive.set()
                self._on_alive(t)
            return
        if kind != "message":
            return
        data: bytes = msg["data"]
        if msg["channel"] == self._inv:
            names_part, _, values_part = data.partition(b"\n\n")
            names = names_part.decode().split("\n")
            values = [int(v) for v in values_part.split(b",")]
            self._on_invalidate(names, values)
        elif msg["channel"] == self._fill:
            status, _, rest = data.decode("utf-8", "replace").partition("\n")
            self._on_fill(status, rest)
