"""Invalidations wait for the replicas each master actually has (``wait_replicas="auto"``).

A master without a replica cannot fail over to one that missed a write, so waiting for one
protects nothing there: a cluster made with ``--cluster-replicas 0`` (the usual development
set-up) must take invalidations by default, and so must a Sentinel master whose only replica
was just promoted away from it. Where a replica exists, an invalidation is still acknowledged
only once it has it (tested in ``test_cluster.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import pytest

from freshlink import Cache, Local
from freshlink.errors import InvalidationError
from freshlink.testing.cluster import RedisClusterSetup, RedisSentinelSetup, redis_command


@pytest.fixture(scope="module")
def bare_cluster() -> Iterator[RedisClusterSetup]:
    """Three masters and no replica, as ``redis-cli --cluster create --cluster-replicas 0``."""
    with RedisClusterSetup(replicas_per_master=0) as cluster:
        yield cluster


def waits_run(cluster: RedisClusterSetup) -> int:
    """How many WAIT commands the masters have run."""
    total = 0
    for master in cluster.masters():
        stats = redis_command(master.port, "INFO", "commandstats")
        for line in str(stats).splitlines():
            if line.startswith("cmdstat_wait:"):
                total += int(line.split("calls=")[1].split(",")[0])
    return total


@pytest.mark.cluster
async def test_a_cluster_without_replicas_takes_invalidations_by_default(
    bare_cluster: RedisClusterSetup, caplog: pytest.LogCaptureFixture
) -> None:
    bare_cluster.flushall()
    cache = Cache(bare_cluster.url, namespace="bare", local=Local(max_staleness=0.1))
    data = {"v": 1}

    @cache.cached(ttl=60, key="loan:{i}", tags=["loan:{i}", "borrower:{i}"])
    def loan(i: int) -> int:
        return data["v"]

    try:
        with caplog.at_level(logging.WARNING, logger="freshlink"):
            before = waits_run(bare_cluster)
            assert loan(1) == 1
            data["v"] = 2
            for n in range(20):  # tags spread over all three masters
                cache.invalidate(f"loan:{n}", f"borrower:{n}")
                await cache.ainvalidate(f"loan:{n}")
            assert loan(1) == 2
            assert waits_run(bare_cluster) == before, "waited for replicas that do not exist"
        alone = [r for r in caplog.records if "has no replica" in r.getMessage()]
        assert len(alone) == len(bare_cluster.masters())  # once per master, not per write
    finally:
        await cache.aclose()


@pytest.mark.cluster
def test_an_explicit_replica_count_is_still_enforced(bare_cluster: RedisClusterSetup) -> None:
    cache = Cache(bare_cluster.url + "?wait_replicas=1&wait_timeout=0.05", namespace="bare1")
    try:
        with pytest.raises(InvalidationError, match="0 of 1 replica"):
            cache.invalidate("loan:1")
    finally:
        cache.close()


@pytest.mark.sentinel
@pytest.mark.slow
def test_invalidations_are_acknowledged_soon_after_a_sentinel_failover(
    redis_sentinel: RedisSentinelSetup, sentinel_url: str
) -> None:
    # One master, one replica. After SENTINEL FAILOVER the new master has no replica until
    # Sentinel demotes the old one (10-15 s later, left to Sentinel here): waiting for one
    # made every invalidation raise for that whole time.
    cache = Cache(sentinel_url, namespace="fo", local=Local(max_staleness=0.1))
    old = redis_sentinel.master_port()
    cache.invalidate("warm")  # confirmed by the replica before the failover
    done = threading.Event()

    def failover() -> None:
        try:
            redis_sentinel.failover(demote_old_master=False)
        finally:
            done.set()

    thread = threading.Thread(target=failover, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while redis_sentinel.master_port() == old:
            assert time.monotonic() < deadline, "Sentinel did not fail over"
            time.sleep(0.05)
        switched = time.monotonic()
        acknowledged_after = None
        while time.monotonic() - switched < 8.0 and not done.is_set():
            try:
                cache.invalidate("loan:7")
            except InvalidationError:
                time.sleep(0.1)
                continue
            acknowledged_after = time.monotonic() - switched
            break
        # Sentinel demotes the old master no sooner than 10 s after the switch: an
        # acknowledgement before that came from the new master alone.
        assert acknowledged_after is not None, "no invalidation acknowledged after the failover"
        assert not done.is_set(), "the old master was demoted first: the test proved nothing"
    finally:
        thread.join(60)
        cache.close()


@pytest.mark.sentinel
def test_sentinel_asks_for_a_replica_while_one_is_in_sync(sentinel_url: str) -> None:
    cache = Cache(sentinel_url, namespace="sync")
    try:
        backend = cache.backend.inner  # type: ignore[attr-defined]
        assert backend.wait_replicas == "auto"
        cache.invalidate("t")
        deadline = time.monotonic() + 5
        while backend._healthy is None:  # the master watch has asked the sentinels
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert backend._wait_for() == 1
    finally:
        cache.close()


def test_bad_wait_replicas_is_a_configuration_error() -> None:
    from freshlink.backends.redis import RedisBackend
    from freshlink.errors import ConfigurationError

    for bad in (-1, "some", True, 1.5):
        with pytest.raises(ConfigurationError, match="wait_replicas"):
            RedisBackend(url="redis://127.0.0.1:1/0", wait_replicas=bad)  # type: ignore[arg-type]
