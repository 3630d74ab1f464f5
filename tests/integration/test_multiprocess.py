"""Many processes on one real Redis: no stale read after an acknowledged write, ever.

Four reader and two writer processes share a source of truth in shared memory; readers'
loaders sleep between reading it and returning (the stale-set race). Every read and write is
recorded with a monotonic timestamp and checked by :func:`freshlink.testing.history.check`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from freshlink.testing import RedisServer
from freshlink.testing.workloads import CoherenceRun, run_coherence, run_stampede

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as s:
        yield s


def every(seconds: float, action: Callable[[], object]) -> Callable[[float], None]:
    state = {"next": 0.0}

    def disrupt(elapsed: float) -> None:
        if elapsed >= state["next"]:
            state["next"] += seconds
            action()

    return disrupt


def once_at(at: float, action: Callable[[], object]) -> Callable[[float], None]:
    state = {"done": False}

    def disrupt(elapsed: float) -> None:
        if elapsed >= at and not state["done"]:
            state["done"] = True
            action()

    return disrupt


def assert_coherent(run: CoherenceRun) -> None:
    violations = run.violations
    assert run.acked_writes > 50, "too few writes to mean anything"
    assert len(run.reads) > 1000
    assert violations == [], "\n".join(map(str, violations[:10]))


@pytest.mark.parametrize("mode", ["strict", "strict-l1", "bounded"])
def test_no_stale_reads(server: RedisServer, mode: str) -> None:
    server.cli("FLUSHALL")
    assert_coherent(run_coherence(server.url, mode, duration=1.5))


def test_bounded_while_the_channel_is_killed(server: RedisServer) -> None:
    server.cli("FLUSHALL")
    kill = every(0.2, lambda: server.cli("CLIENT", "KILL", "TYPE", "pubsub"))
    assert_coherent(run_coherence(server.url, "bounded", duration=1.5, disrupt=kill))


@pytest.mark.parametrize("mode", ["strict", "bounded"])
def test_while_redis_restarts(server: RedisServer, mode: str) -> None:
    server.cli("FLUSHALL")
    run = run_coherence(server.url, mode, duration=2.0, disrupt=once_at(0.7, server.restart))
    assert_coherent(run)


def test_stampede_across_processes_loads_once(server: RedisServer) -> None:
    run = run_stampede(server.url, processes=4, threads=25, loader_time=0.05)
    assert run.loads == 1
    assert run.results == ["value"] * 100
