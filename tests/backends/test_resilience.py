"""Resilience with a real redis-server: outages, stalls, restarts, stale values, refreshes.

Tests that kill, pause or restart Redis get their own ``RedisServer`` (the ``server`` fixture)
so the session's shared server is never disturbed. Timings are generous bounds, never tight
measurements; waits poll against deadlines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from freshlink import Cache, Event, InvalidationError, Local
from freshlink.breaker import CircuitBreaker
from freshlink.testing import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
def server() -> Iterator[RedisServer]:
    """A throwaway redis-server this test may kill, pause or restart."""
    with RedisServer() as s:
        yield s


def quick_breaker() -> CircuitBreaker:
    # Opens after two failures, probes after 0.2 s and never waits more than 0.5 s between
    # probes, so healing is observable in well under a second.
    return CircuitBreaker(failures=2, reset_after=0.2, max_reset=0.5)


def state(breaker: CircuitBreaker | None) -> str:
    """The breaker's state, read afresh (a plain str, so type checkers do not narrow it)."""
    assert breaker is not None
    return str(breaker.state)


def wait_for(cond: Callable[[], bool], timeout: float = 5.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def invalidate_until_confirmed(cache: Cache, tag: str, timeout: float = 5.0) -> None:
    """Retry an invalidation the way an application would after an InvalidationError."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            cache.invalidate(tag)
            return
        except InvalidationError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --------------------------------------------------------------------------- outages


def test_redis_killed_while_loader_runs(server: RedisServer, caches: list[Cache]) -> None:
    cache = Cache(server.url, namespace="kill", local=None, breaker=quick_breaker())
    caches.append(cache)
    started, gate = threading.Event(), threading.Event()
    loads: list[int] = []

    @cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}"])
    def loan(loan_id: int) -> dict[str, Any]:
        loads.append(loan_id)
        if len(loads) == 1:
            started.set()
            assert gate.wait(5)
        return {"id": loan_id, "link": "renewed"}

    outcome: list[tuple[str, Any]] = []

    def first_call() -> None:
        try:
            outcome.append(("ok", loan(7)))
        except BaseException as exc:
            outcome.append(("raised", exc))

    t = threading.Thread(target=first_call)
    t.start()
    try:
        assert started.wait(5)
        server.kill()  # while the loader holds the fill lease
    finally:
        gate.set()
        t.join(10)
    assert outcome == [("ok", {"id": 7, "link": "renewed"})]

    # Redis is down: every call still answers, from the loader.
    for n in range(2, 7):
        t0 = time.monotonic()
        assert loan(7) == {"id": 7, "link": "renewed"}
        assert time.monotonic() - t0 < 2
        assert len(loads) == n
    assert state(cache.breaker) in ("open", "half_open")

    # Redis is back: calls heal by themselves and are cached again.
    server.start()
    deadline = time.monotonic() + 10
    hits_in_a_row = 0
    while hits_in_a_row < 5:
        assert time.monotonic() < deadline, "the cache never healed after Redis came back"
        before = len(loads)
        assert loan(7) == {"id": 7, "link": "renewed"}
        hits_in_a_row = hits_in_a_row + 1 if len(loads) == before else 0
        time.sleep(0.02)
    assert state(cache.breaker) == "closed"
    assert server.cli("EXISTS", cache.keyspace.entry(loan.key(7))) == "1"
    settled = len(loads)
    for _ in range(20):
        assert loan(7) == {"id": 7, "link": "renewed"}
    assert len(loads) == settled


def test_paused_redis_opens_the_breaker_fails_fast_and_closes(
    server: RedisServer, caches: list[Cache]
) -> None:
    breaker = CircuitBreaker(failures=2, reset_after=0.2, max_reset=0.4)
    cache = Cache(server.url, namespace="pause", local=None, breaker=breaker)
    caches.append(cache)
    changes: list[str] = []
    cache.events.on("circuit_open", lambda e: changes.append(e.name))
    cache.events.on("circuit_close", lambda e: changes.append(e.name))
    loads: list[int] = []

    @cache.cached(ttl=60, key="rate:{i}")
    def rate(i: int) -> int:
        loads.append(i)
        return i * 10

    assert rate(1) == 10
    assert rate(1) == 10
    assert len(loads) == 1
    server.pause()  # SIGSTOP: the socket accepts, nothing answers
    try:
        slow: list[float] = []
        while state(breaker) != "open":
            assert len(slow) < 5, f"breaker still {breaker.state} after {len(slow)} timeouts"
            t0 = time.monotonic()
            assert rate(1) == 10
            slow.append(time.monotonic() - t0)
        assert all(d < 2 for d in slow), slow
        assert len(slow) == 2  # failures=2: exactly two calls paid a timeout
        assert changes == ["circuit_open"]
        # Open: calls skip Redis entirely (well under one 0.25 s socket timeout).
        for _ in range(3):
            t0 = time.monotonic()
            assert rate(1) == 10
            assert time.monotonic() - t0 < 0.25  # less than the one socket timeout it skipped
        assert len(loads) == 1 + len(slow) + 3
    finally:
        server.resume()

    # No reset by hand: the breaker probes after reset_after and closes on success.
    deadline = time.monotonic() + 5
    while "circuit_close" not in changes:
        assert time.monotonic() < deadline, f"breaker never closed (state {breaker.state})"
        t0 = time.monotonic()
        assert rate(1) == 10
        assert time.monotonic() - t0 < 2
        time.sleep(0.05)
    assert state(breaker) == "closed"
    assert changes == ["circuit_open", "circuit_close"]
    settled = len(loads)
    assert rate(1) == 10  # the entry written before the stall is served again
    assert len(loads) == settled


@pytest.mark.parametrize("mode", ["bounded", "strict"])
def test_invalidation_during_outage_raises_flushes_l1_and_can_be_retried(
    server: RedisServer, caches: list[Cache], mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    # failures=1: the first timed-out attempt opens the breaker, so the guard's retries fail
    # fast and InvalidationError arrives before the channel listener gives up (~1 s); the
    # flush seen below is the invalidation's own doing. (Strict L1 has no listener at all.)
    writer = Cache(
        server.url,
        namespace="inv",
        local=Local(maxsize=100, mode=mode),  # type: ignore[arg-type]
        breaker=CircuitBreaker(failures=1, reset_after=0.2, max_reset=0.4),
    )
    other = Cache(server.url, namespace="inv", local=None)  # another process's view
    caches += [writer, other]
    if mode == "bounded":
        assert writer.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    db = {"link": "expired"}

    def link(loan_id: int) -> str:
        return db["link"]

    w_link = writer.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}"])(link)
    o_link = other.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}"])(link)
    assert w_link(7) == "expired"
    assert o_link(7) == "expired"  # shared entry: a hit for the other process
    assert writer.near is not None
    assert len(writer.near) == 1
    errors: list[Event] = []
    writer.events.on("error", errors.append)

    server.pause()
    try:
        db["link"] = "renewed"
        with caplog.at_level(logging.ERROR, logger="freshlink"), pytest.raises(InvalidationError):
            writer.invalidate("loan:7")
        assert len(writer.near) == 0, "L1 kept old values after an unconfirmed invalidation"
        assert [e.tags for e in errors] == [(writer.keyspace.tag("loan:7"),)]
        assert "not confirmed" in caplog.text
        assert w_link(7) == "renewed"  # the writer reads its own write, Redis or not
    finally:
        server.resume()

    invalidate_until_confirmed(writer, "loan:7")
    assert o_link(7) == "renewed"
    assert w_link(7) == "renewed"


def test_restart_readers_never_raise(server: RedisServer, caches: list[Cache]) -> None:
    # Two processes' views of one namespace, contending for the same fill lease. lease_ttl=1
    # bounds the fill-notice stall described in test_waiter_is_not_stalled_by_a_lost_fill_notice
    # (a src bug) so that it cannot make this test slow; here only errors and values count.
    strict = Cache(server.url, namespace="rs", local=None, breaker=quick_breaker(), lease_ttl=1)
    bounded = Cache(
        server.url,
        namespace="rs",
        local=Local(max_staleness=0.1),
        breaker=quick_breaker(),
        lease_ttl=1,
    )
    caches += [strict, bounded]
    db = {"v": 1}

    def item(i: int) -> dict[str, int]:
        return {"i": i, "v": db["v"]}

    readers = [c.cached(ttl=60, key="item:{i}", tags=["item:{i}"])(item) for c in (strict, bounded)]
    errors: list[BaseException] = []
    wrong: list[Any] = []
    calls = [0]
    stop = threading.Event()

    def run(fn: Callable[[int], dict[str, int]]) -> None:
        while not stop.is_set():
            try:
                got = fn(1)
            except Exception as exc:
                errors.append(exc)
            else:
                if got != {"i": 1, "v": 1}:
                    wrong.append(got)
            calls[0] += 1
            time.sleep(0.003)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in readers]
    for t in threads:
        t.start()
    try:
        time.sleep(0.2)
        server.stop()
        time.sleep(0.3)
        server.start()
        assert wait_for(lambda: all(state(c.breaker) == "closed" for c in caches))
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    assert calls[0] > 20
    assert errors == []
    assert wrong == []

    # After the restart, invalidations work and reach both caches.
    db["v"] = 2
    invalidate_until_confirmed(strict, "item:1")
    assert readers[0](1) == {"i": 1, "v": 2}
    assert wait_for(lambda: readers[1](1) == {"i": 1, "v": 2}, timeout=2)


# --------------------------------------------------------------------------- stale values


@pytest.mark.parametrize("local", [None, Local(max_staleness=0.1)], ids=["no-l1", "bounded-l1"])
def test_stale_if_error_serves_old_value_within_the_window_only(
    make_redis_cache: Callable[..., Cache], local: Local | None
) -> None:
    cache = make_redis_cache(local=local)
    if local is not None:
        assert cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    stale: list[Event] = []
    cache.events.on("stale_served", stale.append)
    failing = {"on": False}
    loads: list[float] = []

    @cache.cached(ttl=0.3, stale_if_error=0.5, key="rate:{c}", tags=["rate:{c}"])
    def rate(c: str) -> dict[str, Any]:
        loads.append(time.monotonic())
        if failing["on"]:
            raise RuntimeError("database unavailable")
        return {"c": c, "rate": 5}

    assert rate("EUR") == {"c": "EUR", "rate": 5}
    loaded_at = loads[0]
    failing["on"] = True
    time.sleep(max(loaded_at + 0.4 - time.monotonic(), 0))  # expired, inside the window
    assert rate("EUR") == {"c": "EUR", "rate": 5}
    assert len(loads) == 2  # the loader was tried and failed
    assert stale
    assert stale[0].error is not None
    assert rate("EUR") == {"c": "EUR", "rate": 5}  # still inside the window
    time.sleep(max(loaded_at + 0.3 + 0.5 + 0.15 - time.monotonic(), 0))  # window over
    with pytest.raises(RuntimeError, match="database unavailable"):
        rate("EUR")


@pytest.mark.parametrize("local", [None, Local(max_staleness=0.1)], ids=["no-l1", "bounded-l1"])
@pytest.mark.parametrize("expired", [False, True], ids=["fresh", "expired"])
def test_invalidated_entry_is_never_served_stale(
    make_redis_cache: Callable[..., Cache], local: Local | None, expired: bool
) -> None:
    cache = make_redis_cache(local=local)
    other = make_redis_cache(local=None)
    if local is not None:
        assert cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    failing = {"on": False}

    def quote(c: str) -> str:
        if failing["on"]:
            raise RuntimeError("database unavailable")
        return "old quote"

    cached_quote = cache.cached(ttl=0.3, stale_if_error=5, key="q:{c}", tags=["q:{c}"])(quote)
    assert cached_quote("EUR") == "old quote"
    failing["on"] = True
    if expired:
        time.sleep(0.4)
        assert cached_quote("EUR") == "old quote"  # expired but valid: served stale
    cache.invalidate("q:EUR")
    with pytest.raises(RuntimeError, match="database unavailable"):
        cached_quote("EUR")

    # The same when another process invalidates (after the channel had time to deliver).
    failing["on"] = False
    cached_quote.invalidate("EUR")
    assert cached_quote("EUR") == "old quote"
    failing["on"] = True
    if expired:
        time.sleep(0.4)
    other.invalidate("q:EUR")
    time.sleep(0.15)  # > max_staleness
    with pytest.raises(RuntimeError, match="database unavailable"):
        cached_quote("EUR")


def test_stale_while_revalidate_returns_at_once_and_refreshes(
    make_redis_cache: Callable[..., Cache],
) -> None:
    cache = make_redis_cache(local=None)
    refreshed: list[Event] = []
    cache.events.on("refresh", refreshed.append)
    db = {"v": 1}
    loads: list[int] = []
    gate = threading.Event()  # holds the refresh until the stale answer is checked

    @cache.cached(ttl=0.3, stale_while_revalidate=5, key="swr:{i}")
    def slow(i: int) -> int:
        loads.append(i)
        if len(loads) > 1:
            assert gate.wait(5)
        time.sleep(0.2)
        return db["v"]

    assert slow(1) == 1
    db["v"] = 2
    time.sleep(0.35)
    assert slow(1) == 1  # stale, served without waiting for the loader
    assert not refreshed  # it did not wait: the refresh is still held
    gate.set()
    assert wait_for(lambda: bool(refreshed))
    assert refreshed[0].duration is not None
    assert refreshed[0].duration >= 0.2
    assert slow(1) == 2
    assert len(loads) == 2


def test_refresh_ahead_refreshes_once_and_serves_the_current_value(
    make_redis_cache: Callable[..., Cache],
) -> None:
    cache = make_redis_cache(local=None)
    db = {"v": 1}
    loads: list[int] = []
    gate = threading.Event()  # holds the refresh until the hits are checked

    @cache.cached(ttl=4, ahead=0.5, key="ra:{i}")
    def value(i: int) -> int:
        loads.append(i)
        if len(loads) > 1:
            assert gate.wait(5)
        return db["v"]

    assert value(1) == 1
    db["v"] = 2
    time.sleep(2.1)  # into the last half of the entry's life: due a refresh, still fresh
    assert value(1) == 1  # the current value, at once; the refresh runs behind it
    got = [value(1) for _ in range(20)]  # more hits while the refresh is held
    assert got == [1] * 20
    assert len(loads) <= 2
    gate.set()
    assert wait_for(lambda: cache.refresher.pending() == 0)
    assert value(1) == 2
    assert len(loads) == 2  # exactly one background refresh


@pytest.mark.parametrize("local", [None, Local(max_staleness=0.1)], ids=["no-l1", "bounded-l1"])
def test_refresh_that_loses_a_race_with_invalidation_is_discarded(
    make_redis_cache: Callable[..., Cache], local: Local | None
) -> None:
    cache = make_redis_cache(local=local)
    if local is not None:
        assert cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    db = {"v": 1}
    loads: list[int] = []
    block = {"next": False}
    in_refresh, gate = threading.Event(), threading.Event()

    @cache.cached(ttl=0.3, stale_while_revalidate=5, key="race:{i}", tags=["race:{i}"])
    def account(i: int) -> dict[str, int]:
        v = db["v"]  # read the source first (the refresh reads it before the write)
        loads.append(v)
        if block["next"]:
            block["next"] = False
            in_refresh.set()
            assert gate.wait(5)
        return {"v": v, "load": len(loads)}

    assert account(1) == {"v": 1, "load": 1}
    ekey = cache.keyspace.entry(account.key(1))
    stored = cache.backend.get_entry(ekey)
    assert stored is not None
    time.sleep(0.35)
    block["next"] = True
    try:
        assert account(1) == {"v": 1, "load": 1}  # stale served, refresh started
        assert in_refresh.wait(5)
        db["v"] = 2
        cache.invalidate("race:1")  # the write lands while the refresh holds old data
    finally:
        gate.set()
    assert wait_for(lambda: cache.refresher.pending() == 0)
    after = cache.backend.get_entry(ekey)
    assert after is not None
    assert after.payload == stored.payload, "the refresh that lost the race was stored"
    assert after.created == stored.created
    assert account(1) == {"v": 2, "load": 3}
    assert loads == [1, 1, 2]


# --------------------------------------------------------------------------- events


def test_a_raising_hook_never_breaks_the_call(
    make_redis_cache: Callable[..., Cache], caplog: pytest.LogCaptureFixture
) -> None:
    cache = make_redis_cache(local=None)
    seen: list[str] = []

    def broken(event: Event) -> None:
        seen.append(event.name)
        raise RuntimeError("bug in a hook")

    for name in ("miss", "load", "hit", "invalidation"):
        cache.events.on(name, broken)

    @cache.cached(ttl=60, tags=["t"])
    def f(x: int) -> int:
        return x * 2

    with caplog.at_level(logging.ERROR, logger="freshlink"):
        assert f(2) == 4
        assert f(2) == 4
        cache.invalidate("t")
        assert f(2) == 4
    assert seen == ["miss", "load", "hit", "invalidation", "miss", "load"]
    hook_records = [r for r in caplog.records if "hook" in r.getMessage()]
    assert len(hook_records) == len(seen)
    assert all(r.exc_info is not None for r in hook_records)
    assert "bug in a hook" in caplog.text


# --------------------------------------------------------------------------- known bugs
# Each of these reproduces a bug found in src/ (see the report that added this file). They are
# Regressions: each of these reproduced a bug in src/ found while writing this file.


def test_waiter_is_not_stalled_by_a_lost_fill_notice(
    server: RedisServer, caches: list[Cache]
) -> None:
    filler = Cache(server.url, namespace="wf", local=None, lease_ttl=2)
    waiter = Cache(server.url, namespace="wf", local=Local(), lease_ttl=2)
    caches += [filler, waiter]
    listener = waiter.backend.listener  # type: ignore[attr-defined]
    assert listener.alive.wait(5)
    loading, gate = threading.Event(), threading.Event()

    def loan(i: int) -> dict[str, int]:
        loading.set()
        assert gate.wait(5)
        return {"id": i}

    fill = filler.cached(ttl=60, key="loan:{i}")(loan)
    wait = waiter.cached(ttl=60, key="loan:{i}")(loan)
    # Keep the waiter's channel down while the fill notice goes out: the server refuses its
    # SUBSCRIBE (an ACL change, not a timing window), so the notice is lost for certain.
    server.cli("ACL", "SETUSER", "default", "-subscribe", "-ssubscribe")
    listener.reconnect()
    deadline = time.monotonic() + 5
    while listener.connected.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not listener.connected.is_set()
    leader = threading.Thread(target=fill, args=(1,))
    leader.start()
    try:
        assert loading.wait(5)
        got: list[Any] = []
        follower = threading.Thread(target=lambda: got.append(wait(1)))
        t0 = time.monotonic()
        follower.start()
        time.sleep(0.05)  # the follower misses, finds the lease taken, waits for the fill
    finally:
        gate.set()  # the leader stores the entry and publishes the fill notice
        leader.join(5)
    follower.join(10)
    assert not listener.connected.is_set(), "the notice could have reached the waiter"
    assert got == [{"id": 1}]
    assert time.monotonic() - t0 < 1, "the waiter slept out the lease after the entry was stored"


def test_unstorable_value_does_not_leave_the_fill_lease_held(
    make_redis_cache: Callable[..., Cache],
) -> None:
    from freshlink import ValueTooLargeError

    cache = make_redis_cache(local=None, max_value_size=100, lease_ttl=2)

    @cache.cached(ttl=60, key="big:{i}")
    def big(i: int) -> str:
        return "x" * 1000

    with pytest.raises(ValueTooLargeError):
        big(1)
    t0 = time.monotonic()
    with pytest.raises(ValueTooLargeError):
        big(1)
    assert time.monotonic() - t0 < 1, "the second call waited for a lease nobody releases"


async def test_cancelled_half_open_probe_does_not_wedge_the_breaker(
    server: RedisServer, caches: list[Cache]
) -> None:
    import asyncio

    breaker = CircuitBreaker(failures=1, reset_after=0.2, max_reset=0.4)
    cache = Cache(server.url, namespace="probe", local=None, breaker=breaker)
    caches.append(cache)

    @cache.cached(ttl=60, key="k:{i}")
    async def value(i: int) -> int:
        return i

    assert await value(1) == 1
    server.pause()
    try:
        assert await value(1) == 1  # times out: the breaker opens
        assert state(breaker) == "open"
        await asyncio.sleep(0.25)
        probe = asyncio.ensure_future(value(1))  # the half-open probe, stuck on the stall
        await asyncio.sleep(0.05)
        probe.cancel()  # e.g. the request's own timeout
        with pytest.raises(asyncio.CancelledError):
            await probe
    finally:
        server.resume()
    deadline = time.monotonic() + 3
    while state(breaker) != "closed" and time.monotonic() < deadline:
        assert await value(1) == 1
        await asyncio.sleep(0.05)
    assert state(breaker) == "closed", f"breaker stuck in {breaker.state}"


def test_refresh_ahead_does_not_refresh_twice_for_one_entry(
    make_redis_cache: Callable[..., Cache],
) -> None:
    cache = make_redis_cache(local=None)
    loads: list[int] = []

    @cache.cached(ttl=1, ahead=0.5, key="ra:{i}")
    def value(i: int) -> int:
        loads.append(i)
        return len(loads)

    assert value(1) == 1
    time.sleep(0.6)
    late = threading.Thread(target=value, args=(1,))
    in_hook, release = threading.Event(), threading.Event()

    def hold_late_caller(event: Event) -> None:
        # "hit" is emitted after the read and before the refresh is queued: hold one caller
        # there while another caller's refresh runs to completion.
        if threading.current_thread() is late:
            in_hook.set()
            release.wait(5)

    cache.events.on("hit", hold_late_caller)
    late.start()
    try:
        assert in_hook.wait(5)  # the late caller has read the entry that is due a refresh
        assert value(1) == 1  # this caller queues the refresh
        assert wait_for(lambda: len(loads) == 2 and cache.refresher.pending() == 0)
    finally:
        release.set()
        late.join(5)
    assert wait_for(lambda: cache.refresher.pending() == 0)
    time.sleep(0.05)
    assert len(loads) == 2, "the entry was refreshed twice"
