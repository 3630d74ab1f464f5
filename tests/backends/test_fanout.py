"""The cluster channel's bookkeeping (``Fanout``), driven with in-memory pub/sub stand-ins.

What these pin down is Fanout's own logic: trust needs a proof from *every* master and a
successful topology read, a change of masters resets L1 and waits for the new master's proof,
and a message forwarded by several masters is delivered once. The real cluster behaviour is
covered by ``tests/backends/test_cluster.py``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from freshlink.backends.channel import Fanout

Node = tuple[str, int]


class FakePubSub:
    """A subscribed connection to one node: answers pings in order, carries published messages."""

    def __init__(self, hub: Hub, node: Node) -> None:
        self.hub, self.node = hub, node
        self.inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.closed = False

    def subscribe(self, *channels: bytes) -> None:
        for ch in channels:
            self.inbox.put({"type": "subscribe", "channel": ch, "data": 1})
        self.hub.subscribed(self)

    def ping(self, token: bytes) -> None:
        if self.node not in self.hub.silent:
            self.inbox.put({"type": "pong", "data": token})

    def get_message(self, timeout: float = 0.0) -> dict[str, Any] | None:
        if self.closed:
            raise ConnectionError("closed")
        try:
            return self.inbox.get(timeout=min(timeout, 0.01))
        except queue.Empty:
            return None

    def close(self) -> None:
        self.closed = True
        self.hub.unsubscribed(self)


class Hub:
    """The cluster: a set of masters, and PUBLISH forwarded to every subscriber."""

    def __init__(self, masters: list[Node]) -> None:
        self.masters = masters
        self.lock = threading.Lock()
        self.subs: list[FakePubSub] = []
        self.silent: set[Node] = set()  # masters whose pongs do not come back

    def subscribed(self, ps: FakePubSub) -> None:
        with self.lock:
            self.subs.append(ps)

    def unsubscribed(self, ps: FakePubSub) -> None:
        with self.lock:
            if ps in self.subs:
                self.subs.remove(ps)

    def publish(self, names: Sequence[str], values: Sequence[int]) -> None:
        data = ("\n".join(names) + "\n\n" + ",".join(map(str, values))).encode()
        with self.lock:
            for ps in self.subs:
                ps.inbox.put({"type": "message", "channel": b"ns:inv", "data": data})


class Probe:
    """What Fanout reported."""

    def __init__(self) -> None:
        self.alive: list[float] = []
        self.resets = 0
        self.messages: list[tuple[tuple[str, ...], tuple[int, ...]]] = []

    def on_alive(self, t: float) -> None:
        self.alive.append(t)

    def on_reset(self) -> None:
        self.resets += 1

    def on_invalidate(self, names: Sequence[str], values: Sequence[int]) -> None:
        self.messages.append((tuple(names), tuple(values)))


def make(hub: Hub, probe: Probe, masters: Callable[[], list[Node]] | None = None) -> Fanout:
    fanout = Fanout(
        masters or (lambda: list(hub.masters)),
        lambda host, port: FakePubSub(hub, (host, port)),
        invalidations="ns:inv",
        fills="ns:fill",
        ping_interval=0.005,
        on_invalidate=probe.on_invalidate,
        on_fill=lambda status, rest: None,
        on_alive=probe.on_alive,
        on_reset=probe.on_reset,
        topology_interval=0.01,
    )
    fanout.start()
    return fanout


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


A, B, C = ("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3)


def test_alive_only_when_every_master_proves_delivery() -> None:
    hub, probe = Hub([A, B]), Probe()
    hub.silent.add(B)
    fanout = make(hub, probe)
    try:
        time.sleep(0.2)
        assert not fanout.alive.is_set()
        assert probe.alive == []
        hub.silent.clear()
        assert fanout.alive.wait(5)
        before = time.monotonic()
        count = len(probe.alive)
        wait_for(lambda: len(probe.alive) > count + 5)
        assert probe.alive[-1] <= time.monotonic()
        assert max(probe.alive) > before - 0.1, "proofs keep moving forward"
    finally:
        fanout.stop()


def test_trust_is_capped_at_the_last_topology_read() -> None:
    hub, probe = Hub([A]), Probe()
    reads: list[float] = []
    failing = threading.Event()

    def masters() -> list[Node]:
        if failing.is_set():
            raise ConnectionError("no node answers CLUSTER NODES")
        reads.append(time.monotonic())
        return [A]

    fanout = make(hub, probe, masters)
    try:
        assert fanout.alive.wait(5)
        failing.set()
        time.sleep(0.05)
        last_read = reads[-1]
        count = len(probe.alive)
        wait_for(lambda: len(probe.alive) > count + 10)  # pongs keep coming back
        assert max(probe.alive[count:]) <= last_read, "trust outran the topology reads"
    finally:
        fanout.stop()


def test_a_new_master_resets_and_must_prove_before_trust_returns() -> None:
    hub, probe = Hub([A, B]), Probe()
    fanout = make(hub, probe)
    try:
        assert fanout.alive.wait(5)
        resets = probe.resets
        hub.silent.add(C)
        hub.masters = [A, B, C]  # a failover or a new shard
        wait_for(lambda: probe.resets > resets)
        assert not fanout.alive.is_set()
        time.sleep(0.1)
        assert not fanout.alive.is_set(), "trusted before the new master proved anything"
        count = len(probe.alive)
        hub.silent.clear()
        assert fanout.alive.wait(5)
        assert len(probe.alive) > count
        hub.masters = [A, C]  # B failed over to C
        wait_for(lambda: all(ps.node != B for ps in hub.subs))
    finally:
        fanout.stop()
    assert hub.subs == [], "stop() closes every subscription"


def test_a_message_forwarded_by_every_master_is_delivered_once() -> None:
    hub, probe = Hub([A, B, C]), Probe()
    fanout = make(hub, probe)
    try:
        assert fanout.alive.wait(5)
        hub.publish(["ns:t:loans"], [5])
        hub.publish(["ns:t:loans"], [6])
        wait_for(lambda: len(probe.messages) >= 2)
        time.sleep(0.1)
        assert probe.messages == [(("ns:t:loans",), (5,)), (("ns:t:loans",), (6,))]
    finally:
        fanout.stop()
