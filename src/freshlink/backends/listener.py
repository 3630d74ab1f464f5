"""The channel's listener: one subscribed connection, drained by its thread or by callers.

See :mod:`freshlink.backends.channel` for what the channel carries and how liveness is
proved. A daemon thread subscribes, pings and waits for data; the L1 hot path calls
:meth:`Listener.poll` every :data:`~freshlink.local.POLL_EVERY`, which reads what has
arrived in the caller's own thread. Both read under one lock, so messages are still handled
one at a time and in the order the server sent them, and a pong still proves delivery of
exactly what was read before it.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ._forksafe import track
from ._subscription import Subscription, readable

__all__ = ["Listener"]

logger = logging.getLogger("freshlink")

#: A caller that polled within this long is taken to be polling still: the listener thread
#: leaves data to it for this long before draining it itself (2x the hot path's poll period).
_CALLERS_ACTIVE = 0.001
#: How often the listener thread looks whether callers stopped polling (it then drains itself).
_CALLERS_CHECK = 0.005


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
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._make_pubsub = make_pubsub
        self._rng = rng
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
        # Whoever reads the subscribed connection holds this: the thread, or a caller in poll.
        self._lock = threading.Lock()
        self._current: Subscription | None = None  # the session callers may drain, if any
        self._polled = -math.inf  # when a caller last polled (monotonic)
        #: Polls that read messages in a caller's thread (tests and tools watch it).
        self.caller_drains = 0
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

    def reconnect(self) -> None:
        """Drop the connection now (the thread reconnects, and reports it lost meanwhile)."""
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
            # Jittered: after a Redis restart every process would otherwise resubscribe (and
            # hit the server) in lockstep, at 10, 20, 40 ms...
            self._stop.wait(backoff * (0.5 + self._rng()))
            backoff = min(backoff * 2, 1.0)

    def poll(self) -> bool:
        """Drain the channel in the calling thread if data waits; False if another thread is.

        Called from the L1 hot path every :data:`~freshlink.local.POLL_EVERY`: a thread that
        never blocks keeps the listener thread from the GIL for a switch interval (5 ms) per
        handoff, so the caller reads the messages itself. Never blocks (the drain lock is only
        tried), never raises: a broken connection is reported lost, as the thread would.
        """
        self._polled = self._clock()
        sub = self._current
        if sub is None:
            return True
        if not self._lock.acquire(blocking=False):
            # The holder may be waiting for the GIL this thread holds, and would get it only
            # at a switch interval: hand it over now (sleep(0) releases it), and the hot path
            # asks again soon (see NearCache._polled).
            time.sleep(0)
            return False
        try:
            if sub is self._current and sub.error is None and self._drain(sub):
                self.caller_drains += 1
        except Exception as exc:
            logger.debug("freshlink: draining the channel in a caller failed", exc_info=True)
            self._fail(sub, exc)
        finally:
            self._lock.release()
        return True

    def _fail(self, sub: Subscription, exc: BaseException) -> None:
        """A drainer hit ``exc`` (drain lock held): no pong of ``sub`` proves anything now."""
        if sub.error is None:
            sub.error = exc
            self.connected.clear()
            self.alive.clear()
            self._on_lost()  # flush at once; the thread ends the session when it wakes

    def _session(self) -> None:
        ps = self._pubsub = self._make_pubsub()
        track(getattr(ps, "connection_pool", None))
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
        sub = Subscription.of(ps)
        if sub is None:
            self._listen_alone(ps)
            return
        with self._lock:
            self._current = sub
        try:
            self._loop(sub)
        finally:
            # Under the drain lock: once it is released no caller dispatches for this
            # session, so nothing it reads can follow the loss the thread reports next.
            with self._lock:
                self._current = None
                if sub.error is None:
                    sub.error = ConnectionError("session ended")

    def _loop(self, sub: Subscription) -> None:
        """Ping, wait for data without the drain lock, drain unless callers are at it."""
        seq = 0
        next_ping = self._clock()
        # Frames read along with the subscription replies may already sit in the buffer.
        self._drain_here(sub, buffered=True)
        while not self._stop.is_set():
            if sub.error is not None:  # a caller found the connection broken: end it now
                raise sub.error
            now = self._clock()
            if now >= next_ping:
                self._check_pongs(sub, now)
                seq += 1
                # Known before it is sent: a caller may read the pong before ping() returns.
                sub.pings.append((seq, now))
                # Sent without the drain lock: redis-py serializes commands on a PubSub
                # (its own lock), and sending does not touch what readers parse.
                sub.ps.ping(str(seq).encode())
                next_ping = now + self._interval
            if self._clock() - self._polled < _CALLERS_ACTIVE:
                # Callers are polling, and each poll drains what has arrived: do not wake on
                # their data. Every wake takes the GIL from a spinning caller, and a thread
                # preempted while it holds the GIL stalls that caller for a time slice (the
                # busy reader's p99 went from 0.94 to 0.78 ms, medians of 5 runs). The timer
                # notices within 5 ms when they stop, and sends the pings on time.
                self._stop.wait(min(max(next_ping - self._clock(), 0.0), _CALLERS_CHECK))
                continue
            if not readable(sub.sock, max(next_ping - self._clock(), 0.0)):
                continue
            # Callers are polling: leave the data to them. Draining here while they spin would
            # hold the drain lock across every socket call, each of which hands the GIL to a
            # spinning thread for a whole switch interval (5 ms) with the callers locked out.
            if self._clock() - self._polled < _CALLERS_ACTIVE:
                self._stop.wait(_CALLERS_ACTIVE)
                continue
            self._drain_here(sub)

    def _drain_here(self, sub: Subscription, *, buffered: bool = False) -> None:
        with self._lock:
            if sub.error is not None:
                raise sub.error
            try:
                self._drain(sub, buffered=buffered)
            except Exception as exc:
                self._fail(sub, exc)
                raise

    def _drain(self, sub: Subscription, *, buffered: bool = False) -> int:
        """Read and dispatch every message there is (drain lock held: one drainer, in order)."""
        messages = sub.read(buffered=buffered)
        for msg in messages:
            self._dispatch(msg, sub.pings)
        return len(messages)

    def _check_pongs(self, sub: Subscription, now: float) -> None:
        try:
            oldest = sub.pings[0][1]
        except IndexError:  # every ping answered (a drainer may pop the last one meanwhile)
            return
        if now - oldest > max(1.0, 20 * self._interval):
            raise ConnectionError("no pong on the pub/sub connection")

    def _listen_alone(self, ps: Any) -> None:
        """Without a socket to wait on: read on this thread only, as a blocking get_message."""
        pings: deque[tuple[int, float]] = deque()
        seq = 0
        next_ping = self._clock()
        while not self._stop.is_set():
            now = self._clock()
            if now >= next_ping:
                if pings and now - pings[0][1] > max(1.0, 20 * self._interval):
                    raise ConnectionError("no pong on the pub/sub connection")
                seq += 1
                pings.append((seq, now))
                ps.ping(str(seq).encode())
                next_ping = now + self._interval
            msg = ps.get_message(timeout=max(next_ping - self._clock(), 0.0))
            if msg is not None:
                self._dispatch(msg, pings)

    def _dispatch(self, msg: dict[str, Any], pings: deque[tuple[int, float]]) -> None:
        kind = msg["type"]
        if kind == "pong":
            try:
                answered = int(msg["data"])
            except (TypeError, ValueError):
                return  # not one of our pings
            # Replies come in order: a ping older than this pong whose own pong we did not
            # see is proven too. Only drainers pop, one at a time (the drain lock).
            t = None
            while pings and pings[0][0] <= answered:
                s, sent = pings.popleft()
                if s == answered:
                    t = sent
            if t is not None:
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
            # surrogateescape: a payload the notice carries comes back byte for byte.
            status, _, rest = data.decode("utf-8", "surrogateescape").partition("\n")
            self._on_fill(status, rest)
