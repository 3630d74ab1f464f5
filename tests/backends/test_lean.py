"""The hot commands' lane: connections kept out of the pool, and every way one can fail."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
import redis
import redis.asyncio

from freshlink.backends._lean import ALane, Lane, Lanes
from freshlink.testing import RedisServer

pytestmark = pytest.mark.redis


def test_a_plain_pool_is_used_through_kept_connections(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    lane = Lane(client)
    assert lane.call(("SET", "k", "v")) == b"OK"  # the raw reply: no response callbacks
    assert lane.call(("GET", "k")) == b"v"
    # One kept connection, checked out of the pool (so the client's close disconnects it).
    assert len(lane._idle) == 1
    assert lane._idle[0] in client.connection_pool._in_use_connections
    lane.close()
    assert not lane._idle
    assert not client.connection_pool._in_use_connections
    client.close()


def test_observed_commands_go_through_execute_command(redis_url: str) -> None:
    # While a cache is traced, client instrumentations (OpenTelemetry's for redis-py) wrap
    # execute_command: the lane must send its commands there, and give its kept ones back.
    client = redis.Redis.from_url(redis_url)
    sent: list[tuple[object, ...]] = []
    plain = client.execute_command

    def execute_command(*args: object, **options: object) -> object:
        sent.append(args)
        return plain(*args, **options)

    client.execute_command = execute_command  # type: ignore[method-assign]
    lanes = Lanes()
    lanes.sync(client).call(("SET", "k", "v"))
    assert sent == []
    lanes.observe(True)
    assert not lanes.sync(client)._idle
    assert not client.connection_pool._in_use_connections
    assert lanes.sync(client).call(("GET", "k")) == b"v"
    assert sent == [("GET", "k")]
    other = redis.Redis.from_url(redis_url)
    assert lanes.sync(other)._lean is False  # a lane made while observed is observed too
    lanes.sync(client)
    lanes.observe(False)
    lanes.sync(client).call(("GET", "k"))
    assert sent == [("GET", "k")]
    lanes.close()
    client.close()
    other.close()


def test_concurrent_threads_each_get_their_own_connection(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    lane = Lane(client)
    barrier = threading.Barrier(4)
    replies: list[object] = []

    def work(n: int) -> None:
        barrier.wait()
        for i in range(50):
            replies.append(lane.call(("ECHO", f"{n}:{i}")))

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Every reply is the one its command asked for: no connection was shared mid-command.
    assert sorted(replies) == sorted(f"{n}:{i}".encode() for n in range(4) for i in range(50))
    assert 1 <= len(lane._idle) <= 4
    lane.close()
    client.close()


def test_a_killed_connection_is_dropped_and_the_command_still_answers(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    lane = Lane(client)
    lane.call(("SET", "k", "v"))
    (kept,) = lane._idle
    admin = redis.Redis.from_url(redis_url)
    admin.client_kill_filter(_type="normal", skipme=True)
    # The kept connection is dead: the lane resends through execute_command (its retry policy
    # reconnects), and never hands the broken connection out again.
    assert lane.call(("GET", "k")) == b"v"
    assert kept not in lane._idle
    assert lane.call(("GET", "k")) == b"v"
    admin.close()
    lane.close()
    client.close()


def test_an_error_reply_keeps_the_connection_in_step(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    lane = Lane(client)
    lane.call(("SET", "s", "text"))
    with pytest.raises(redis.ResponseError):
        lane.call(("INCR", "s"))
    (kept,) = lane._idle  # the error reply was read in full: the connection is reusable
    assert lane.call(("GET", "s")) == b"text"
    assert lane._idle == [kept]
    lane.close()
    client.close()


def test_other_pools_keep_their_own_path(redis_server: RedisServer) -> None:
    # A blocking pool's size limit, a single-connection client's lock: the lane must not
    # route around them.
    blocking = redis.Redis(
        connection_pool=redis.BlockingConnectionPool.from_url(redis_server.url, max_connections=1)
    )
    single = redis.Redis.from_url(redis_server.url, single_connection_client=True)
    for client in (blocking, single):
        lane = Lane(client)
        assert lane.call(("ECHO", "x")) == b"x"
        assert not lane._idle
        client.close()


async def test_the_asyncio_lane_keeps_connections_and_survives_a_kill(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    lane = ALane(client)
    assert await lane.call(("SET", "k", "v")) == b"OK"
    with pytest.raises(redis.ResponseError):
        await lane.call(("INCR", "k"))
    (kept,) = next(iter(lane._idle.values()))  # one connection for this loop, still in step
    admin = redis.Redis.from_url(redis_url)
    admin.client_kill_filter(_type="normal", skipme=True)
    assert await lane.call(("GET", "k")) == b"v"  # resent through execute_command
    assert kept not in next(iter(lane._idle.values()))
    admin.close()
    await lane.aclose()
    await client.aclose()


# Tracing turned on while commands run: the lane's connections must all get back to a bounded
# pool (a plain pool's max_connections: the lane serves plain pools only).


def _blocked(admin: redis.Redis, count: int) -> bool:
    return sum(c["cmd"] == "blpop" for c in admin.client_list()) == count


def _wait(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_command_in_flight_when_observing_starts_gives_its_connection_back(
    redis_url: str,
) -> None:
    pool = redis.ConnectionPool.from_url(redis_url, max_connections=1)
    client, admin = redis.Redis(connection_pool=pool), redis.Redis.from_url(redis_url)
    lanes = Lanes()
    lane = lanes.sync(client)
    replies: list[object] = []
    worker = threading.Thread(target=lambda: replies.append(lane.call(("BLPOP", "q", "30"))))
    worker.start()
    _wait(lambda: _blocked(admin, 1))  # the pool's only connection is out, mid-command
    lanes.observe(True)
    admin.lpush("q", "x")
    worker.join(30)
    assert replies == [[b"q", b"x"]]
    # The connection went back to the pool, not into the list observe() set aside.
    assert not pool._in_use_connections
    assert client.ping()  # through execute_command: the pool still has its one connection
    lanes.observe(False)
    assert lane.call(("ECHO", "again")) == b"again"
    lanes.close()
    assert not pool._in_use_connections
    client.close()
    admin.close()


def test_toggling_observation_under_load_loses_no_connection(redis_url: str) -> None:
    pool = redis.ConnectionPool.from_url(redis_url, max_connections=8)
    client = redis.Redis(connection_pool=pool)
    lanes = Lanes()
    stop = threading.Event()
    failures: list[BaseException] = []
    done = [0] * 4

    def work(n: int) -> None:
        try:
            while not stop.is_set():
                assert lanes.sync(client).call(("ECHO", str(n))) == str(n).encode()
                done[n] += 1
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for i in range(400):
        lanes.observe(i % 2 == 0)
        if i % 50 == 0:
            start = sum(done)
            _wait(lambda start=start: sum(done) > start + 4 or bool(failures))  # type: ignore[misc]
    stop.set()
    for t in threads:
        t.join(30)
    assert failures == []  # a leaking lane runs out of the pool's 8 connections
    lanes.observe(False)
    lanes.close()
    assert not pool._in_use_connections
    client.close()


async def test_the_asyncio_lane_gives_kept_connections_back_while_observed(
    redis_url: str,
) -> None:
    pool = redis.asyncio.ConnectionPool.from_url(redis_url, max_connections=2)
    client, admin = redis.asyncio.Redis(connection_pool=pool), redis.Redis.from_url(redis_url)
    lanes = Lanes()
    lane = lanes.asyncio(client)
    await lane.call(("SET", "k", "v"))
    # Two commands at once: two kept connections, all the pool has.
    assert await asyncio.gather(lane.call(("ECHO", "a")), lane.call(("ECHO", "b"))) == [b"a", b"b"]
    assert len(pool._in_use_connections) == 2
    blocked = asyncio.create_task(lane.call(("BLPOP", "q", "30")))  # one of them in flight
    await asyncio.to_thread(_wait, lambda: _blocked(admin, 1))
    lanes.observe(True)
    admin.lpush("q", "x")
    assert await blocked == [b"q", b"x"]
    # The first observed command hands the kept ones back before it needs one itself: with
    # both still kept, the pool (max 2) would have none left for it.
    assert await lane.call(("GET", "k")) == b"v"
    assert not pool._in_use_connections
    lanes.observe(False)
    assert await lane.call(("GET", "k")) == b"v"
    await lanes.aclose()
    assert not pool._in_use_connections
    await client.aclose()
    admin.close()


def test_observation_starting_between_the_lean_check_and_the_idle_list_parks_nothing(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The narrowest window: observe(True) runs after call() saw the lane lean but before it
    # took the (new, empty) idle list. The connection it then keeps must not stay parked
    # out of the pool while the lane is observed.
    import os as real_os

    from freshlink.backends import _lean

    client = redis.Redis.from_url(redis_url)
    lane = Lane(client)
    fired: list[bool] = []

    class ObserveFirst:
        """``os`` for the lane: its first getpid() (inside call()) starts observation."""

        def getpid(self) -> int:
            if not fired:
                fired.append(True)
                lane.observe(True)
            return real_os.getpid()

    monkeypatch.setattr(_lean, "os", ObserveFirst())
    assert lane.call(("PING",)) == b"PONG"
    monkeypatch.setattr(_lean, "os", real_os)
    assert fired
    assert lane._idle == []
    assert not client.connection_pool._in_use_connections
    lane.close()
    client.close()
