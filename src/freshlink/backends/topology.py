"""Reading a Redis Cluster's topology: its masters, and the replicas each could fail over to.

``CLUSTER NODES`` is read in two places: by the channel's topology thread (the masters to
subscribe to, every ``topology_interval``) and, when that thread is not running, before an
invalidation that must know which masters have a replica to wait for (``wait_replicas="auto"``).
Both feed :class:`Replicas`.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from ..errors import BackendError

__all__ = ["Replicas", "masters_in", "replicas_in"]

logger = logging.getLogger("freshlink")

#: Seconds a topology read tells which masters have replicas, when the channel's topology
#: thread (which reads it every topology_interval) is not running.
REPLICAS_EVERY = 1.0

#: A node as CLUSTER NODES lists it: (id, address, flags, master id, has slots).
Row = tuple[str, str, set[str], str, bool]


def _rows(table: Any) -> list[Row]:
    """The nodes of a CLUSTER NODES reply (raw or parsed by redis-py)."""
    if isinstance(table, bytes | str):
        text = table.decode() if isinstance(table, bytes) else table
        rows = []
        for line in text.splitlines():
            f = line.split()
            if len(f) >= 8:
                rows.append((f[0], f[1].split("@")[0], set(f[2].split(",")), f[3], len(f) > 8))
        return rows
    return [
        (
            str(info.get("node_id", "")),
            addr,
            set(info["flags"].split(",")),
            str(info.get("master_id", "-")),
            bool(info.get("slots")),
        )
        for addr, info in table.items()
    ]


def _address(addr: str, asked_host: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    return host or asked_host, int(port)


def masters_in(table: Any, asked_host: str) -> list[tuple[str, int]]:
    """Masters with slots and no failure flag, from CLUSTER NODES (raw or parsed by redis-py)."""
    masters = []
    for _id, addr, marks, _master, has_slots in _rows(table):
        # A master that owns slots is kept even when flagged as failing: "fail?" is one node's
        # opinion, and a master cut off from the bus may still serve clients and publish. Its
        # subscription then just stops proving delivery until a failover moves its slots.
        # A master without slots (one importing slots while the cluster grows) is kept too,
        # unless it has failed.
        if "master" not in marks or marks & {"noaddr", "handshake"}:
            continue
        if has_slots or "fail" not in marks:
            masters.append(_address(addr, asked_host))
    return sorted(masters)


def replicas_in(table: Any, asked_host: str) -> dict[tuple[str, int], int]:
    """Per master address, its replicas that could be promoted (not failed), from CLUSTER NODES."""
    rows = _rows(table)
    by_id = {
        node_id: _address(addr, asked_host)
        for node_id, addr, marks, _master, _slots in rows
        if "master" in marks and not marks & {"noaddr", "handshake"}
    }
    counts = dict.fromkeys(by_id.values(), 0)
    for _id, _addr, marks, master, _slots in rows:
        if "slave" in marks and not marks & {"fail", "noaddr", "handshake"} and master in by_id:
            counts[by_id[master]] += 1
    return counts


class Replicas:
    """Per master address, its replicas that could be promoted, from the last topology read."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._read_at = -math.inf
        self._alone: set[tuple[str, int]] = set()

    def of(self, node: Any) -> int:
        """Replicas of a master (a redis-py node) per the last read (unknown: assume one)."""
        return self._counts.get((node.host, int(node.port)), 1)

    def stale(self) -> bool:
        """True when the last read is too old to tell which masters have replicas."""
        return time.monotonic() - self._read_at > REPLICAS_EVERY

    def learn(self, table: Any, asked_host: str, started: float) -> list[tuple[str, int]]:
        """Record each master's replicas from CLUSTER NODES (log masters without); return the
        masters with slots."""
        self._counts = replicas_in(table, asked_host)
        self._read_at = started
        alone = {node for node, n in self._counts.items() if n == 0}
        for node in sorted(alone - self._alone):
            logger.warning(
                "freshlink: cluster master %s:%s has no replica: its invalidations are "
                "acknowledged without WAIT (no replica could be promoted having missed them)",
                *node,
                extra={"freshlink_event": "master_without_replica"},
            )
        self._alone = alone
        return masters_in(table, asked_host)

    def unknown(self, started: float) -> None:
        """A read failed: until the next, unknown masters are assumed to have a replica."""
        self._read_at = started

    def read(self, client: Any) -> list[tuple[str, int]]:
        """Read CLUSTER NODES from the nodes a sync client knows, in turn; learn from the first
        that answers and return the masters with slots."""
        started = time.monotonic()
        last: Exception | None = None
        for node in client.get_nodes():
            try:
                table = client.get_redis_connection(node).execute_command("CLUSTER NODES")
            except Exception as exc:  # that node is down: ask the next
                last = exc
                continue
            return self.learn(table, node.host, started)
        raise BackendError(f"redis cluster: no node answered CLUSTER NODES ({last})")

    def refresh(self, client: Any) -> None:
        """:meth:`read`, failures included (they leave every master assumed to have one)."""
        started = time.monotonic()
        try:
            self.read(client)
        except BackendError:
            self.unknown(started)

    async def arefresh(self, client: Any) -> None:
        """Async :meth:`refresh`, through an asyncio cluster client (one random node)."""
        started = time.monotonic()
        try:
            node = client.get_random_node()
            table = await client.execute_command("CLUSTER NODES", target_nodes=node)
        except Exception:
            self.unknown(started)
        else:
            self.learn(table, node.host, started)
