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
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from .listener import Listener

__all__ = ["Channel", "Fanout", "Listener"]

logger = logging.getLogger("freshlink")


class Channel(Protocol):
    """What a backend drives of its channel (a :class:`Listener` or a :class:`Fanout`)."""

    #: Set while subscribed; cleared when the connection is lost.
    connected: threading.Event
    #: Set once a pong has proved delivery; cleared when the connection is lost.
    alive: threading.Event

    def start(self) -> None:
        """Start listening (idempotent)."""

    def stop(self) -> None:
        """Stop listening and close the connections."""

    def reconnect(self) -> None:
        """Drop the connections now: they are made again, and reported lost meanwhile."""

    def poll(self) -> bool:
        """Drain in the calling thread what has arrived; False if another thread is at it."""


class Fanout:
    """One :class:`Listener` per cluster master, reported as one channel.

    A cluster forwards a ``PUBLISH`` to every node, but only the connection to the node that
    published a message orders it before that node's later ``PONG``s. So there is one
    subscription per master, and delivery up to ``t`` is proved only when *every* master has
    answered a ping sent at ``t`` or later. The set of masters is re-read every
    ``topology_interval`` (and at once when a node's connection drops); when it changes, the
    new masters are subscribed to and L1 is reset, and trust is also capped at the time of the
    last successful topology read, so a master the process does not know of yet cannot keep
    its messages from us for longer than that.
    """

    def __init__(
        self,
        masters: Callable[[], list[tuple[str, int]]],
        make_pubsub: Callable[[str, int], Any],
        *,
        invalidations: str,
        fills: str,
        ping_interval: float,
        on_invalidate: Callable[[Sequence[str], Sequence[int]], None],
        on_fill: Callable[[str, str], None],
        on_alive: Callable[[float], None],
        on_reset: Callable[[], None],
        topology_interval: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._masters = masters
        self._make_pubsub = make_pubsub
        self._channels = (invalidations, fills)
        self._interval = ping_interval
        self._deliver = on_invalidate
        self._on_fill = on_fill
        self._on_alive = on_alive
        self._on_reset = on_reset
        self._topology_interval = topology_interval
        # Every message arrives once per master (the cluster forwards PUBLISH to every node):
        # a late copy of an older message would look to L1 like a generation going down.
        self._seen: OrderedDict[tuple[tuple[str, ...], tuple[int, ...]], None] = OrderedDict()
        self._clock = clock
        self._lock = threading.Lock()
        self._nodes: dict[tuple[str, int], Listener] = {}
        self._proved: dict[tuple[str, int], float] = {}
        self._confirmed = -math.inf  # start of the last topology read that succeeded
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = threading.Event()
        self.alive = threading.Event()

    def start(self) -> None:
        """Start the topology thread, which starts the per-master listeners (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="freshlink-cluster-channel", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        """Stop every listener and the topology thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            listeners = list(self._nodes.values())
            self._nodes.clear()
        for listener in listeners:
            listener.stop()

    def poll(self) -> bool:
        """Drain each master's connection in the calling thread (see :meth:`Listener.poll`)."""
        try:
            # No lock (poll never waits): a copy of the values, made while the GIL is held.
            listeners = tuple(self._nodes.values())
        except RuntimeError:  # the topology thread changed the masters meanwhile: next time
            return False
        done = True
        for listener in listeners:
            done &= listener.poll()
        return done

    def reconnect(self) -> None:
        """Drop every master's connection now (each reconnects, reporting it lost meanwhile)."""
        with self._lock:
            listeners = list(self._nodes.values())
        for listener in listeners:
            listener.reconnect()

    def _run(self) -> None:
        failing = False
        while not self._stop.is_set():
            started = self._clock()
            try:
                masters = set(self._masters())
            except Exception as exc:
                # Once per outage at WARNING (this runs every topology_interval); L1 trust
                # runs out on its own meanwhile, since _confirmed stops moving.
                log = logger.debug if failing else logger.warning
                log("freshlink: cannot read the cluster's masters (%s)", exc)
                failing = True
            else:
                failing = False
                try:
                    self._reconcile(masters)
                except Exception:  # never let the thread die: trust would freeze
                    logger.exception("freshlink: updating the cluster's subscriptions failed")
                    self._lost()
                else:
                    with self._lock:
                        self._confirmed = started
                    self._report()
            self._wake.wait(self._topology_interval)
            self._wake.clear()

    def _reconcile(self, masters: set[tuple[str, int]]) -> None:
        with self._lock:
            if self._stop.is_set():
                return  # stop() ran while the masters were being read
            gone = [node for node in self._nodes if node not in masters]
            stopped = [self._nodes.pop(node) for node in gone]
            for node in gone:
                self._proved.pop(node, None)
            started = []
            for node in [n for n in masters if n not in self._nodes]:
                listener = self._nodes[node] = self._listener(node)
                started.append(listener)
        for listener in stopped:
            listener.stop()
        if stopped or started:
            self._lost()
        for listener in started:
            listener.start()

    def _listener(self, node: tuple[str, int]) -> Listener:
        def alive(t: float) -> None:
            with self._lock:
                self._proved[node] = t
            self._report()

        def lost() -> None:
            with self._lock:
                self._proved.pop(node, None)
            self._lost()
            self._wake.set()  # the node may have failed over: read the masters again now

        return Listener(
            lambda: self._make_pubsub(*node),
            invalidations=self._channels[0],
            fills=self._channels[1],
            ping_interval=self._interval,
            on_invalidate=self._on_invalidate,
            on_fill=self._on_fill,
            on_alive=alive,
            on_subscribed=lost,
            on_lost=lost,
            clock=self._clock,
        )

    def _on_invalidate(self, names: Sequence[str], values: Sequence[int]) -> None:
        """Deliver each distinct message once, however many masters forward it."""
        key = (tuple(names), tuple(values))
        # Check and deliver under one lock: the listeners are threads, and a message let go
        # between the check and the delivery could be overtaken by a later one that another
        # master forwarded, which L1 would take for the newer state.
        with self._lock:
            if key in self._seen:
                return
            self._seen[key] = None
            if len(self._seen) > 4096:
                self._seen.popitem(last=False)
            self._deliver(names, values)

    def _lost(self) -> None:
        self.alive.clear()
        self.connected.clear()
        self._on_reset()

    def _report(self) -> None:
        with self._lock:
            nodes = list(self._nodes)
            if not nodes or any(node not in self._proved for node in nodes):
                return
            if self._confirmed == -math.inf:
                return  # no topology read has succeeded yet
            t = min(min(self._proved[node] for node in nodes), self._confirmed)
            listeners = list(self._nodes.values())
        if all(listener.connected.is_set() for listener in listeners):
            self.connected.set()
        self.alive.set()
        self._on_alive(t)
