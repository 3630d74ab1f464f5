"""freshlink on a real local Redis Cluster (3 masters, 3 replicas) and behind real Sentinels.

The key layout (one slot per script, tags spread over nodes); failovers that lose acknowledged
increments must not bring an invalidated entry back; and the multi-process coherence test during
manual failovers. The conformance suite on both is in test_conformance.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from redis.crc import key_slot

from freshlink import Cache, Local
from freshlink.backends.cluster import RedisClusterBackend, parse_cluster_url
from freshlink.backends.sentinel import SentinelBackend, parse_sentinel_url
from freshlink.errors import ConfigurationError, InvalidationError
from freshlink.testing.cluster import (
    RedisClusterSetup,
    RedisSentinelSetup,
    ReplyError,
    redis_command,
    role,
)
from freshlink.testing.workloads import CoherenceRun, run_coherence


def _inner(cache: Cache) -> Any:
    """The backend under the circuit breaker's guard."""
    return getattr(cache.backend, "inner", cache.backend)


# ---------------------------------------------------------------------------- URLs


def test_cluster_url_parsing() -> None:
    parsed = parse_cluster_url(
        "rediss+cluster://u:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7001?socket_timeout=0.5"
    )
    assert parsed["nodes"] == [("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7001)]
    assert parsed["options"] == {
        "ssl": True,
        "username": "u",
        "password": "p@ss",
        "socket_timeout": 0.5,
    }


def test_sentinel_url_parsing() -> None:
    parsed = parse_sentinel_url("redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/mymaster/2")
    assert parsed["sentinels"] == [("127.0.0.1", 26379), ("127.0.0.1", 26380)]
    assert parsed["service"] == "mymaster"
    assert parsed["options"]["db"] == 2
    assert parse_sentinel_url("redis+sentinel://h:1/m?socket_timeout=2")["options"] == {
        "ssl": False,
        "socket_timeout": 2.0,
    }


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://", "an empty node address"),
        ("redis+cluster://h:1,", "an empty node address"),
        ("redis+cluster://:7000", "bad node"),
        ("redis+cluster://h:notaport", "bad node"),
        ("redis+cluster://h:70000", "bad node"),
        ("redis+cluster://h:1?db=3", "only database 0"),
        ("redis+cluster://h:1?socket_timeout=-1", "must be >= 0"),
        ("redis+cluster://h:1?color=blue", "unknown option 'color'"),
        ("redis+cluster://h:1?socket_timeout=soon", "is not float"),
        ("redis+sentinel://h:26379", "names no Sentinel service"),
        ("redis+sentinel://h:26379/mymaster/zero", "bad database number"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        Cache(url)


# ---------------------------------------------------------------------------- cluster layout


def _slot(key: str) -> int:
    return key_slot(key.encode())


@pytest.mark.cluster
def test_entry_generation_and_lease_share_a_slot_and_tags_spread(
    make_cluster_cache: Callable[..., Cache],
) -> None:
    cache = make_cluster_cache()
    backend = _inner(cache)
    assert isinstance(backend, RedisClusterBackend)
    entry = cache.keyspace.entry("loan:{1}\n*")  # braces in a key cannot move its slot
    own = cache.keyspace.names("loan:{1}\n*", ())[0]
    slots = {_slot(backend._key(entry)), _slot(backend._key(own)), _slot(backend.lease_key(entry))}
    assert len(slots) == 1
    tag_slots = {_slot(backend._key(cache.keyspace.tag(f"user:{i}"))) for i in range(50)}
    owners = {
        backend.client.get_node_from_key(backend._key(cache.keyspace.tag(f"user:{i}"))).name
        for i in range(50)
    }
    assert len(tag_slots) == 50
    assert len(owners) == 3, "tags should live on every master"


@pytest.mark.cluster
def test_tags_on_other_nodes_invalidate_and_one_round_per_read(
    make_cluster_cache: Callable[..., Cache],
) -> None:
    cache = make_cluster_cache()
    loads: list[int] = []

    @cache.cached(ttl=60, key="loan:{i}", tags=["user:{u}", "loans", "branch:{b}"])
    def loan(i: int, u: int, b: int) -> dict[str, int]:
        loads.append(i)
        return {"i": i, "n": len(loads)}

    assert loan(1, 2, 3) == loan(1, 2, 3) == {"i": 1, "n": 1}
    for tag in ("user:2", "loans", "branch:3"):
        cache.invalidate(tag)
        assert loan(1, 2, 3)["n"] == len(loads)
    assert len(loads) == 4


@pytest.mark.cluster
def test_a_generation_from_another_node_identity_is_unknown(
    make_cluster_cache: Callable[..., Cache],
) -> None:
    """A generation last written under another node identity (what a promoted replica or a
    restarted node holds) is unknown: the entry stamped with its value is not served."""
    cache = make_cluster_cache()
    calls: list[int] = []

    @cache.cached(ttl=60, key="loan:{i}", tags=["user:{i}"])
    def loan(i: int) -> int:
        calls.append(i)
        return len(calls)

    assert loan(7) == loan(7) == 1
    backend = _inner(cache)
    gen_key = backend._key(cache.keyspace.tag("user:7"))
    client = backend.client
    value, _, identity = client.get(gen_key).partition(b":")
    assert len(identity) == 24  # run id and replication id, 12 hex digits of each
    # Same value, other identity: the entry's stamps still match the value.
    client.set(gen_key, value + b":0123456789ab0123456789ab", keepttl=True)
    assert backend.get_entry(cache.keyspace.entry(loan.key(7))) is not None
    assert loan(7) == 2, "an entry stamped under another node identity must not be served"
    assert loan(7) == 2


@pytest.mark.cluster
async def test_async_client_passed_in(cluster_url: str) -> None:
    from redis.asyncio.cluster import RedisCluster

    nodes = parse_cluster_url(cluster_url)["nodes"]
    client = RedisCluster(host=nodes[0][0], port=nodes[0][1])
    cache = Cache(client, namespace="passed")
    try:
        assert isinstance(_inner(cache), RedisClusterBackend)
        calls: list[int] = []

        @cache.cached(ttl=60, tags=["t:{i}"])
        async def f(i: int) -> int:
            calls.append(i)
            return i * 2

        assert await f(2) == await f(2) == 4
        await cache.ainvalidate("t:2")
        assert await f(2) == 4
        assert calls == [2, 2]
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------- failover


def _coherent(run: CoherenceRun) -> None:
    assert run.acked_writes > 30, "too few writes to mean anything"
    # A few hundred reads even on a busy 2-core host (352 were seen with two CI runs at once).
    assert len(run.reads) > 150
    assert run.violations == [], "\n".join(map(str, run.violations[:10]))


def _once_at(at: float, action: Callable[[], object]) -> Callable[[float], None]:
    done: list[bool] = []

    def disrupt(elapsed: float) -> None:
        if elapsed >= at and not done:
            done.append(True)
            action()

    return disrupt


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.parametrize("mode", ["strict", "bounded"])
def test_cluster_no_stale_reads(cluster_url: str, mode: str) -> None:
    _coherent(run_coherence(cluster_url, mode, duration=1.5))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["strict", "bounded"])
@pytest.mark.parametrize(
    "setup",
    [
        pytest.param("cluster", marks=pytest.mark.cluster),
        pytest.param("sentinel", marks=pytest.mark.sentinel),
    ],
)
def test_no_stale_reads_during_failover(
    request: pytest.FixtureRequest, setup: str, mode: str
) -> None:
    """CLUSTER FAILOVER on a replica, or SENTINEL FAILOVER, half a second into the run.

    Sentinel is left to demote the old master in its own time (10 s or more): until then it
    is still a writable master that processes with open connections can reach."""
    url = request.getfixturevalue(f"{setup}_url")
    local = request.getfixturevalue(f"redis_{setup}")
    failover = (
        local.failover if setup == "cluster" else partial(local.failover, demote_old_master=False)
    )
    run = run_coherence(url, mode, duration=4.0, disrupt=_once_at(0.5, failover))
    _coherent(run)


@pytest.mark.cluster
@pytest.mark.slow
def test_cluster_failover_that_loses_an_invalidation_resurrects_nothing(
    redis_cluster: RedisClusterSetup, make_cluster_cache: Callable[..., Cache]
) -> None:
    """The tag's master acknowledges an invalidation its replica never gets, dies, and the
    replica takes over with the old generation: the entry (on another, healthy node) stamped
    with that generation must not be served."""
    cache = make_cluster_cache()
    backend = _inner(cache)
    assert isinstance(backend, RedisClusterBackend)
    # The node identity alone: with replica confirmation (WAIT) on, the invalidation below
    # would not be acknowledged at all (see the next test).
    backend.wait_replicas = 0
    client = backend.client
    entry_node = client.get_node_from_key(backend._key(cache.keyspace.entry("loan:1"))).port
    tag = next(
        f"user:{i}"
        for i in range(100)
        if client.get_node_from_key(backend._key(cache.keyspace.tag(f"user:{i}"))).port
        != entry_node
    )
    gen_key = backend._key(cache.keyspace.tag(tag))
    master = client.get_node_from_key(gen_key).port
    (replica,) = redis_cluster.replicas_of(master)
    calls: list[int] = []

    @cache.cached(ttl=60, key="loan:1", tags=[tag])
    def loan() -> int:
        calls.append(1)
        return len(calls)

    assert loan() == loan() == 1
    redis_command(master, "WAIT", 1, 2000)  # the replica has the generation the entry holds
    old = client.get(gen_key)
    replica.pause()
    # Cut the replication link while the replica cannot reconnect: it will miss what follows.
    redis_command(master, "CLIENT", "KILL", "TYPE", "replica")
    try:
        cache.invalidate(tag)  # acknowledged by the master alone
        assert client.get(gen_key) != old
    finally:
        redis_cluster.node(master).kill()
        replica.resume()
    redis_command(replica.port, "CLUSTER", "FAILOVER", "TAKEOVER")
    deadline = time.monotonic() + 15
    while role(replica.port)[0] != "master":
        assert time.monotonic() < deadline, "the replica was not promoted"
        time.sleep(0.05)
    # The promoted replica really lost the increment: the generation is back to the old value.
    while True:
        try:
            assert redis_command(replica.port, "GET", gen_key) == old.decode()
            break
        except ReplyError:  # still loading / not yet serving the slot
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert loan() == 2, "the invalidated entry came back after the failover"


@pytest.mark.cluster
@pytest.mark.parametrize("sync", [True, False], ids=["sync", "async"])
async def test_cluster_invalidation_a_replica_did_not_get_is_not_acknowledged(
    redis_cluster: RedisClusterSetup, make_cluster_cache: Callable[..., Cache], sync: bool
) -> None:
    """Each master that ran an increment must have it on a replica (WAIT) before the
    invalidation is acknowledged: a master cut off from its replica cannot acknowledge one."""
    cache = make_cluster_cache()
    backend = _inner(cache)
    tag = "user:9"
    master = backend.client.get_node_from_key(backend._key(cache.keyspace.tag(tag))).port
    (replica,) = redis_cluster.replicas_of(master)

    async def invalidate() -> None:
        if sync:
            cache.invalidate(tag)
        else:
            await cache.ainvalidate(tag)

    await invalidate()  # replicated: acknowledged
    replica.pause()
    redis_command(master, "CLIENT", "KILL", "TYPE", "replica")
    try:
        with pytest.raises(InvalidationError, match="0 of 1 replica"):
            await invalidate()
    finally:
        replica.resume()
    deadline = time.monotonic() + 10
    while True:  # the replica reconnects: acknowledged again
        try:
            await invalidate()
            break
        except InvalidationError:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


@pytest.mark.sentinel
@pytest.mark.slow
def test_sentinel_failover_that_loses_an_invalidation_resurrects_nothing(
    redis_sentinel: RedisSentinelSetup, make_sentinel_cache: Callable[..., Cache]
) -> None:
    """As above behind Sentinel: the entry and its generations fail over together, to a
    replica that missed the acknowledged invalidation; the new master's identity differs."""
    cache = make_sentinel_cache()
    assert isinstance(_inner(cache), SentinelBackend)
    # The node identity alone: with replica confirmation (WAIT) on, the invalidation below
    # would not be acknowledged at all (see the next test).
    _inner(cache).wait_replicas = 0
    calls: list[int] = []

    @cache.cached(ttl=60, key="loan:1", tags=["user:1"])
    def loan() -> int:
        calls.append(1)
        return len(calls)

    assert loan() == loan() == 1
    master = redis_sentinel.master()
    redis_command(master.port, "WAIT", 1, 2000)
    (replica,) = redis_sentinel.replicas()
    replica.pause()
    redis_command(master.port, "CLIENT", "KILL", "TYPE", "replica")
    try:
        cache.invalidate("user:1")
    finally:
        master.kill()
        replica.resume()
    deadline = time.monotonic() + 20
    while redis_sentinel.master_port() != replica.port:
        assert time.monotonic() < deadline, "Sentinel did not fail over"
        time.sleep(0.1)
    while role(replica.port)[0] != "master":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for _ in range(100):  # the first calls may still meet the dead master's closed sockets
        try:
            got = loan()
            break
        except Exception:
            time.sleep(0.05)
    assert got == 2, "the invalidated entry came back after the failover"


#: The complete ACL freshlink needs on a cluster (docs/scaling.md shows the same rules).
CLUSTER_ACL = (
    "reset on >CHANGE-ME ~{*}lending:* &lending:* +evalsha +script|load +info +ping +subscribe "
    "+get +set +del +hset +hmget +pexpire +persist +pttl +publish +wait +command +cluster|slots "
    "+cluster|nodes"
)


@pytest.mark.cluster
def test_minimal_cluster_acl_is_enough(redis_cluster: RedisClusterSetup, cluster_url: str) -> None:
    """Fills, hits, leases, write-through, invalidation and the bounded channel all run as a
    user with only these rules, and no node's ACL LOG records a denial."""
    ports = redis_cluster.ports
    for port in ports:
        redis_command(port, "ACL", "LOG", "RESET")
        redis_command(port, "ACL", "SETUSER", "freshlink", *CLUSTER_ACL.split())
    hosts = cluster_url.partition("://")[2]
    url = f"redis+cluster://freshlink:CHANGE-ME@{hosts}"
    reader = Cache(url, namespace="lending", local=Local(mode="bounded", max_staleness=0.1))
    writer = Cache(url, namespace="lending")
    try:
        assert _inner(reader).ensure_listener().alive.wait(5)
        loads: list[int] = []

        @reader.cached(ttl=60, key="loan:{i}", tags=["user:{i}", "loans"])
        def loan(i: int) -> int:
            loads.append(i)
            return len(loads)

        @reader.updates(loan)
        def renew(i: int) -> int:
            return 100 + i

        assert loan(1) == loan(1) == 1
        writer.invalidate("loans")
        time.sleep(0.15)
        assert loan(1) == 2
        renew(1)
        time.sleep(0.15)
        assert loan(1) == 101
        writer.set("greeting", "hello", tags=["greetings"])
        assert writer.get("greeting") == "hello"
        writer.invalidate("greetings")
        assert writer.get("greeting") is None
        assert not any(redis_command(port, "ACL", "LOG") for port in ports)
    finally:
        reader.close()
        writer.close()
        for port in ports:
            redis_command(port, "ACL", "DELUSER", "freshlink")


@pytest.mark.cluster
def test_backend_write_through_with_no_generation_in_the_entry_slot(
    make_cluster_cache: Callable[..., Cache],
) -> None:
    """The backend contract allows an entry stamped with tags alone: every step then runs on
    the tags' slots and the entry's slot only stores (and publishes nothing empty)."""
    from freshlink.backends.base import Entry

    cache = make_cluster_cache(local=Local(mode="bounded", max_staleness=0.1))
    backend = _inner(cache)
    assert backend.ensure_listener().alive.wait(5)
    key, names = cache.keyspace.entry("solo"), (cache.keyspace.tag("a"), cache.keyspace.tag("b"))
    expected = backend.current(names)
    entry = Entry(b"1", names, tuple(g + 1 for g in expected), time.time(), 60.0)
    assert backend.write_through(key, entry, expected, 60.0)
    assert backend.read(key, names).entry == entry
    backend.invalidate(names[1:])
    assert backend.read(key, names).entry is None
    time.sleep(0.1)
    assert backend.listener.alive.is_set(), "the channel must survive every message"


@pytest.mark.sentinel
@pytest.mark.slow
def test_sentinel_old_master_left_writable_loses_no_acknowledged_invalidation(
    redis_sentinel: RedisSentinelSetup, make_sentinel_cache: Callable[..., Cache]
) -> None:
    """Right after SENTINEL FAILOVER the old master still takes writes. A writer whose
    connections point at it must not get an acknowledgement that the new master never sees;
    a bounded reader's channel must move to the new master."""
    data = {"v": 1}

    def reader(**kw: Any) -> tuple[Cache, Callable[[], int]]:
        cache = make_sentinel_cache(**kw)

        @cache.cached(ttl=600, key="loan", tags=["loan"])
        def loan() -> int:
            return data["v"]

        return cache, loan

    writer = make_sentinel_cache()
    writer.invalidate("warm-up")  # the writer's pool now holds a connection to the old master
    bounded, bounded_loan = reader(local=Local(mode="bounded", max_staleness=0.1))
    listener = _inner(bounded).ensure_listener()
    assert listener.alive.wait(5)
    assert bounded_loan() == 1
    old = redis_sentinel.master_port()
    redis_command(redis_sentinel.sentinels[0].port, "SENTINEL", "FAILOVER", "mymaster")
    deadline = time.monotonic() + 15
    while (new := redis_sentinel.master_port()) == old or role(new)[0] != "master":
        assert time.monotonic() < deadline, "Sentinel did not fail over"
        time.sleep(0.02)
    assert role(old)[0] == "master", "the old master should still be writable here"
    data["v"] = 2
    try:
        writer.invalidate("loan")
        acknowledged = True
    except InvalidationError:
        acknowledged = False  # not confirmed by a replica: the app knows to retry
    if acknowledged:
        _, fresh_loan = reader()
        assert fresh_loan() == 2, "a read after an acknowledged invalidation saw the old value"
    deadline = time.monotonic() + 5
    while bounded_loan() != 2 and acknowledged:
        assert time.monotonic() < deadline, "the bounded reader kept the old value"
        time.sleep(0.05)
    assert _inner(bounded).listener.alive.wait(5)
    # The channel follows the master the sentinels name: an invalidation made there (through
    # a new connection) reaches the bounded reader within its bound.
    assert _inner(bounded)._master == ("127.0.0.1", new)


@pytest.mark.cluster
def test_write_through_interleavings_never_leave_an_older_value_valid(
    make_cluster_cache: Callable[..., Cache],
) -> None:
    """Every interleaving of two write-throughs, and of a write-through with an invalidation,
    whose generations span three slots. Each writer reads the generations (E), writes its data
    (D), then runs the write-through's two rounds (R1: the tags' slots, R2: the entry's slot).
    After every step no value older than an acknowledged write may be valid."""
    from itertools import permutations

    from freshlink.backends.base import Entry
    from freshlink.backends.cluster import _place

    cache = make_cluster_cache()
    backend = _inner(cache)
    steps = {"wt": ["E", "D", "R1", "R2"], "inv": ["D", "I"]}
    cases = 0
    for other in ("wt", "inv"):
        plan = {0: steps["wt"], 1: steps[other]}
        for order in sorted(set(permutations([0] * 4 + [1] * len(plan[1])))):
            cases += 1
            ns = f"il{cases}"
            key = ns + ":e:k"
            names = [ns + ":k:k"]
            used = {_place(backend.namespace, key)[1]}
            i = 0
            while len(names) < 3:  # two tags, each on a slot of its own
                tag = f"{ns}:t:tag{i}"
                i += 1
                if _place(backend.namespace, tag)[1] not in used:
                    used.add(_place(backend.namespace, tag)[1])
                    names.append(tag)
            state: dict[int, dict[str, Any]] = {0: {}, 1: {}}
            at = {0: 0, 1: 0}
            version = 0
            acked: list[int] = []
            for who in order:
                step = plan[who][at[who]]
                at[who] += 1
                st = state[who]
                if step == "E":
                    st["expected"] = backend.current(names)
                elif step == "D":
                    version += 1
                    st["data"] = version
                elif step == "R1":
                    stamps = tuple(g + 1 for g in st["expected"])
                    entry = Entry(str(st["data"]).encode(), tuple(names), stamps, time.time(), 60)
                    st["ops"] = backend._write_through(key, entry, st["expected"], 60.0)
                    st["calls"] = backend._round(next(st["ops"]))
                elif step == "R2":
                    with pytest.raises(StopIteration):
                        st["ops"].send(backend._round(st["ops"].send(st["calls"])))
                    acked.append(st["data"])
                else:  # "I": a plain invalidation of one tag
                    backend.invalidate(names[1:2])
                    acked.append(st["data"])
                found = backend.read(key, names).entry
                if found is not None and acked:
                    assert int(found.payload) >= max(acked), (other, order, found, acked)
    assert cases == 70 + 15


@pytest.mark.sentinel
async def test_sentinel_managed_clients_passed_in(redis_sentinel: RedisSentinelSetup) -> None:
    """A client from Sentinel.master_for (sync or asyncio) gets the Sentinel backend: its
    master watch, replica confirmation and channel."""
    from redis.asyncio.sentinel import Sentinel as AsyncSentinel
    from redis.sentinel import Sentinel

    redis_sentinel.reset()
    addresses = redis_sentinel.sentinel_addresses
    client = Sentinel(addresses).master_for("mymaster", socket_timeout=0.5)
    aclient = AsyncSentinel(addresses).master_for("mymaster", socket_timeout=0.5)
    caches = [
        Cache(client, namespace="given", local=Local(mode="bounded", max_staleness=0.1)),
        Cache(aclient, namespace="given"),
    ]
    try:
        for cache in caches:
            assert isinstance(_inner(cache), SentinelBackend)
            assert _inner(cache).wait_replicas == "auto"
        bounded, strict = caches
        assert _inner(bounded).ensure_listener().alive.wait(5)
        data = {"v": 1}

        @bounded.cached(ttl=60, tags=["t"])
        def read() -> int:
            return data["v"]

        @strict.cached(ttl=60, tags=["t"])
        async def aread() -> int:
            return data["v"]

        assert read() == await aread() == 1
        data["v"] = 2
        await strict.ainvalidate("t")
        assert await aread() == 2
        await asyncio.sleep(0.15)
        assert read() == 2
    finally:
        caches[0].close()
        await caches[1].aclose()
        client.close()
        await aclient.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
        "rediss+cluster://10.0.0.1:7000",
        "redis+sentinel://10.0.0.1:26379/mymaster",
    ],
)
def test_framework_settings_take_cluster_and_sentinel_urls(url: str) -> None:
    from freshlink.contrib import settings_problems

    assert settings_problems({"URL": url}) == []
