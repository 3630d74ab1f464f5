"""A real local Redis Sentinel setup for tests: one master, its replicas and the Sentinels."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._setup import LocalSetup, alive, wait_until
from .resp import HOST, ReplyError, info, redis_command, redis_commands, role
from .server import RedisServer

__all__ = ["RedisSentinelSetup", "SentinelServer"]


def _pairs(flat: list[Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}


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


class RedisSentinelSetup(LocalSetup):
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
            wait_until(self._data_problem(master.port), timeout, "replication")
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
            wait_until(self.problem, timeout, "Redis Sentinel start")
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
                if not alive(n):
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
            if not alive(s):
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
        wait_until(self.problem, timeout, "Redis Sentinel health")

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

        wait_until(switched, timeout, "SENTINEL FAILOVER")
        self.wait_healthy(timeout)
        return old, self.master_port()

    def _wait_repaired(self, timeout: float) -> None:
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

        wait_until(check, timeout, "Redis Sentinel repair")

    def close(self) -> None:
        """Stop every process and remove its directory."""
        for n in self.nodes:
            n.close()
        self.data_nodes = []
        self.sentinels = []
