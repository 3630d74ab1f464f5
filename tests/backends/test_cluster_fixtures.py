"""The local Redis Cluster / Sentinel fixtures themselves, checked with plain redis-py."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from redis.cluster import RedisCluster
from redis.exceptions import MovedError
from redis.sentinel import Sentinel

from freshlink.testing.cluster import RedisClusterSetup, RedisSentinelSetup, role


@contextmanager
def node_client(port: int, **kw: Any) -> Iterator[redis.Redis]:
    client = redis.Redis(port=port, decode_responses=True, **kw)
    try:
        yield client
    finally:
        client.close()


@contextmanager
def cluster_client(setup: RedisClusterSetup) -> Iterator[RedisCluster]:
    client = RedisCluster(host="127.0.0.1", port=setup.ports[0], decode_responses=True)
    try:
        yield client
    finally:
        client.close()


class RawClient:
    """A bare socket to one node: no client library that would silently reconnect."""

    def __init__(self, port: int, resp: int = 2) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=3)
        if resp == 3:
            assert self.call("HELLO", "3").startswith(b"%")

    def call(self, *args: str) -> bytes:
        """Send one command; the raw reply bytes (b"" once the server closed the connection)."""
        try:
            self.sock.sendall(" ".join(args).encode() + b"\r\n")
            return self.sock.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            return b""

    def was_closed(self) -> bool:
        return self.call("PING") == b""

    def close(self) -> None:
        self.sock.close()


class RawSubscriber(RawClient):
    """A bare socket subscribed to ``fixture-channel`` (RESP2 or RESP3)."""

    def __init__(self, port: int, resp: int = 2) -> None:
        super().__init__(port, resp)
        self.sock.sendall(b"SUBSCRIBE fixture-channel\r\n")
        assert self._receive(b"fixture-channel")

    def _receive(self, needle: bytes) -> bool:
        buf = b""
        deadline = time.monotonic() + 3
        while needle not in buf and time.monotonic() < deadline:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return False
            if not data:
                return False  # EOF: the server closed the connection
            buf += data
        return needle in buf

    def heard(self, publisher_port: int, text: str) -> bool:
        """Whether this subscriber receives what is published on ``publisher_port`` now."""
        with node_client(publisher_port) as c:
            c.publish("fixture-channel", text)
        return self._receive(text.encode())


# --- Redis Cluster --------------------------------------------------------------------------


@pytest.mark.cluster
def test_cluster_spreads_keys_over_all_masters(
    redis_cluster: RedisClusterSetup, cluster_url: str
) -> None:
    assert cluster_url.startswith("redis+cluster://")
    assert {
        int(a.rsplit(":", 1)[1]) for a in cluster_url.removeprefix("redis+cluster://").split(",")
    } == set(redis_cluster.ports)
    masters, replicas = redis_cluster.masters(), redis_cluster.replicas()
    assert len(masters) == 3
    assert len(replicas) == 3
    assert {role(r.port)[1] for r in replicas} == {m.port for m in masters}
    assert redis_cluster.healthy()

    with cluster_client(redis_cluster) as rc:
        keys = [f"key:{i}" for i in range(60)]
        for k in keys:
            rc.set(k, k.upper())
        assert len({rc.keyslot(k) for k in keys}) > 50
        assert [rc.get(k) for k in keys] == [k.upper() for k in keys]
        owners = {rc.get_node_from_key(k).port for k in keys}
    assert owners == {m.port for m in masters}
    counts = {}
    for m in masters:
        with node_client(m.port) as c:
            counts[m.port] = c.dbsize()
            assert c.wait(1, 2000) == 1
    assert all(n > 0 for n in counts.values())
    assert sum(counts.values()) == len(keys)
    # every replica holds its master's keys and refuses writes
    for r in replicas:
        with node_client(r.port) as c:
            assert c.dbsize() == counts[role(r.port)[1]]  # type: ignore[index]
            with pytest.raises(MovedError):
                c.set(keys[0], "x")

    redis_cluster.flushall()
    for n in redis_cluster.nodes:
        with node_client(n.port) as c:
            assert c.dbsize() == 0


@pytest.mark.cluster
def test_cluster_failover_keeps_data_and_swaps_roles(
    redis_cluster: RedisClusterSetup, cluster_url: str
) -> None:
    with cluster_client(redis_cluster) as rc:
        rc.set("survivor", "before")
        owner = rc.get_node_from_key("survivor").port
    replica = redis_cluster.replicas_of(owner)[0].port
    # raw subscribers (RESP2 and RESP3) and a plain connection on the master about to step down
    subs = [RawSubscriber(owner, resp) for resp in (2, 3)]
    plain = RawClient(owner)
    try:
        started = time.monotonic()
        old, new = redis_cluster.failover(owner)
        took = time.monotonic() - started

        assert (old, new) == (owner, replica)
        assert took < 10
        assert role(new)[0] == "master"
        assert role(old) == ("slave", new, True)
        assert redis_cluster.healthy()
        assert new in {m.port for m in redis_cluster.masters()}
        assert old not in {m.port for m in redis_cluster.masters()}
        # CLUSTER FAILOVER closes no client connection: the plain one now gets MOVED for the key
        assert plain.call("SET", "survivor", "x").startswith(b"-MOVED ")
        assert not plain.was_closed()
        # ... and the subscribers on the old master are still there and hear PUBLISH
        # on itself and (over the cluster bus) on the new master
        for sub in subs:
            assert sub.heard(old, "published on the old master")
            assert sub.heard(new, "published on the new master")
    finally:
        plain.close()
        for sub in subs:
            sub.close()

    with cluster_client(redis_cluster) as fresh:
        assert fresh.get_node_from_key("survivor").port == new
        assert fresh.get("survivor") == "before"
        fresh.set("survivor", "after")
        assert fresh.get("survivor") == "after"


@pytest.mark.cluster
def test_cluster_reset_repairs_a_killed_master(
    redis_cluster: RedisClusterSetup, cluster_url: str
) -> None:
    victim = redis_cluster.masters()[1]
    victim.kill()
    assert not redis_cluster.healthy()
    redis_cluster.reset()
    assert redis_cluster.healthy()
    assert victim.ping()
    assert redis_cluster.url == cluster_url  # repaired in place, not recreated
    assert len(redis_cluster.masters()) == 3
    with cluster_client(redis_cluster) as rc:
        for i in range(20):
            rc.set(f"k{i}", i)
        assert rc.get("k7") == "7"


# --- Redis Sentinel -------------------------------------------------------------------------


@contextmanager
def sentinel_client(setup: RedisSentinelSetup) -> Iterator[Sentinel]:
    sentinel = Sentinel(setup.sentinel_addresses, socket_timeout=2, decode_responses=True)
    try:
        yield sentinel
    finally:
        for s in sentinel.sentinels:
            s.close()


@pytest.mark.sentinel
def test_sentinel_master_for_writes_and_replica_follows(
    redis_sentinel: RedisSentinelSetup, sentinel_url: str
) -> None:
    hosts = ",".join(f"127.0.0.1:{s.port}" for s in redis_sentinel.sentinels)
    assert sentinel_url == f"redis+sentinel://{hosts}/mymaster"
    assert redis_sentinel.healthy()
    master_port = redis_sentinel.master_port()
    (replica,) = redis_sentinel.replicas()
    assert role(master_port)[0] == "master"
    assert role(replica.port) == ("slave", master_port, True)

    with sentinel_client(redis_sentinel) as sentinel:
        assert sentinel.discover_master("mymaster") == ("127.0.0.1", master_port)
        assert sentinel.discover_slaves("mymaster") == [("127.0.0.1", replica.port)]
        master = sentinel.master_for("mymaster")
        master.set("greeting", "hello")
        assert master.wait(1, 2000) == 1
        assert sentinel.slave_for("mymaster").get("greeting") == "hello"
        master.close()

    redis_sentinel.flushall()
    for n in redis_sentinel.data_nodes:
        with node_client(n.port) as c:
            assert c.dbsize() == 0


@pytest.mark.sentinel
def test_sentinel_failover_swaps_roles_and_master_for_follows(
    redis_sentinel: RedisSentinelSetup, sentinel_url: str
) -> None:
    with sentinel_client(redis_sentinel) as sentinel:
        master = sentinel.master_for("mymaster")
        master.set("survivor", "before")
        assert master.wait(1, 2000) == 1
        old_port = redis_sentinel.master_port()
        (replica,) = redis_sentinel.replicas()
        subs = [RawSubscriber(port, 2) for port in (old_port, replica.port)]
        try:
            started = time.monotonic()
            old, new = redis_sentinel.failover()
            took = time.monotonic() - started

            assert (old, new) == (old_port, replica.port)
            assert took < 10
            assert sentinel.discover_master("mymaster") == ("127.0.0.1", new)
            assert role(new)[0] == "master"
            assert role(old) == ("slave", new, True)
            assert redis_sentinel.healthy()
            # the same master_for client follows (its connection was killed; it reconnects)
            assert master.get("survivor") == "before"
            master.set("survivor", "after")
            assert master.connection_pool.get_master_address() == ("127.0.0.1", new)
            with node_client(new) as c:
                assert c.get("survivor") == "after"
            # like Sentinel, failover() closed the subscribers on both nodes
            assert not subs[0].heard(old, "published on the old master")
            assert not subs[1].heard(new, "published on the new master")
        finally:
            for sub in subs:
                sub.close()
            master.close()

    # a new subscriber on the old master (now a replica) hears what the new master publishes:
    # outside cluster mode PUBLISH is replicated to replicas
    sub = RawSubscriber(old)
    try:
        assert sub.heard(new, "published on the new master")
    finally:
        sub.close()


@pytest.mark.sentinel
def test_sentinel_itself_demotes_old_master_killing_normal_clients_only(
    redis_sentinel: RedisSentinelSetup, sentinel_url: str
) -> None:
    """Without help Sentinel converts the old master 10-15 s later (one INFO poll period)."""
    old_port = redis_sentinel.master_port()
    (replica,) = redis_sentinel.replicas()
    on_old, on_new = (
        [RawSubscriber(port, 2), RawSubscriber(port, 3), RawClient(port)]
        for port in (old_port, replica.port)
    )
    try:
        old, new = redis_sentinel.failover(demote_old_master=False)
        assert (old, new) == (old_port, replica.port)
        assert role(old) == ("slave", new, True)
        # Sentinel's REPLICAOF transactions end with CLIENT KILL TYPE normal and TYPE pubsub
        # on both nodes: plain clients and subscribers (RESP2 and RESP3) are all closed
        for client in on_old + on_new:
            assert client.was_closed()
    finally:
        for client in on_old + on_new:
            client.close()


@pytest.mark.sentinel
def test_sentinel_reset_repairs_after_master_killed(
    redis_sentinel: RedisSentinelSetup, sentinel_url: str
) -> None:
    old = redis_sentinel.master()
    (replica,) = redis_sentinel.replicas()
    old.kill()
    deadline = time.monotonic() + 20
    while redis_sentinel.master_port() == old.port:  # Sentinel fails over on its own
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert redis_sentinel.master_port() == replica.port
    assert not redis_sentinel.healthy()
    redis_sentinel.reset()
    assert redis_sentinel.healthy()
    assert redis_sentinel.url == sentinel_url  # repaired in place, not recreated
    assert role(old.port) == ("slave", replica.port, True)
