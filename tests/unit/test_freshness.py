"""Freshness policies end to end on the embedded backend, with one injected clock."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from freshlink import Cache, Event
from freshlink.backends.memory import MemoryBackend


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(clock: Clock, **kw: Any) -> Cache:
    return Cache(backend=MemoryBackend(clock=clock), clock=clock, monotonic=clock, **kw)


def settle(cache: Cache) -> None:
    deadline = time.monotonic() + 5
    while cache.refresher.pending():
        assert time.monotonic() < deadline
        time.sleep(0.001)


class Source:
    def __init__(self) -> None:
        self.version = 1
        self.loads = 0
        self.fail = False

    def __call__(self) -> int:
        self.loads += 1
        if self.fail:
            raise ConnectionError("database down")
        return self.version


def test_refresh_ahead_serves_current_value_and_refreshes_once() -> None:
    clock, src = Clock(), Source()
    cache = make(clock)
    refreshed: list[Event] = []
    cache.events.on("refresh", refreshed.append)

    @cache.cached(ttl=10, ahead=0.8)
    def read() -> int:
        return src()

    assert read() == 1
    src.version = 2
    clock.t += 7.9
    assert read() == 1
    assert src.loads == 1
    clock.t += 0.2  # 81 % of the TTL
    assert read() == 1  # the caller does not wait
    settle(cache)
    assert src.loads == 2
    assert len(refreshed) == 1
    assert read() == 2
    assert src.loads == 2


def test_stale_while_revalidate() -> None:
    clock, src = Clock(), Source()
    cache = make(clock)
    stale: list[Event] = []
    cache.events.on("stale_served", stale.append)

    @cache.cached(ttl=10, stale_while_revalidate=5)
    def read() -> int:
        return src()

    read()
    src.version = 2
    clock.t += 12
    assert read() == 1
    assert len(stale) == 1
    assert stale[0].ttl_left == pytest.approx(-2)
    settle(cache)
    assert read() == 2
    clock.t += 10 + 6  # past the SWR window: a plain load
    src.version = 3
    assert read() == 3


def test_stale_if_error_serves_old_value_then_raises_when_too_old() -> None:
    clock, src = Clock(), Source()
    cache = make(clock)
    errors: list[Event] = []
    cache.events.on("error", errors.append)

    @cache.cached(ttl=10, stale_if_error=20)
    def read() -> int:
        return src()

    read()
    src.fail = True
    clock.t += 11
    assert read() == 1
    assert errors
    assert isinstance(errors[0].error, ConnectionError)
    loads = src.loads
    assert read() == 1  # backing off: the loader is not hammered
    assert src.loads == loads
    clock.t += 25  # 36 s old: beyond ttl + stale_if_error
    with pytest.raises(ConnectionError):
        read()
    src.fail = False
    src.version = 2
    assert read() == 2


def test_invalidated_value_is_never_served_stale() -> None:
    clock, src = Clock(), Source()
    cache = make(clock)

    @cache.cached(ttl=10, stale_if_error=100, stale_while_revalidate=100, tags=["t"])
    def read() -> int:
        return src()

    read()
    cache.invalidate("t")
    src.fail = True
    with pytest.raises(ConnectionError):
        read()


def test_negative_caching_with_its_own_ttl() -> None:
    clock = Clock()
    cache = make(clock)
    calls = 0

    @cache.cached(ttl=100, none_ttl=2)
    def find(x: int) -> Any:
        nonlocal calls
        calls += 1
        return None

    assert find(1) is None
    assert find(1) is None
    assert calls == 1
    clock.t += 3
    assert find(1) is None
    assert calls == 2

    @cache.cached(ttl=100, cache_none=False)
    def find2(x: int) -> Any:
        nonlocal calls
        calls += 1
        return None

    find2(1)
    find2(1)
    assert calls == 4


def test_should_cache_predicate() -> None:
    cache = Cache()
    calls = 0

    @cache.cached(ttl=100, should_cache=lambda r: r["status"] == "ok")
    def fetch(x: int) -> dict[str, str]:
        nonlocal calls
        calls += 1
        return {"status": "ok" if x else "pending"}

    fetch(0)
    fetch(0)
    assert calls == 2
    fetch(1)
    fetch(1)
    assert calls == 3


def test_events_hit_miss_load_invalidation_expiring() -> None:
    clock = Clock()
    cache = make(clock, expiring_within=3)
    seen: list[Event] = []
    for name in ("hit", "miss", "load", "invalidation", "expiring"):
        cache.events.on(name, seen.append)

    @cache.cached(ttl=10, tags=["loan:{n}"])
    def link(n: int) -> str:
        return f"link-{n}"

    link(1)
    link(1)
    clock.t += 8  # 2 s left: under the 3 s threshold
    link(1)
    cache.invalidate("loan:1")
    names = [e.name for e in seen]
    assert names == ["miss", "load", "hit", "hit", "expiring", "invalidation"]
    assert seen[1].duration is not None
    assert seen[1].duration >= 0
    assert seen[2].tier == "l1"
    assert seen[4].ttl_left == pytest.approx(2)
    assert seen[5].tags == ("loan:1",)


def test_a_hook_that_raises_never_breaks_the_call(caplog: pytest.LogCaptureFixture) -> None:
    cache = Cache()

    @cache.events.on("miss")
    def bad(event: Event) -> None:
        raise RuntimeError("hook bug")

    @cache.cached(ttl=10)
    def f() -> int:
        return 1

    with caplog.at_level(logging.ERROR, logger="freshlink"):
        assert f() == 1
    assert "hook bug" in caplog.text


def test_unknown_option_and_event_names_fail_early() -> None:
    from freshlink import ConfigurationError

    cache = Cache()
    with pytest.raises(ConfigurationError, match="stale_while"):
        cache.cached(ttl=1, stale_while=3)  # type: ignore[call-overload]
    with pytest.raises(ConfigurationError, match="unknown event"):
        cache.events.on("hits", print)


async def test_async_refresh_ahead() -> None:
    clock, src = Clock(), Source()
    cache = make(clock)

    @cache.cached(ttl=10, ahead=0.5)
    async def read() -> int:
        return src()

    assert await read() == 1
    src.version = 2
    clock.t += 6
    assert await read() == 1
    await cache.arefresher.drain()
    assert src.loads == 2
    assert await read() == 2


def test_refresh_losing_a_race_with_invalidation_is_discarded() -> None:
    import threading

    clock = Clock()
    cache = make(clock)
    gate, started = threading.Event(), threading.Event()
    state = {"v": 1, "block": False, "loads": 0}

    @cache.cached(ttl=10, ahead=0.5, tags=["t"])
    def read() -> int:
        state["loads"] += 1
        v = state["v"]
        if state["block"]:
            started.set()
            gate.wait(5)
        return v

    read()
    clock.t += 6
    state["block"] = True
    assert read() == 1  # schedules the refresh, which reads v=1 and blocks
    assert started.wait(5)
    state["block"] = False
    state["v"] = 2
    cache.invalidate("t")
    gate.set()
    settle(cache)
    assert read() == 2  # the refresh's v=1 was not stored
