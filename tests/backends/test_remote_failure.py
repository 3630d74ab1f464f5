"""A failure of another process's loader is retried here, not handed to this request.

Two caches on one real Redis stand for two processes (each has its own connections, channel,
single-flight and lease token). The first holds the key's lease while its loader runs and
fails; the second, waiting on that lease, used to raise ``RemoteLoaderError``. Now it takes
the lease and loads once itself; only if that next leader fails too does it give up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from freshlink import Cache

pytestmark = pytest.mark.redis


def loan_function(cache: Cache, behaviour: Callable[[], str]) -> Any:
    """The same cached function (same key) in another "process"."""

    @cache.cached(ttl=60, key="loan:7")
    def loan() -> str:
        return behaviour()

    return loan


def waiting(cache: Cache) -> bool:
    return bool(cache.backend.inner._waiters._by_key)  # type: ignore[attr-defined]


def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def count_reads(cache: Cache) -> list[int]:
    """Count the reads a cache makes (its read, then its re-reads while it waits)."""
    backend = cache.backend
    real = backend.read_lease
    count = [0]

    def counted(*args: Any) -> Any:
        count[0] += 1
        return real(*args)

    backend.read_lease = counted  # type: ignore[method-assign]
    return count


def leader_that_fails(started: threading.Event, release: threading.Event) -> Callable[[], str]:
    def load() -> str:
        started.set()
        assert release.wait(10)
        raise RuntimeError("database timeout")

    return load


def test_a_waiter_whose_leader_failed_loads_once_itself(
    make_redis_cache: Callable[..., Cache],
) -> None:
    leader_cache = make_redis_cache(namespace="rf", local=None)
    waiter_cache = make_redis_cache(namespace="rf", local=None)
    stats = waiter_cache.enable_stats()
    started, release = threading.Event(), threading.Event()
    leader = loan_function(leader_cache, leader_that_fails(started, release))
    loads: list[int] = []
    waiter = loan_function(waiter_cache, lambda: loads.append(1) or "renewed link")

    t1, led = run_in_thread(leader)
    assert started.wait(5)
    reads = count_reads(waiter_cache)
    t2, waited = run_in_thread(waiter)
    deadline = time.monotonic() + 5
    # It waits on the leader's lease, after its first re-read: a re-read that ran after the
    # leader gave the lease back would take it without hearing of the failure (correct, but
    # then there is no failure to count).
    while not (waiting(waiter_cache) and reads[0] >= 2):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # The "err" notice must reach it: its channel is subscribed before the leader fails (a
    # notice lost while it connects is the next test's case).
    assert waiter_cache.backend.ensure_listener().connected.wait(10)  # type: ignore[attr-defined]
    release.set()
    t1.join(10)
    t2.join(10)
    assert isinstance(led[0], RuntimeError)  # the leader's own caller sees its own failure
    assert waited == ["renewed link"]  # the waiter's request succeeded
    assert loads == [1]  # by one load of its own
    assert stats.totals().remote_failures == 1


def test_a_waiter_that_missed_the_notice_takes_the_freed_lease(
    make_redis_cache: Callable[..., Cache],
) -> None:
    # The waiter's channel is down, so the leader's "err" notice never reaches it (as while a
    # channel is still connecting). Its periodic re-read finds the lease given back and takes
    # it, instead of sleeping out the leader's lease (60 s here).
    leader_cache = make_redis_cache(namespace="rf-lost", local=None, lease_ttl=60)
    waiter_cache = make_redis_cache(namespace="rf-lost", local=None, lease_ttl=60)
    started, release = threading.Event(), threading.Event()
    leader = loan_function(leader_cache, leader_that_fails(started, release))
    loads: list[int] = []
    waiter = loan_function(waiter_cache, lambda: loads.append(1) or "renewed link")
    waiter_cache.backend.ensure_listener().stop()  # type: ignore[attr-defined]

    t1, led = run_in_thread(leader)
    assert started.wait(5)
    t2, waited = run_in_thread(waiter)
    deadline = time.monotonic() + 5
    while not waiting(waiter_cache):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    release.set()
    t1.join(10)
    t2.join(30)  # half the lease: only a re-read that takes the freed lease gets here
    assert isinstance(led[0], RuntimeError)
    assert waited == ["renewed link"]
    assert loads == [1]
