"""The channel drained by a busy caller (issue 17), against a real redis-server.

A thread that spins on L1 hits holds the GIL against the listener thread; its hits poll the
channel every ``POLL_EVERY`` and read what arrived in the caller's own thread. What is pinned
down here is the mechanism (who dispatched a message, what the next hit returns, that a poll
on a dead or replaced connection neither raises nor trusts it), never a timing.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import redis

from freshlink import Cache, Local
from freshlink.backends.channel import Listener
from freshlink.testing import RedisServer


def _dispatching_threads(cache: Cache) -> list[int]:
    """The threads that deliver each invalidation message to ``cache``'s backend, in order."""
    threads: list[int] = []

    def record(names: Sequence[str], values: Sequence[int]) -> None:
        threads.append(threading.get_ident())

    cache.backend.subscribe(record)
    return threads


def _spin_until(read: Callable[[], Any], want: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while read() != want:
        assert time.monotonic() < deadline, f"never read {want!r}"


def test_a_spinning_reader_drains_the_channel_in_its_own_thread(
    make_redis_cache: Callable[..., Cache],
) -> None:
    reader = make_redis_cache(local=Local(max_staleness=0.5))
    writer = make_redis_cache()
    listener = reader.backend.listener  # type: ignore[attr-defined]
    assert listener.alive.wait(5)
    assert reader.near is not None
    assert reader.near.poll is not None
    db = {"v": 0}

    @reader.cached(ttl=60, tags=["v"])
    def read() -> int:
        return db["v"]

    assert read() == 0
    threads = _dispatching_threads(reader)
    me = threading.get_ident()
    # Each write comes from another thread while this one spins on hits; the listener
    # thread may still win one now and then on a loaded machine, hence several rounds.
    for v in range(1, 11):

        def write(v: int = v) -> None:
            db["v"] = v
            writer.invalidate("v")

        timer = threading.Timer(0.02, write)
        timer.start()
        _spin_until(read, v)  # the hit right after the drain misses and reads the new value
        timer.join()
        if me in threads:
            break
    assert me in threads, "no message was dispatched in the spinning caller's thread"
    assert listener.caller_drains > 0


def test_an_async_reader_drains_the_channel_too(make_redis_cache: Callable[..., Cache]) -> None:
    reader = make_redis_cache(local=Local(max_staleness=0.5))
    writer = make_redis_cache()
    listener = reader.backend.listener  # type: ignore[attr-defined]
    assert listener.alive.wait(5)
    db = {"v": 0}

    @reader.cached(ttl=60, tags=["v"])
    async def read() -> int:
        return db["v"]

    threads = _dispatching_threads(reader)

    async def spin() -> int:
        assert await read() == 0
        me = threading.get_ident()
        for v in range(1, 11):

            def write(v: int = v) -> None:
                db["v"] = v
                writer.invalidate("v")

            timer = threading.Timer(0.02, write)
            timer.start()
            deadline = time.monotonic() + 10
            while await read() != v:  # L1 hits: never suspends, like a CPU-bound task
                assert time.monotonic() < deadline
            timer.join()
            if me in threads:
                return me
        return -1

    assert asyncio.run(spin()) in threads


def test_polling_a_killed_connection_neither_raises_nor_trusts_it(
    make_redis_cache: Callable[..., Cache], redis_server: RedisServer
) -> None:
    reader = make_redis_cache(local=Local(max_staleness=0.5))
    writer = make_redis_cache()
    listener = reader.backend.listener  # type: ignore[attr-defined]
    assert listener.alive.wait(5)
    near = reader.near
    assert near is not None
    db = {"v": 1}

    @reader.cached(ttl=60, tags=["v"])
    def read() -> int:
        return db["v"]

    assert read() == 1
    resets = near.resets
    redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")
    db["v"] = 2
    writer.invalidate("v")  # published while the reader is not subscribed: lost
    # Polls and hits go on in this thread; the loss is seen (by whichever drainer reads the
    # closed socket first), L1 flushed, and the old value is not served again.
    _spin_until(read, 2)
    assert near.resets > resets
    for _ in range(1000):
        listener.poll()
    deadline = time.monotonic() + 5
    while not (listener.connected.is_set() and listener.alive.is_set()):
        assert time.monotonic() < deadline, "the channel did not come back"
        read()
    # Trusted again, and a new message is heard on the new connection.
    db["v"] = 3
    writer.invalidate("v")
    _spin_until(read, 3)


def test_polling_while_the_connection_is_replaced_never_raises(
    make_redis_cache: Callable[..., Cache],
) -> None:
    reader = make_redis_cache(local=Local(max_staleness=0.5))
    listener = reader.backend.listener  # type: ignore[attr-defined]
    assert listener.alive.wait(5)
    stop = threading.Event()
    errors: list[BaseException] = []

    def poll_forever() -> None:
        while not stop.is_set():
            try:
                assert isinstance(listener.poll(), bool)
            except BaseException as exc:
                errors.append(exc)
                return

    pollers = [threading.Thread(target=poll_forever) for _ in range(2)]
    for t in pollers:
        t.start()
    try:
        for _ in range(5):
            old = listener._current
            listener.reconnect()  # closes the connection under the pollers' feet
            deadline = time.monotonic() + 5
            while listener._current in (None, old) or not listener.alive.is_set():
                assert time.monotonic() < deadline, "the channel did not come back"
                time.sleep(0.005)
    finally:
        stop.set()
        for t in pollers:
            t.join()
    assert errors == []


def test_a_poll_after_close_is_a_no_op(make_redis_cache: Callable[..., Cache]) -> None:
    reader = make_redis_cache(local=Local(max_staleness=0.5))
    listener = reader.backend.listener  # type: ignore[attr-defined]
    assert listener.alive.wait(5)
    reader.close()
    assert listener.poll() is True
    assert reader.backend.poll_channel() is True  # type: ignore[attr-defined]


def test_memory_and_strict_l1_have_no_poll(make_redis_cache: Callable[..., Cache]) -> None:
    memory = Cache(namespace="t", local=Local())
    try:
        assert memory.near is not None
        assert memory.near.poll is None
    finally:
        memory.close()
    strict = make_redis_cache(local=Local(mode="strict"))
    assert strict.near is not None
    assert strict.near.poll is None


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_callers_drain_in_order_with_every_parser(
    redis_url: str, protocol: int, parser: str
) -> None:
    from redis._parsers import _HiredisParser, _RESP2Parser, _RESP3Parser

    parser_class = (
        _HiredisParser if parser == "hiredis" else _RESP2Parser if protocol == 2 else _RESP3Parser
    )
    got: list[tuple[list[str], list[int]]] = []

    def make_pubsub() -> Any:
        pool = redis.ConnectionPool.from_url(
            redis_url, protocol=protocol, parser_class=parser_class, max_connections=1
        )
        return redis.Redis(connection_pool=pool).pubsub(ignore_subscribe_messages=False)

    listener = Listener(
        make_pubsub,
        invalidations="ns:inv",
        fills="ns:fill",
        ping_interval=0.02,
        on_invalidate=lambda names, values: got.append((list(names), list(values))),
        on_fill=lambda status, rest: None,
        on_alive=lambda t: None,
        on_subscribed=lambda: None,
        on_lost=lambda: None,
    )
    listener.start()
    try:
        assert listener.alive.wait(5)
        # Published by another process in one burst while this thread polls: frames arrive
        # several to a read, and either side may drain any of them.
        script = "".join(f'PUBLISH ns:inv "a\\nb\\n\\n{i},{i + 1}"\n' for i in range(200))
        cli = subprocess.Popen(
            ["redis-cli", "-u", redis_url], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        assert cli.stdin is not None
        cli.stdin.write(script.encode())
        cli.stdin.close()
        deadline = time.monotonic() + 10
        while len(got) < 200:
            assert time.monotonic() < deadline, f"{len(got)} of 200 messages"
            listener.poll()
        cli.wait(10)
    finally:
        listener.stop()
    assert got == [(["a", "b"], [i, i + 1]) for i in range(200)]
