"""Redis-specific guarantees: round trips, channel loss, restarts, outages, clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from freshlink import Cache, Event, InvalidationError, Local
from freshlink.backends import waiters
from freshlink.backends._scripts import NOTICE_MAX
from freshlink.backends.redis import server_identity
from freshlink.testing import RedisServer

pytestmark = pytest.mark.redis


class Monitor:
    """Counts the commands clients send (MONITOR), ignoring those run inside scripts."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        assert self._ready.wait(5)

    def _run(self) -> None:
        try:
            with self.client.monitor() as m:
                self._ready.set()
                for cmd in m.listen():
                    if self._stop.is_set():
                        break
                    if cmd.get("client_type") != "lua":
                        self.lines.append(cmd["command"])
        except redis.ConnectionError:
            pass  # the server went away (a test restarts it); nothing left to count

    def mark(self) -> None:
        # Connections opened in the background (a pool's warm-up) are not an operation's
        # commands: start once no connection has been opened for 50 ms.
        admin = redis.Redis(connection_pool=self.client.connection_pool)
        seen = -1
        for _ in range(100):
            now = admin.info("stats")["total_connections_received"]
            if now == seen:
                break
            seen = now
            time.sleep(0.05)
        # A PING through another client marks the start; commands are in server order.
        redis.Redis(connection_pool=self.client.connection_pool).execute_command(
            "ECHO", "freshlink-mark"
        )
        time.sleep(0.05)

    def since_mark(self) -> list[str]:
        self.mark_end()
        idx = max(i for i, c in enumerate(self.lines) if "freshlink-mark" in c)
        return [c for c in self.lines[idx + 1 :] if "freshlink-end" not in c]

    def mark_end(self) -> None:
        redis.Redis(connection_pool=self.client.connection_pool).execute_command(
            "ECHO", "freshlink-end"
        )
        time.sleep(0.1)

    def close(self) -> None:
        self._stop.set()


@pytest.fixture
def monitor(redis_url: str) -> Iterator[Monitor]:
    m = Monitor(redis_url)
    yield m
    m.close()


def commands(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        name = line.split()[0].upper()
        if name in {"PING", "ECHO", "MONITOR"}:
            continue
        out.append(name)
    return out


def test_warm_hit_is_one_command_and_miss_two(
    make_redis_cache: Callable[..., Cache], monitor: Monitor
) -> None:
    cache = make_redis_cache()

    @cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}", "user:{user_id}"])
    def get_loan(loan_id: int, user_id: int) -> dict[str, int]:
        return {"id": loan_id}

    get_loan(99, 2)  # connect and load the scripts before counting
    get_loan(99, 2)
    monitor.mark()
    get_loan(1, 2)
    cold = commands(monitor.since_mark())
    monitor.mark()
    get_loan(1, 2)
    warm = commands(monitor.since_mark())
    assert warm == ["EVALSHA"], warm
    # READ (which takes the fill's lease on a miss) and WRITE: two scripts, nothing else
    assert cold == ["EVALSHA"] * 2, cold


def test_bounded_l1_hit_sends_nothing(
    make_redis_cache: Callable[..., Cache], monitor: Monitor
) -> None:
    cache = make_redis_cache(local=Local(max_staleness=0.5))
    assert cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]

    @cache.cached(ttl=60)
    def f(x: int) -> int:
        return x

    f(1)
    monitor.mark()
    for _ in range(100):
        f(1)
    assert commands(monitor.since_mark()) == []


def test_strict_l1_hit_reads_generations_only(
    make_redis_cache: Callable[..., Cache], monitor: Monitor
) -> None:
    cache = make_redis_cache(local=Local(mode="strict"))
    hits: list[Any] = []
    cache.events.on("hit", hits.append)

    @cache.cached(ttl=60, tags=["t"])
    def f(x: int) -> int:
        return x

    f(1)
    f(1)  # loads the generation-check script
    monitor.mark()
    f(1)
    assert commands(monitor.since_mark()) == ["EVALSHA"]
    assert hits[-1].tier == "l1"


def test_bounded_channel_loss_flushes_and_bypasses_l1(
    make_redis_cache: Callable[..., Cache], redis_server: RedisServer
) -> None:
    writer = make_redis_cache()
    reader = make_redis_cache(local=Local(max_staleness=0.1))
    listener = reader.backend.listener  # type: ignore[attr-defined]
    assert listener.alive.wait(5)
    db = {"v": 1}

    @reader.cached(ttl=60, tags=["v"])
    def read() -> int:
        return db["v"]

    assert read() == 1
    assert len(reader.near) == 1  # type: ignore[arg-type]
    redis_server.cli("CLIENT", "KILL", "TYPE", "pubsub")
    db["v"] = 2
    writer.invalidate("v")  # published while the reader is not subscribed: lost
    t0 = time.monotonic()
    while True:
        began = time.monotonic()  # the bound is on when a read starts, not when it is checked
        if read() == 2:
            break
        assert began - t0 < 0.1 + 0.05, "old value served beyond the bound"
        time.sleep(0.002)
    # The channel heals by itself and L1 is trusted again.
    deadline = time.monotonic() + 5
    while not (listener.connected.is_set() and listener.alive.is_set()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    tiers: list[str | None] = []
    reader.events.on("hit", lambda e: tiers.append(e.tier))
    read()
    read()
    assert "l1" in tiers


def test_restart_from_older_snapshot_resurrects_nothing(caches: list[Cache]) -> None:
    with RedisServer(persist=True) as server:
        db = {"link": "expired"}
        cache = Cache(server.url, namespace="snap")
        caches.append(cache)
        loads = []

        @cache.cached(ttl=600, key="loan:{loan_id}", tags=["loan:{loan_id}"])
        def link(loan_id: int) -> str:
            loads.append(loan_id)
            return db["link"]

        assert link(7) == "expired"
        server.cli("SAVE")  # the snapshot holds the entry and its generations
        db["link"] = "renewed"
        cache.invalidate("loan:7")
        assert link(7) == "renewed"
        server.kill()  # no save on SIGKILL: the restart loads the older snapshot
        server.start()
        assert (
            server.cli("EXISTS", cache.keyspace.entry(link.key(7))) == "1"
        )  # the old entry is back
        db["link"] = "renewed-2"
        assert link(7) == "renewed-2"  # ... but it is never valid again
        assert len(loads) == 3


def test_flushall_and_restart_keep_l1_honest(
    make_redis_cache: Callable[..., Cache], redis_server: RedisServer
) -> None:
    reader = make_redis_cache(local=Local(max_staleness=0.1))
    writer = make_redis_cache()
    assert reader.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    db = {"v": 1}

    @reader.cached(ttl=60, tags=["v"])
    def read() -> int:
        return db["v"]

    assert read() == 1
    redis_server.cli("FLUSHALL")
    db["v"] = 2
    writer.invalidate("v")  # re-creates the lost generation, then bumps it
    time.sleep(0.15)
    assert read() == 2
    redis_server.restart()
    db["v"] = 3
    deadline = time.monotonic() + 5
    while True:
        try:
            writer.invalidate("v")
            break
        except InvalidationError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    time.sleep(0.15)
    assert read() == 3


async def test_warm_reads_survive_a_script_flush(
    make_redis_cache: Callable[..., Cache], redis_server: RedisServer
) -> None:
    # The warm read sends its script directly; NOSCRIPT (a flushed or restarted server) must
    # reload it and still answer from the stored entry, on the sync and the async path.
    cache = make_redis_cache()
    loads: list[int] = []

    @cache.cached(ttl=60, tags=["loan:{k}"])
    def get(k: int) -> int:
        loads.append(k)
        return k * 10

    @cache.cached(ttl=60, tags=["loan:{k}"])
    async def aget(k: int) -> int:
        loads.append(-k)
        return k * 10

    assert get(1) == 10
    assert await aget(2) == 20
    assert get(1) == 10
    assert await aget(2) == 20  # both warm: the direct path
    for _ in range(2):
        redis_server.cli("SCRIPT", "FLUSH")
        assert get(1) == 10
        redis_server.cli("SCRIPT", "FLUSH")
        assert await aget(2) == 20
    assert loads == [1, -2]


def _fill_notices(sub: Any, end: Callable[[], object]) -> list[bytes]:
    """The fill notices received before the marker that ``end`` publishes on the channel."""
    end()
    seen: list[bytes] = []
    while True:
        msg = sub.get_message(timeout=5)
        assert msg is not None, "the end marker never came"
        if msg["type"] != "message":
            continue
        if msg["data"] == b"end":
            return seen
        seen.append(msg["data"])


def test_fill_notices_go_out_only_when_a_process_waits(
    make_redis_cache: Callable[..., Cache], redis_url: str, redis_server: RedisServer
) -> None:
    leader, waiter = make_redis_cache(namespace="fills"), make_redis_cache(namespace="fills")
    admin = redis.Redis.from_url(redis_url)
    sub = admin.pubsub()
    sub.subscribe(leader.keyspace.fills)

    def end() -> object:
        return admin.publish(leader.keyspace.fills, "end")

    go, loads = threading.Event(), []

    def load(k: int) -> int:
        loads.append(k)
        if k == 7:
            assert go.wait(10)
        return k * 10

    lead = leader.cached(ttl=60, key="loan:{k}")(load)
    follow = waiter.cached(ttl=60, key="loan:{k}")(load)
    assert lead(1) == 10  # two fills under a lease, nobody waiting
    assert lead(2) == 20
    assert _fill_notices(sub, end) == []

    first = threading.Thread(target=lead, args=(7,))
    first.start()
    entry = leader.keyspace.entry(lead.key(7))
    assert follow.key(7) == lead.key(7)
    got: list[int] = []
    second = threading.Thread(target=lambda: got.append(follow(7)))
    second.start()
    deadline = time.monotonic() + 10
    # The miss's lease is held in the entry key; the second caller found it taken, marked it
    # ("+") and waits.
    while not (admin.get(entry) or b"").endswith(b"+"):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go.set()
    first.join(10)
    second.join(10)
    assert got == [70]
    assert loads == [1, 2, 7]  # the waiter was served the leader's fill
    notices = _fill_notices(sub, end)
    # One notice, carrying the stored entry (see the next test).
    assert len(notices) == 1
    assert notices[0].startswith(b"ok\n" + entry.encode() + b"\n")
    assert admin.get(entry).startswith(b"E")  # the entry took the lease's place


@pytest.mark.parametrize("size", [100, NOTICE_MAX + 1])
def test_a_waiter_takes_the_fill_from_its_notice_without_reading_again(
    make_redis_cache: Callable[..., Cache], redis_url: str, size: int, monkeypatch: Any
) -> None:
    # A waiting process used to re-read the entry once the notice said it was stored: one
    # more round trip at the end of every waiting process's stampede. The notice now carries
    # an entry up to NOTICE_MAX bytes; a larger one is still re-read.
    leader, waiter = make_redis_cache(namespace="carry"), make_redis_cache(namespace="carry")
    # No periodic re-check within the test (it could find the fill before the notice does).
    monkeypatch.setattr(waiters, "_recheck_every", lambda channel: 30.0)
    go, loads = threading.Event(), []

    def load(k: int) -> str:
        loads.append(k)
        assert go.wait(10)
        return "é" * (size // 2) + "\n" * (size % 2)  # UTF-8 and a newline in the payload

    lead = leader.cached(ttl=60, key="loan:{k}", tags=["borrower:{k}"])(load)
    follow = waiter.cached(ttl=60, key="loan:{k}", tags=["borrower:{k}"])(load)
    backend: Any = waiter._engine.backend
    reads: list[str] = []
    original = backend.read_lease

    def read_lease(key: str, names: Any, ttl: float, keep: float = 0.0) -> Any:
        reads.append(key)
        return original(key, names, ttl, keep)

    backend.read_lease = read_lease
    # The waiter's channel is subscribed before it waits: a notice published while it was
    # still connecting is lost, and the waiter would find the fill at the lease's end instead.
    assert waiter.backend.ensure_listener().connected.wait(5)  # type: ignore[attr-defined]
    admin = redis.Redis.from_url(redis_url)
    entry = leader.keyspace.entry(lead.key(3))
    first = threading.Thread(target=lead, args=(3,))
    first.start()
    deadline = time.monotonic() + 10
    while not (admin.get(entry) or b"").startswith(b"L"):  # the leader's lease: it loads
        assert time.monotonic() < deadline
        time.sleep(0.01)
    got: list[str] = []
    second = threading.Thread(target=lambda: got.append(follow(3)))
    second.start()
    # The read that found the lease taken, and the re-check once it registered for the notice.
    while len(reads) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    go.set()
    first.join(10)
    second.join(10)
    assert got == ["é" * (size // 2) + "\n" * (size % 2)]
    assert loads == [3]  # one load, in the leader
    # No read after the notice, unless it could not carry the entry.
    assert len(reads) == (2 if size <= NOTICE_MAX else 3)
    # What the waiter was given is what it then reads from Redis, stamps and all.
    assert follow(3) == got[0]
    assert len(reads) == (3 if size <= NOTICE_MAX else 4)


def test_a_fill_notice_read_late_never_serves_a_value_from_before_a_write(
    make_redis_cache: Callable[..., Cache], redis_url: str, monkeypatch: Any
) -> None:
    # Found by the multi-process torture test on a busy host: a waiter took the entry of a
    # fill notice its channel delivered late. That fill was stored (and its notice published)
    # before a write that was acknowledged before the waiter's read began: a stale read in
    # strict mode. The lag is made here by holding back c's notices where its channel hands
    # them to its waiters (every notice is still delivered, in order).
    monkeypatch.setattr(waiters, "_recheck_every", lambda channel: 30.0)
    held: list[tuple[Any, str, str]] = []
    holding = threading.Event()
    deliver = waiters.Waiters.notify

    def late(self: Any, status: str, rest: str) -> None:
        if holding.is_set() and self is c.backend._waiters:  # type: ignore[attr-defined]
            held.append((self, status, rest))
        else:
            deliver(self, status, rest)

    monkeypatch.setattr(waiters.Waiters, "notify", late)
    a, b, c = (make_redis_cache(namespace="late", local=None) for _ in range(3))
    db = {"v": 1}
    loading = {1: threading.Event(), 2: threading.Event()}
    gate = {1: threading.Event(), 2: threading.Event()}

    def load(k: int) -> int:
        v = db["v"]
        loading[v].set()
        assert gate[v].wait(10)
        return v

    fa, fb, fc = (cache.cached(ttl=60, key="loan:{k}")(load) for cache in (a, b, c))
    admin = redis.Redis.from_url(redis_url)
    entry = a.keyspace.entry(fa.key(1))
    assert c.backend.ensure_listener().connected.wait(5)  # type: ignore[attr-defined]

    def until(check: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 10
        while not check():
            assert time.monotonic() < deadline
            time.sleep(0.005)

    # a fills version 1 while b waits for it, so the fill's notice goes out.
    got_b: list[int] = []
    first = threading.Thread(target=fa, args=(1,))
    first.start()
    assert loading[1].wait(10)
    waiter_b = threading.Thread(target=lambda: got_b.append(fb(1)))
    waiter_b.start()
    until(lambda: (admin.get(entry) or b"").endswith(b"+"))
    holding.set()  # c's channel falls behind from here
    gate[1].set()
    first.join(10)
    waiter_b.join(10)
    assert got_b == [1]
    until(lambda: len(held) == 1)  # the notice of version 1's fill, not yet handed over
    db["v"] = 2
    fa.invalidate(1)  # the write, acknowledged
    second = threading.Thread(target=fa, args=(1,))  # a fills version 2
    second.start()
    assert loading[2].wait(10)
    got_c: list[int] = []
    reader = threading.Thread(target=lambda: got_c.append(fc(1)))  # begins after the ack
    reader.start()
    until(lambda: entry in c.backend._waiters._by_key)  # type: ignore[attr-defined]
    holding.clear()
    for args in held:  # the late notice of version 1 arrives first
        deliver(*args)
    gate[2].set()
    second.join(10)
    reader.join(10)
    assert got_c == [2]


def test_redis_down_reads_fall_through_and_invalidations_raise(
    make_redis_cache: Callable[..., Cache], redis_server: RedisServer
) -> None:
    cache = make_redis_cache(local=Local(max_staleness=0.1))
    db = {"v": 1}
    errors: list[Any] = []
    cache.events.on("error", errors.append)

    @cache.cached(ttl=60, tags=["v"])
    def read() -> int:
        return db["v"]

    assert read() == 1
    redis_server.stop()
    try:
        db["v"] = 2
        t0 = time.monotonic()
        assert read() == 2  # L1 is not trusted without the channel; loader serves
        assert time.monotonic() - t0 < 1.0  # refused connections cost milliseconds
        with pytest.raises(InvalidationError):
            cache.invalidate("v")
        assert len(cache.near) == 0  # type: ignore[arg-type]
        assert errors
    finally:
        redis_server.start()
    deadline = time.monotonic() + 5
    while read() != 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_paused_redis_costs_bounded_time(
    make_redis_cache: Callable[..., Cache], redis_server: RedisServer
) -> None:
    cache = make_redis_cache()

    @cache.cached(ttl=60)
    def read() -> int:
        return 1

    read()
    redis_server.pause()
    try:
        t0 = time.monotonic()
        assert read() == 1
        assert time.monotonic() - t0 < 2.0  # 0.25 s socket timeout, one retry
    finally:
        redis_server.resume()


@pytest.mark.parametrize("protocol", [2, 3])
def test_ready_client_passed_in(redis_url: str, caches: list[Cache], protocol: int) -> None:
    client = redis.Redis.from_url(redis_url, protocol=protocol)
    cache = Cache(client, namespace=f"p{protocol}", local=Local(max_staleness=0.2))
    caches.append(cache)
    assert cache.backend.listener.alive.wait(5)  # type: ignore[attr-defined]
    calls = []

    @cache.cached(ttl=60, tags=["t"])
    def f() -> int:
        calls.append(1)
        return len(calls)

    assert f() == 1
    assert f() == 1
    cache.invalidate("t")
    assert f() == 2


async def test_async_client_passed_in(redis_url: str, caches: list[Cache]) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    cache = Cache(client, namespace="async")
    caches.append(cache)
    calls = []

    @cache.cached(ttl=60, tags=["t"])
    async def f() -> int:
        calls.append(1)
        return len(calls)

    assert await f() == 1
    assert await f() == 1
    await cache.ainvalidate("t")
    assert await f() == 2
    await client.aclose()


def test_namespaces_are_isolated(make_redis_cache: Callable[..., Cache]) -> None:
    a = make_redis_cache(namespace="tenant-a")
    b = make_redis_cache(namespace="tenant-b")
    a.set("k", "a", tags=["t"])
    b.set("k", "b", tags=["t"])
    assert a.get("k") == "a"
    assert b.get("k") == "b"
    a.invalidate("t")
    assert a.get("k") is None
    assert b.get("k") == "b"


def test_bad_url_is_a_configuration_error() -> None:
    from freshlink import ConfigurationError

    with pytest.raises(ConfigurationError, match="scheme"):
        Cache("mysql://localhost")


def test_client_with_decoded_responses_is_refused(redis_url: str) -> None:
    from freshlink import ConfigurationError

    with pytest.raises(ConfigurationError, match="decode_responses"):
        Cache(redis.Redis.from_url(redis_url, decode_responses=True))


def test_user_connect_hook_is_kept_and_run_id_still_learned(
    redis_url: str, caches: list[Cache]
) -> None:
    seen: list[Any] = []

    def user_hook(conn: Any) -> None:
        seen.append(conn)
        conn.on_connect()

    client = redis.Redis.from_url(redis_url, redis_connect_func=user_hook)
    cache = Cache(client, namespace="hooked")
    caches.append(cache)
    cache.set("k", 1)
    assert cache.get("k") == 1
    assert seen  # the user's hook ran
    backend = cache.backend.inner  # type: ignore[attr-defined]
    assert backend._run_id == server_identity(client.info())


def test_waiters_take_over_when_the_loading_process_dies(
    make_redis_cache: Callable[..., Cache],
) -> None:
    cache = make_redis_cache(lease_ttl=0.5)
    loads = []

    @cache.cached(ttl=60, key="k")
    def f() -> str:
        loads.append(1)
        return "value"

    # A "process" took the fill lease and died without writing or releasing it.
    token, _left = cache.backend.lease(cache.keyspace.entry(f.key()), 0.5)
    assert token is not None
    t0 = time.monotonic()
    assert f() == "value"  # waits for the lease to expire (no polling), then takes over
    waited = time.monotonic() - t0
    assert 0.3 < waited < 3.0
    assert loads == [1]


def test_remote_loader_error_reaches_waiters_who_then_load_once_themselves(
    make_redis_cache: Callable[..., Cache],
) -> None:
    leader = make_redis_cache()
    waiter = make_redis_cache()
    handed_on: list[Event] = []
    waiter.events.on("remote_failure", handed_on.append)

    @waiter.cached(ttl=60, key="k", code_identity=False)
    def f() -> str:
        return "loaded by the waiter"

    ekey = waiter.keyspace.entry(f.key())
    token, _ = leader.backend.lease(ekey, 5.0)
    assert token is not None
    result: list[object] = []

    def call() -> None:
        try:
            result.append(f())
        except Exception as exc:
            result.append(exc)

    t = threading.Thread(target=call)
    t.start()
    time.sleep(0.2)  # the waiter is asleep on the fill channel
    leader.backend.release(ekey, token, "LookupError: loan 7 not found")
    t.join(5)
    assert result == ["loaded by the waiter"]  # not the other process's failure
    assert [str(e.error) for e in handed_on] == ["LookupError: loan 7 not found"]


@pytest.mark.redis
async def test_subclasses_of_redis_py_clients_are_accepted(redis_url: str) -> None:
    # Detected with isinstance, not by module name: a subclass (an app's own client class,
    # fakeredis' FakeRedis) was refused as "not a str or a redis-py client".
    class AppRedis(redis.Redis):
        pass

    class AppAsyncRedis(redis.asyncio.Redis):
        pass

    client = AppRedis.from_url(redis_url)
    aclient = AppAsyncRedis.from_url(redis_url)
    sync_cache, async_cache = Cache(client, namespace="sub"), Cache(aclient, namespace="sub")
    try:
        sync_cache.set("k", 1)
        assert sync_cache.get("k") == 1
        assert await async_cache.aget("k") == 1
    finally:
        sync_cache.close()
        await async_cache.aclose()
        client.close()
        await aclient.aclose()


def test_a_redis_server_never_started_leaves_no_directory() -> None:
    import tempfile

    before = set(Path(tempfile.gettempdir()).glob("freshlink-redis-*"))
    RedisServer()  # made, never started (a fixture that failed early, say)
    assert set(Path(tempfile.gettempdir()).glob("freshlink-redis-*")) == before


def test_fills_extend_a_shared_tag_once_and_every_generation_outlives_its_entries(
    make_redis_cache: Callable[..., Cache], redis_url: str
) -> None:
    cache = make_redis_cache(namespace="keep")
    admin = redis.Redis.from_url(redis_url)

    @cache.cached(ttl=60, key="loan:{k}", tags=["borrower:7", "branch:1"])
    def loan(k: int) -> int:
        return k

    def pexpires() -> int:
        return int(admin.info("commandstats").get("cmdstat_pexpire", {}).get("calls", 0))

    before = pexpires()
    # The miss's read creates the own key's generation and both tags to outlive the entry
    # (the fill's TTL is known when it reads), and the entry's SET carries its own expiry.
    assert loan(1) == 1
    first = pexpires() - before
    cache.backend.kept._until.clear()  # type: ignore[attr-defined]  # as a process new to them
    before = pexpires()
    assert loan(2) == 2  # its own key's generation is new; the two tags are extended
    second = pexpires() - before
    before = pexpires()
    assert loan(3) == 3  # the tags were just extended by this process: skipped
    third = pexpires() - before
    assert (first, second, third) == (0, 2, 0)
    for k in (1, 2, 3):
        entry = cache.keyspace.entry(loan.key(k))
        names = cache.keyspace.names(loan.key(k), ["borrower:7", "branch:1"])
        left = admin.pttl(entry)
        assert 0 < left <= 60_000
        assert all(admin.pttl(name) >= left for name in names), names
