"""A real local Redis Cluster for tests (loopback, free ports, temp dirs).

Built from :class:`~freshlink.testing.server.RedisServer` processes, it talks to the nodes with
the tiny RESP client of :mod:`freshlink.testing.resp`, so it does not need redis-py. The
Sentinel setup (:mod:`freshlink.testing.sentinel`) and the RESP helpers are importable from
here too, where they were first documented.
"""

from __future__ import annotations

import shutil
import subprocess

from ._setup import LocalSetup, alive, wait_until
from .resp import HOST, ReplyError, info, redis_command, redis_commands, role
from .sentinel import RedisSentinelSetup, SentinelServer
from .server import RedisServer, free_port

__all__ = [
    "RedisClusterSetup",
    "RedisSentinelSetup",
    "ReplyError",
    "SentinelServer",
    "info",
    "redis_command",
    "redis_commands",
    "role",
]

_SLOTS = 16384


def _unique_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class RedisClusterSetup(LocalSetup):
    """A local Redis Cluster: ``masters`` masters with ``replicas_per_master`` replicas each."""

    def __init__(
        self, masters: int = 3, replicas_per_master: int = 1, *, node_timeout_ms: int = 2000
    ) -> None:
        if masters < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 masters")
        self.n_masters = masters
        self.replicas_per_master = replicas_per_master
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:p1,127.0.0.1:p2,...`` (every node)."""
        return "redis+cluster://" + ",".join(f"{HOST}:{n.port}" for n in self.nodes)

    @property
    def ports(self) -> list[int]:
        """The client ports of all nodes (in start order)."""
        return [n.port for n in self.nodes]

    def node(self, port: int) -> RedisServer:
        """The node listening on ``port``."""
        for n in self.nodes:
            if n.port == port:
                return n
        raise KeyError(port)

    def start(self, timeout: float = 30.0) -> RedisClusterSetup:
        """Start the nodes, join them with ``redis-cli --cluster create``, wait until healthy."""
        if shutil.which("redis-cli") is None:
            raise RuntimeError("redis-cli is not installed (apt-get install redis-tools)")
        total = self.n_masters * (1 + self.replicas_per_master)
        ports = _unique_ports(2 * total)  # client port + cluster bus port (port+10000 may not fit)
        try:
            for port, bus_port in zip(ports[:total], ports[total:], strict=True):
                node = RedisServer(
                    port,
                    cluster_enabled="yes",
                    cluster_config_file="nodes.conf",
                    cluster_node_timeout=self.node_timeout_ms,
                    cluster_port=bus_port,
                    repl_diskless_sync_delay=0,
                    # CLUSTER SLOTS hides a replica until its replication offset is not 0,
                    # which on an idle master takes one replication PING (10 s by default)
                    repl_ping_replica_period=1,
                )
                self.nodes.append(node)
                node.start()
            subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(f"{HOST}:{p}" for p in self.ports),
                    "--cluster-replicas",
                    str(self.replicas_per_master),
                    "--cluster-yes",
                ],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=True,
            )
            wait_until(self.problem, timeout, "Redis Cluster start")
        except BaseException:
            self.close()
            raise
        return self

    def _roles(self) -> dict[int, tuple[str, int | None, bool]]:
        out = {}
        for n in self.nodes:
            try:
                out[n.port] = role(n.port)
            except (OSError, ReplyError):
                continue
        return out

    def masters(self) -> list[RedisServer]:
        """The nodes that are masters right now (asked with ``ROLE``)."""
        roles = self._roles()
        return [n for n in self.nodes if n.port in roles and roles[n.port][0] == "master"]

    def replicas(self) -> list[RedisServer]:
        """The nodes that are replicas right now (asked with ``ROLE``)."""
        roles = self._roles()
        return [n for n in self.nodes if n.port in roles and roles[n.port][0] == "slave"]

    def replicas_of(self, master_port: int) -> list[RedisServer]:
        """The replicas that replicate from ``master_port`` right now."""
        roles = self._roles()
        return [n for n in self.nodes if roles.get(n.port, ("", None, False))[1] == master_port]

    @staticmethod
    def _slot_view(port: int) -> frozenset[tuple[int, int, int, frozenset[int]]]:
        """``CLUSTER SLOTS`` of one node: (first slot, last slot, master port, replica ports)."""
        return frozenset(
            (int(r[0]), int(r[1]), int(r[2][1]), frozenset(int(x[1]) for x in r[3:]))
            for r in redis_command(port, "CLUSTER", "SLOTS")
        )

    def problem(self) -> str | None:
        """None if the cluster is healthy, else a description of the first problem found."""
        if not self.nodes:
            return "not started"
        total = len(self.nodes)
        views = set()
        for n in self.nodes:
            if not alive(n):
                return f"node {n.port} is not running"
            cinfo = _cluster_info(n.port)
            if cinfo.get("cluster_state") != "ok":
                return f"node {n.port}: cluster_state:{cinfo.get('cluster_state')}"
            if cinfo.get("cluster_slots_ok") != str(_SLOTS):
                return f"node {n.port}: cluster_slots_ok:{cinfo.get('cluster_slots_ok')}"
            if cinfo.get("cluster_known_nodes") != str(total):
                return f"node {n.port}: cluster_known_nodes:{cinfo.get('cluster_known_nodes')}"
            views.add(self._slot_view(n.port))
        if len(views) != 1:
            return "the nodes do not agree on the slot map yet"
        view = views.pop()
        if sum(end - first + 1 for first, end, _, _ in view) != _SLOTS:
            return "not all slots are assigned"
        shards = {m: reps for _, _, m, reps in view}
        if len(shards) != self.n_masters:
            return f"{len(shards)} masters own slots, expected {self.n_masters}"
        for master, reps in shards.items():
            if len(reps) < self.replicas_per_master:
                return f"master {master} has replicas {sorted(reps)}"
            r = role(master)
            if r[0] != "master":
                return f"node {master} owns slots but ROLE says {r[0]}"
            connected = int(info(master).get("connected_slaves", "0"))
            if connected < self.replicas_per_master:
                return f"master {master}: connected_slaves:{connected}"
            for rep in reps:
                rr = role(rep)
                if rr[:2] != ("slave", master):
                    return f"node {rep} should replicate {master}, ROLE says {rr}"
                link = info(rep).get("master_link_status")
                if link != "up":
                    return f"replica {rep}: master_link_status:{link}"
        return None

    def healthy(self) -> bool:
        """True if every node is up, the cluster is ok everywhere and every replica is in sync."""
        try:
            return self.problem() is None
        except (OSError, ReplyError, ValueError, IndexError):
            return False

    def wait_healthy(self, timeout: float = 15.0) -> None:
        """Wait until :meth:`healthy`; raise TimeoutError saying what is wrong otherwise."""
        wait_until(self.problem, timeout, "Redis Cluster health")

    def flushall(self) -> None:
        """``FLUSHALL`` on every master, and wait until its replicas have it too."""
        for m in self.masters():
            replies = redis_commands(
                m.port, ("FLUSHALL",), ("WAIT", self.replicas_per_master, 2000)
            )
            if isinstance(replies[0], ReplyError):
                raise replies[0]

    def failover(self, master_port: int | None = None, timeout: float = 20.0) -> tuple[int, int]:
        """``CLUSTER FAILOVER`` on a replica of the master; returns (old, new) master port."""
        self.wait_healthy(timeout)
        if master_port is None:
            master_port = self.masters()[0].port
        elif role(master_port)[0] != "master":
            raise ValueError(f"node {master_port} is not a master")
        replica = next(
            (
                r
                for r in self.replicas_of(master_port)
                if info(r.port)["master_link_status"] == "up"
            ),
            None,
        )
        if replica is None:
            raise RuntimeError(f"master {master_port} has no replica in sync")
        redis_command(replica.port, "CLUSTER", "FAILOVER")

        def swapped() -> str | None:
            if role(replica.port)[0] != "master":
                return f"node {replica.port} is not master yet"
            if role(master_port)[:2] != ("slave", replica.port):
                return f"node {master_port} does not replicate {replica.port} yet"
            return self.problem()

        wait_until(swapped, timeout, "CLUSTER FAILOVER")
        return master_port, replica.port

    def _wait_repaired(self, timeout: float) -> None:
        self.wait_healthy(timeout)

    def close(self) -> None:
        """Stop every node and remove its directory."""
        for n in self.nodes:
            n.close()
        self.nodes = []


def _cluster_info(port: int) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in str(redis_command(port, "CLUSTER", "INFO")).splitlines():
        name, _, value = line.partition(":")
        out[name] = value.strip()
    return out
