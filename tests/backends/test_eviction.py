"""Redis under ``maxmemory``: any key (entry, generation, lease) may vanish at any moment.

A generation that is evicted is re-created from a random value, so a larger value is not always
a newer one. These tests drive the cases that once let a bounded L1 keep serving an invalidated
value until its TTL, then run reader and writer processes on a real ``redis-server`` with a tiny
``maxmemory`` under every eviction policy, and finally check that with ``noeviction`` and a full
server an invalidation raises instead of being acknowledged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from freshlink import Cache, InvalidationError, Local
from freshlink.testing import RedisServer
from freshlink.testing.cluster import RedisClusterSetup, redis_command
from freshlink.testing.workloads import run_coherence

pytestmark = pytest.mark.redis

# Small enough that the filler below evicts within milliseconds, with room for the clients'
# own memory: 6 processes, each opening warm_connections (8) per client at 15-40 kB each.
MAXMEMORY = "4mb"


@pytest.fixture(scope="module")
def small_server() -> Iterator[RedisServer]:
    """A redis-server of this module's own, with a tiny maxmemory (the policy set per test)."""
    with RedisServer(maxmemory=MAXMEMORY) as server:
        yield server


def use_policy(server: RedisServer, policy: str) -> redis.Redis:
    client = redis.Redis(port=server.port)
    client.config_set("maxmemory-policy", policy)
    client.flushall()
    return client


def memory_pressure(client: redis.Redis, policy: str) -> Callable[[float], None]:
    """A ``disrupt`` callback: about 200 kB of other keys every 10 ms (2 kB each).

    Under ``volatile-*`` only keys with a TTL are evicted, so the filler's keys get one too
    (freshlink's own keys always have one unless an entry is stored with ``ttl=None``).
    """
    count = {"n": 0}
    ex = 60 if policy.startswith("volatile") else None

    def fill(_elapsed: float) -> None:
        pipe = client.pipeline(transaction=False)
        for _ in range(100):
            count["n"] += 1
            pipe.set(f"other-app:{count['n']}", os.urandom(2000), ex=ex)
        pipe.execute(raise_on_error=False)  # noeviction: OOM errors are the point

    return fill


class Item:
    """One cached function over a dict "database", as a reader process would have it."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self.db = {"v": 1}

        @cache.cached(ttl=300, key="item:{i}", tags=["item:{i}"])
        def get(i: int) -> int:
            return self.db["v"]

        @cache.cached(ttl=300, key="other:{i}", tags=["item:{i}"])
        def get_other(i: int) -> int:
            return self.db["v"]

        self.get = get
        self.get_other = get_other


def settle() -> None:
    time.sleep(0.15)  # longer than the channel needs (the bound below is 0.1 s)


def test_an_evicted_generation_recreated_lower_cannot_hide_an_invalidation(
    redis_url: str, caches: list[Cache]
) -> None:
    # The generation of tag item:1 is evicted and re-created three times, each time at a value
    # chosen here (what Redis's random re-creation may pick). Once L1 had seen the value go
    # down, it ignored every later message below the old value, including the invalidation that
    # ended this process's copy: the copy was served until its TTL.
    reader_cache = Cache(redis_url, namespace="ev", local=Local(max_staleness=0.1))
    writer = Cache(redis_url, namespace="ev", local=None)
    caches += [reader_cache, writer]
    assert reader_cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    reader = Item(reader_cache)
    admin = redis.Redis.from_url(redis_url)
    tag = "ev:t:item:1"

    assert reader.get(1) == 1
    first = int(admin.get(tag) or 0)
    admin.set(tag, first - 10_000)  # evicted, re-created lower; the reader sees it go down
    assert reader.get_other(1) == 1
    admin.set(tag, first + 10_000)  # evicted, re-created higher
    assert reader.get(1) == 1  # refilled, stamped first + 10_000
    assert reader.get(1) == 1  # and served from L1
    admin.set(tag, first - 50_000)  # evicted again, re-created below the first value
    reader.db["v"] = 2
    writer.invalidate("item:1")  # announces first - 49_999
    settle()
    assert reader.get(1) == 2
    admin.close()


def test_a_late_reply_from_before_an_eviction_cannot_revive_an_old_generation(
    redis_url: str, caches: list[Cache]
) -> None:
    # A reply read before the generation was evicted, re-created lower and bumped, and learned
    # after that bump's message, carries a *higher* value than the message: taking the higher
    # value for the newer one made entries stamped with it valid again.
    cache = Cache(redis_url, namespace="ev2", local=Local(max_staleness=0.1))
    caches.append(cache)
    assert cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    near = cache.near
    assert near is not None
    mark = near.mark()  # a read is sent ...
    near.heard(["g"], [11])  # ... the generation is evicted, re-created, bumped: 11 ...
    assert near.learn_since(["g"], [500], mark)  # ... and the reply (500) arrives late
    assert near.known.get("g") == 11
    mark = near.mark()
    assert near.learn_since(["g"], [12], mark)  # a reply sent after the message is learned
    assert near.known["g"] == 12


def test_own_write_is_read_even_if_an_older_message_arrives_after_it(
    redis_url: str, caches: list[Cache]
) -> None:
    # Another process's bump (published before ours) reaches our channel after our own
    # invalidation returned. With generations re-created by eviction its value may be higher
    # than ours: it must not make our pre-write copy current again.
    cache = Cache(redis_url, namespace="ev3", local=Local(max_staleness=0.1))
    caches.append(cache)
    near = cache.near
    assert near is not None
    mark = near.mark()
    near.learn_own(["g"], [100], mark)
    assert near.known["g"] == 100
    near.heard(["g"], [900])  # older than ours, although higher
    assert "g" not in near.known
    near.heard(["g"], [100])  # ours: the name is current again
    assert near.known["g"] == 100
    near.heard(["g"], [101])
    assert near.known["g"] == 101


@pytest.mark.slow
@pytest.mark.parametrize(
    ("policy", "mode", "is_async"),
    [
        ("allkeys-lru", "bounded", False),
        ("allkeys-random", "bounded", False),
        ("allkeys-lfu", "bounded", False),
        ("volatile-lru", "bounded", False),
        ("volatile-random", "bounded", True),
        ("allkeys-lru", "bounded", True),
        ("allkeys-random", "strict", False),
        ("volatile-ttl", "strict", True),
    ],
)
def test_no_stale_reads_under_eviction(
    small_server: RedisServer, policy: str, mode: str, is_async: bool
) -> None:
    client = use_policy(small_server, policy)
    try:
        run = run_coherence(
            small_server.url,
            mode,
            items=50,
            duration=2.5,
            max_staleness=0.1,
            is_async=is_async,
            disrupt=memory_pressure(client, policy),
        )
        evicted = int(client.info("stats")["evicted_keys"])
    finally:
        client.close()
    assert evicted > 1000, "the server was never under memory pressure"
    assert run.acked_writes > 100, "too few writes to mean anything"
    violations = run.violations
    assert violations == [], "\n".join(map(str, violations[:10]))
    assert run.stale_after_writers_stopped == []


def test_a_full_noeviction_server_refuses_the_invalidation_loudly(
    small_server: RedisServer, caches: list[Cache]
) -> None:
    client = use_policy(small_server, "noeviction")
    try:
        cache = Cache(small_server.url, namespace="full", local=Local(max_staleness=0.1))
        caches.append(cache)
        item = Item(cache)
        assert item.get(1) == 1
        memory_pressure(client, "noeviction")(0.0)  # some other app's data...
        # ...and a limit far below what is used: whatever client buffers do meanwhile, the
        # server stays full (filling up to the limit left it hovering around it on a busy host).
        client.config_set("maxmemory", 1)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.set("probe", "x")
        item.db["v"] = 2
        with pytest.raises(InvalidationError):
            cache.invalidate("item:1")
        # Not acknowledged, and the writer's own L1 was dropped: its reads still see the write.
        assert item.get(1) == 2
    finally:
        client.config_set("maxmemory", MAXMEMORY)
        client.flushall()
        client.close()


@pytest.mark.cluster
@pytest.mark.slow
def test_no_stale_reads_under_eviction_on_a_cluster(redis_cluster: RedisClusterSetup) -> None:
    # Every master 2 MB above its baseline memory with allkeys-random, while other keys fill
    # it: entries, generations and leases vanish on every node.
    redis_cluster.reset()
    redis_cluster.flushall()
    masters = [m.port for m in redis_cluster.masters()]
    for port in masters:
        memory = _text(redis_command(port, "INFO", "memory"))
        baseline = int(memory.split("used_memory:")[1].split()[0])
        redis_command(port, "CONFIG", "SET", "maxmemory", baseline + 2 * 1024 * 1024)
        redis_command(port, "CONFIG", "SET", "maxmemory-policy", "allkeys-random")
    client = redis.RedisCluster(host="127.0.0.1", port=masters[0])
    try:
        run = run_coherence(
            # This is about L1 under eviction: writes are not held up by replica confirmation
            # (WAIT, tested in test_cluster.py), which a loaded 2-core host cannot keep up with
            # while the filler pushes megabytes through replication.
            redis_cluster.url + "?wait_replicas=0",
            "bounded",
            items=30,
            duration=2.5,
            max_staleness=0.1,
            disrupt=memory_pressure(client, "allkeys-random"),  # type: ignore[arg-type]
        )
        evicted = sum(
            int(_text(redis_command(p, "INFO", "stats")).split("evicted_keys:")[1].split()[0])
            for p in masters
        )
    finally:
        for port in masters:
            redis_command(port, "CONFIG", "SET", "maxmemory", "0")
            redis_command(port, "CONFIG", "SET", "maxmemory-policy", "noeviction")
        client.close()
        redis_cluster.flushall()
    assert evicted > 100, "the cluster was never under memory pressure"
    assert run.acked_writes > 100
    violations = run.violations
    assert violations == [], "\n".join(map(str, violations[:10]))
    assert run.stale_after_writers_stopped == []


def _text(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)
