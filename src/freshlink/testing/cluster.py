"""Real local Redis Cluster and Redis Sentinel setups for tests (loopback, free ports, temp dirs).

Both are built from :class:`~freshlink.testing.server.RedisServer` processes and talk to the
nodes with a tiny RESP client of their own, so this module does not need redis-py.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

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

HOST = "127.0.0.1"
_SLOTS = 16384


class ReplyError(Exception):
    """An error reply (``-ERR ...``) from a Redis node."""


def _encode(args: tuple[str | int, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read(f: Any) -> Any:
    line: bytes = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by the server")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return ReplyError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data: bytes = f.read(n + 2)
        if len(data) != n + 2:
            raise ConnectionError("connection closed by the server")
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read(f) for _ in range(n)]
    raise ConnectionError(f"unexpected reply {line!r}")


def redis_commands(port: int, *commands: tuple[str | int, ...], timeout: float = 2.0) -> list[Any]:
    """Send commands on one new connection to 127.0.0.1:port; replies (errors as ReplyError)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(b"".join(_encode(c) for c in commands))
        with s.makefile("rb") as f:
            return [_read(f) for _ in commands]


def redis_command(port: int, *args: str | int, timeout: float = 2.0) -> Any:
    """Send one command to 127.0.0.1:port and return its reply; raise ReplyError on an error."""
    reply = redis_commands(port, args, timeout=timeout)[0]
    if isinstance(reply, ReplyError):
        raise reply
    return reply


def info(port: int, section: str = "replication") -> dict[str, str]:
    """One section of ``INFO`` as a dict of strings."""
    out: dict[str, str] = {}
    for line in str(redis_command(port, "INFO", section)).splitlines():
        if ":" in line and not line.startswith("#"):
            name, _, value = line.partition(":")
            out[name] = value.strip()
    return out


def role(port: int) -> tuple[str, int | None, bool]:
    """``(role, master port or None, link up)`` from ``ROLE`` (a master's link counts as up)."""
    reply = redis_command(port, "ROLE")
    if reply[0] == "slave":
        return "slave", int(reply[2]), reply[3] == "connected"
    return str(reply[0]), None, True


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}


def _alive(server: RedisServer) -> bool:
    return server.proc is not None and server.proc.poll() is None


def _wait(check: Callable[[], str | None], timeout: float, what: str) -> None:
    """Poll ``check`` (None means done, a string says what is still wrong) until done."""
    deadline = time.monotonic() + timeout
    problem: str | None = "not checked yet"
    while time.monotonic() < deadline:
        try:
            problem = check()
        except (OSError, ReplyError, ValueError, IndexError, KeyError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what}: still not ready after {timeout:g}s ({problem})")


def _unique_ports(n: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def _revive(server: RedisServer) -> bool:
    """Start a dead node again, or SIGCONT a paused one; True if something was done."""
    if not _alive(server):
        server.stop()
        server.start()
        return True
    if not server.ping():
        server.resume()
        return True
    return False


class _Setup:
    """What both local setups share: reset to health, and use as a context manager."""

    nodes: Any

    def start(self, timeout: float = 30.0) -> Self:
        """Start every process and wait until the setup is healthy."""
        raise NotImplementedError

    def repair(self, timeout: float = 20.0) -> bool:
        """Restart dead (or resume paused) processes; True if healthy after."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop every process and remove its directory."""
        raise NotImplementedError

    def reset(self, timeout: float = 30.0) -> None:
        """Make the setup healthy: repair it, or throw it away and create a fresh one."""
        if self.nodes and self.repair(15.0):
            return
        self.close()
        self.start(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class RedisClusterSetup(_Setup):
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
            _wait(self.problem, timeout, "Redis Cluster start")
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
            if not _alive(n):
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
        _wait(self.problem, timeout, "Redis Cluster health")

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

        _wait(swapped, timeout, "CLUSTER FAILOVER")
        return master_port, replica.port

    def repair(self, timeout: float = 20.0) -> bool:
        """Restart dead (or resume paused) nodes and wait for health; True if healthy after."""
        if self.healthy():
            return True
        try:
            for n in self.nodes:
                _revive(n)
            self.wait_healthy(timeout)
        except (OSError, RuntimeError, TimeoutError):
            return False
        return True

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


class SentinelServer(RedisServer):
    """One ``redis-server <conf> --sentinel`` with its own writable config file in its dir."""

    def __init__(
        self,
        master_port: int,
        *,
        service_name: str = "mymaster",
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
        port: int | None = None,
    ) -> None:
        super().__init__(port)
        self.conf: Path = self.dir / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\n"
            f"bind {HOST}\n"
            f'dir "{self.dir}"\n'
            "protected-mode no\n"
            "daemonize no\n"
            'logfile "sentinel.log"\n'
            f"sentinel monitor {service_name} {HOST} {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {service_name} {down_after_ms}\n"
            f"sentinel failover-timeout {service_name} {failover_timeout_ms}\n"
            f"sentinel parallel-syncs {service_name} 1\n"
        )

    def args(self) -> list[str]:
        """The command line (Sentinel rewrites the config file, so restarts keep its state)."""
        return [self.exe, str(self.conf), "--sentinel"]


class RedisSentinelSetup(_Setup):
    """One master, ``replicas`` replicas and ``sentinels`` Sentinels monitoring them."""

    def __init__(
        self,
        *,
        service_name: str = "mymaster",
        replicas: int = 1,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 5000,
    ) -> None:
        self.service_name = service_name
        self.n_replicas = replicas
        self.n_sentinels = sentinels
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.data_nodes: list[RedisServer] = []
        self.sentinels: list[SentinelServer] = []

    @property
    def url(self) -> str:
        """``redis+sentinel://127.0.0.1:s1,127.0.0.1:s2,127.0.0.1:s3/<service_name>``."""
        hosts = ",".join(f"{HOST}:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service_name}"

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``[(host, port), ...]`` of the Sentinels, as ``redis.sentinel.Sentinel`` takes them."""
        return [(HOST, s.port) for s in self.sentinels]

    @property
    def nodes(self) -> list[RedisServer]:
        """Every process: the data nodes, then the Sentinels."""
        return [*self.data_nodes, *self.sentinels]

    def node(self, port: int) -> RedisServer:
        """The data node listening on ``port``."""
        for n in self.data_nodes:
            if n.port == port:
                return n
        raise KeyError(port)

    def _new_data_node(self) -> RedisServer:
        return RedisServer(repl_diskless_sync_delay=0).start()

    def start(self, timeout: float = 30.0) -> RedisSentinelSetup:
        """Start master, replicas and Sentinels; wait until the Sentinels know everything."""
        try:
            master = self._new_data_node()
            self.data_nodes.append(master)
            for _ in range(self.n_replicas):
                replica = self._new_data_node()
                self.data_nodes.append(replica)
                redis_command(replica.port, "REPLICAOF", HOST, master.port)
            # replicas first: a Sentinel finds them in the master's INFO, which it polls every 10 s
            _wait(self._data_problem(master.port), timeout, "replication")
            for _ in range(self.n_sentinels):
                s = SentinelServer(
                    master.port,
                    service_name=self.service_name,
                    quorum=self.quorum,
                    down_after_ms=self.down_after_ms,
                    failover_timeout_ms=self.failover_timeout_ms,
                )
                self.sentinels.append(s)
                s.start()
            _wait(self.problem, timeout, "Redis Sentinel start")
        except BaseException:
            self.close()
            raise
        return self

    def _ask_sentinels(self) -> list[int]:
        """The master port each reachable Sentinel reports."""
        ports = []
        for s in self.sentinels:
            try:
                addr = redis_command(
                    s.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service_name
                )
            except (OSError, ReplyError):
                continue
            if addr:
                ports.append(int(addr[1]))
        return ports

    def master_port(self) -> int:
        """The master's port according to the Sentinels (``GET-MASTER-ADDR-BY-NAME``)."""
        ports = self._ask_sentinels()
        if not ports:
            raise ConnectionError("no Sentinel answers")
        return ports[0]

    def master(self) -> RedisServer:
        """The data node the Sentinels name as master."""
        return self.node(self.master_port())

    def replicas(self) -> list[RedisServer]:
        """The data nodes that are not the master named by the Sentinels."""
        port = self.master_port()
        return [n for n in self.data_nodes if n.port != port]

    def _data_problem(self, master: int) -> Callable[[], str | None]:
        def check() -> str | None:
            for n in self.data_nodes:
                if not _alive(n):
                    return f"data node {n.port} is not running"
            if role(master)[0] != "master":
                return f"node {master} is not a master"
            connected = int(info(master).get("connected_slaves", "0"))
            if connected < self.n_replicas:
                return f"master {master}: connected_slaves:{connected}"
            for n in self.data_nodes:
                if n.port == master:
                    continue
                r = role(n.port)
                if r[:2] != ("slave", master):
                    return f"node {n.port} should replicate {master}, ROLE says {r}"
                link = info(n.port).get("master_link_status")
                if link != "up":
                    return f"replica {n.port}: master_link_status:{link}"
            return None

        return check

    def problem(self) -> str | None:
        """None if the setup is healthy, else a description of the first problem found."""
        if not self.sentinels:
            return "not started"
        for s in self.sentinels:
            if not _alive(s):
                return f"sentinel {s.port} is not running"
        ports = set(self._ask_sentinels())
        if len(ports) != 1:
            return f"the Sentinels name masters {sorted(ports)}"
        master = ports.pop()
        if master not in {n.port for n in self.data_nodes}:
            return f"the Sentinels name {master}, which is not a data node"
        problem = self._data_problem(master)()
        if problem:
            return problem
        replicas = {n.port for n in self.data_nodes if n.port != master}
        for s in self.sentinels:
            state = _pairs(redis_command(s.port, "SENTINEL", "MASTER", self.service_name))
            if state["flags"] != "master":
                return f"sentinel {s.port}: master flags {state['flags']}"
            others = int(state["num-other-sentinels"])
            if others != self.n_sentinels - 1:
                return f"sentinel {s.port} knows {others} other Sentinels"
            seen = {}
            for r in redis_command(s.port, "SENTINEL", "REPLICAS", self.service_name):
                d = _pairs(r)
                seen[int(d["port"])] = d
            for port in replicas:
                if port not in seen:
                    return f"sentinel {s.port} does not know replica {port}"
                d = seen[port]
                # (not master-link-status: right after a failover a Sentinel reports the old
                # master's link as "err" until its next 10-second INFO poll of that node)
                if d["flags"] != "slave":
                    return f"sentinel {s.port}: replica {port} flags {d['flags']}"
        return None

    def healthy(self) -> bool:
        """True if all processes are up, replication is in sync and the Sentinels agree."""
        try:
            return self.problem() is None
        except (OSError, ReplyError, ValueError, IndexError, KeyError):
            return False

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Wait until :meth:`healthy`; raise TimeoutError saying what is wrong otherwise."""
        _wait(self.problem, timeout, "Redis Sentinel health")

    def flushall(self) -> None:
        """``FLUSHALL`` on the current master, and wait until the replicas have it too."""
        replies = redis_commands(self.master_port(), ("FLUSHALL",), ("WAIT", self.n_replicas, 2000))
        if isinstance(replies[0], ReplyError):
            raise replies[0]

    def failover(self, timeout: float = 30.0, *, demote_old_master: bool = True) -> tuple[int, int]:
        """``SENTINEL FAILOVER``; wait until everything agrees; returns (old, new) master port.

        Sentinel turns the old master into a replica (``+convert-to-slave``) only once its
        failover timeout has passed *and* its next 10-second INFO poll of that node comes
        round, 10-15 s after the switch. With ``demote_old_master`` (the default) this does
        it as soon as the Sentinels name the new master, the way Sentinel does it (one
        transaction: ``REPLICAOF``, ``CLIENT KILL TYPE normal``, ``CLIENT KILL TYPE pubsub``);
        pass False to wait for Sentinel itself. Either way every client connection of both
        nodes, subscribers included, is closed by the server.
        """
        self.wait_healthy(timeout)
        old = self.master_port()
        redis_command(self.sentinels[0].port, "SENTINEL", "FAILOVER", self.service_name)
        demoted = False

        def switched() -> str | None:
            nonlocal demoted
            ports = set(self._ask_sentinels())
            if len(ports) != 1 or old in ports:
                return f"the Sentinels name masters {sorted(ports)}"
            new = next(iter(ports))
            if role(new)[0] != "master":
                return f"node {new} is not a master yet"
            r = role(old)
            if demote_old_master and not demoted and r[0] == "master":
                redis_commands(
                    old,
                    ("MULTI",),
                    ("REPLICAOF", HOST, new),
                    ("CLIENT", "KILL", "TYPE", "normal"),
                    ("CLIENT", "KILL", "TYPE", "pubsub"),
                    ("EXEC",),
                )
                demoted = True
                return "old master demoted just now"
            if r[:2] != ("slave", new) or info(old).get("master_link_status") != "up":
                return f"old master {old}: ROLE {r}"
            return None

        _wait(switched, timeout, "SENTINEL FAILOVER")
        self.wait_healthy(timeout)
        return old, self.master_port()

    def repair(self, timeout: float = 20.0) -> bool:
        """Restart dead (or resume paused) processes, re-point replicas; True if healthy after."""
        if self.healthy():
            return True

        def check() -> str | None:
            # A restarted data node comes back as an empty master, a resumed one as the master
            # it was: once the Sentinels agree on a master, make every other node its replica
            # (Sentinel would too, but only 10-15 s later).
            ports = set(self._ask_sentinels())
            if len(ports) == 1:
                master = ports.pop()
                for n in self.data_nodes:
                    if n.port != master and role(n.port)[0] == "master":
                        redis_command(n.port, "REPLICAOF", HOST, master)
            return self.problem()

        try:
            for n in self.nodes:
                _revive(n)
            _wait(check, timeout, "Redis Sentinel repair")
        except (OSError, RuntimeError, TimeoutError):
            return False
        return True

    def close(self) -> None:
        """Stop every process and remove its directory."""
        for n in self.nodes:
            n.close()
        self.data_nodes = []
        self.sentinels = []
