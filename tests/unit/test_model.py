"""Model-based proof of the coherence guarantees (hypothesis state machines).

A plain dict is the database, the source of truth. Hypothesis drives random interleavings of
cached reads, writes with invalidation (``@cache.invalidates``, ``cache.invalidate``, the
``.invalidate`` handle), write-through updates (``@cache.updates``), two writers finishing out
of order, a write landing while a loader runs (the stale-set race), deploys of a new function
``version=``, clock advances, Redis restarts, evicted generations and (bounded L1) dropped
invalidation channels, through two caches on one backend: ``own`` (the mode under test) and
``other`` (another process: strict, no L1).

After every step both caches read every item, and the model checks:

* **coherence**: the value is the current database value for the current version (strict
  modes and the writing process itself), or, after another process wrote in bounded mode, once
  ``max_staleness`` has passed;
* **no spurious misses**: an item whose shared entry is still valid (not invalidated, not
  expired by the fake clock, not lost in a restart) is served without calling the loader, so a
  cache that simply never caches cannot pass.

The clock is one fake clock injected everywhere it can be (wall clock and monotonic clock of the
cache, and the memory backend's clock); bounded L1 keeps the real monotonic clock because its
trust window is driven by the channel listener's real-time pongs.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import redis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from freshlink import Cache, Local
from freshlink.backends.memory import MemoryBackend
from freshlink.breaker import CircuitBreaker
from freshlink.errors import SerializationError
from freshlink.testing import RedisServer

ITEMS = (0, 1, 2)
TTL = 10.0
STALENESS = 0.05
_namespaces = itertools.count()

items = st.sampled_from(ITEMS)
values = st.integers(1, 10_000)
vias = st.sampled_from(["own", "other"])


class Uncacheable:
    """Nothing the JSON serializer can encode."""


class FakeClock:
    """A clock that only moves when the model says so (whole seconds: exact float sums)."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Setup:
    """One configuration the model runs against."""

    backend: str  # "memory" | "redis"
    local: str | None  # None | "strict" | "bounded" (memory: its default strict L1)
    is_async: bool
    max_examples: int
    steps: int

    @property
    def bounded(self) -> bool:
        return self.local == "bounded"


@dataclass
class Api:
    """The functions of one "process" (one Cache) at the current version."""

    cache: Cache
    read: Any
    write: Any
    update: Any


class CoherenceModel(RuleBasedStateMachine):
    """The reference model: a dict database, two caches, and what each read must return."""

    setup: ClassVar[Setup]
    server: ClassVar[RedisServer | None] = None

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.db = dict.fromkeys(ITEMS, 0)
        self.version = 0
        self.loads: list[tuple[str, int]] = []
        # item -> creation time (fake clock) of its valid entry in the shared backend.
        self.warm: dict[int, float] = {}
        # item -> a write to perform inside the next loader of that item (the stale-set race).
        self.in_loader: dict[int, tuple[str, str, int, int]] = {}
        # item -> a second writer that runs inside the first one (writers out of order).
        self.in_writer: dict[int, tuple[str, str, int, int]] = {}
        self.remote_dirty = False
        # When set, the next write-through returns a value the serializer refuses.
        self.uncacheable = False
        self.disruptions = 0
        self.errors: list[Any] = []
        self.loop = asyncio.new_event_loop() if self.setup.is_async else None
        self.namespace = f"model{next(_namespaces)}"
        self.caches = self._make_caches()
        for cache in self.caches.values():
            cache.events.on("error", self.errors.append)
        self.apis: dict[str, Api] = {}
        self._build()

    # ------------------------------------------------------------------ plumbing

    def _make_caches(self) -> dict[str, Cache]:
        clock = self.clock
        if self.setup.backend == "memory":
            backend = MemoryBackend(clock=clock)
            return {
                "own": Cache(backend=backend, clock=clock, monotonic=clock),
                "other": Cache(backend=backend, local=None, clock=clock, monotonic=clock),
            }
        assert self.server is not None
        url = self.server.url

        def make(local: Local | None, monotonic: Callable[[], float]) -> Cache:
            return Cache(
                url,
                namespace=self.namespace,
                local=local,
                clock=clock,
                monotonic=monotonic,
                # The breaker measures real outages (restarts) in real time.
                breaker=CircuitBreaker(clock=time.monotonic),
            )

        if self.setup.local == "bounded":
            own = make(Local(mode="bounded", max_staleness=STALENESS), time.monotonic)
            listener = own.backend.listener  # type: ignore[attr-defined]
            assert listener.alive.wait(5), "the invalidation channel never came alive"
        elif self.setup.local == "strict":
            own = make(Local(mode="strict"), clock)
        else:
            own = make(None, clock)
        return {"own": own, "other": make(None, clock)}

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a sync function, or run an async one to completion on this model's loop."""
        result = fn(*args)
        if inspect.isawaitable(result):
            assert self.loop is not None
            return self.loop.run_until_complete(result)
        return result

    def _build(self) -> None:
        build = self._build_async if self.setup.is_async else self._build_sync
        self.apis = {who: build(who, cache) for who, cache in self.caches.items()}

    def _build_sync(self, who: str, cache: Cache) -> Api:
        version, db, model = self.version, self.db, self

        @cache.cached(
            ttl=TTL, key="item:{item_id}", tags=["item:{item_id}", "all"], version=version
        )
        def read(item_id: int) -> dict[str, int]:
            model.loads.append((who, item_id))
            value = db[item_id]  # the loader reads the source of truth ...
            action = model.in_loader.pop(item_id, None)
            if action is not None:  # ... and a write lands before it returns
                model.perform(action)
            return {"v": version, "value": value}

        @cache.invalidates("item:{item_id}")
        def write(item_id: int, value: int) -> None:
            db[item_id] = value

        @cache.updates(read)
        def update(item_id: int, value: int) -> dict[str, int]:
            db[item_id] = value
            action = model.in_writer.pop(item_id, None)
            if action is not None:  # another writer starts after us and finishes first
                model.perform(action)
            return model.written(version, value)

        return Api(cache, read, write, update)

    def _build_async(self, who: str, cache: Cache) -> Api:
        version, db, model = self.version, self.db, self

        @cache.cached(
            ttl=TTL, key="item:{item_id}", tags=["item:{item_id}", "all"], version=version
        )
        async def read(item_id: int) -> dict[str, int]:
            model.loads.append((who, item_id))
            value = db[item_id]
            action = model.in_loader.pop(item_id, None)
            if action is not None:
                await model.aperform(action)
            return {"v": version, "value": value}

        @cache.invalidates("item:{item_id}")
        async def write(item_id: int, value: int) -> None:
            db[item_id] = value

        @cache.updates(read)
        async def update(item_id: int, value: int) -> dict[str, int]:
            db[item_id] = value
            action = model.in_writer.pop(item_id, None)
            if action is not None:
                await model.aperform(action)
            return model.written(version, value)

        return Api(cache, read, write, update)

    def written(self, version: int, value: int) -> Any:
        """What a writer returns: the new value, or one the serializer refuses."""
        if self.uncacheable:
            return {"v": version, "value": value, "note": Uncacheable()}
        return {"v": version, "value": value}

    def perform(self, action: tuple[str, str, int, int]) -> None:
        kind, via, item, value = action
        getattr(self.apis[via], kind)(item, value)

    async def aperform(self, action: tuple[str, str, int, int]) -> None:
        kind, via, item, value = action
        await getattr(self.apis[via], kind)(item, value)

    def _wrote(self, *vias: str) -> None:
        # In bounded mode only the writing process reads its own write at once; the model
        # lets max_staleness pass before the next read when another process wrote.
        if self.setup.bounded and "other" in vias:
            self.remote_dirty = True

    def expected(self, item: int) -> dict[str, int]:
        return {"v": self.version, "value": self.db[item]}

    # ------------------------------------------------------------------ the invariant

    @invariant()
    def every_read_sees_the_database(self) -> None:
        if self.remote_dirty:
            time.sleep(STALENESS + 0.02)
            self.remote_dirty = False
        for who in ("own", "other"):
            for item in ITEMS:
                before = len(self.loads)
                got = self.call(self.apis[who].read, item)
                assert got == self.expected(item), (
                    f"{who} read item {item} = {got}, the database says {self.expected(item)}"
                )
                loaded = len(self.loads) > before
                created = self.warm.get(item)
                if created is not None and self.clock() - created < TTL:
                    assert not loaded, f"{who} reloaded item {item} although its entry is valid"
                elif created is not None and not self.setup.bounded:
                    # (Bounded L1 ages its entries on the real monotonic clock.)
                    assert loaded, f"{who} served item {item} past its TTL"
                if loaded:
                    self.warm[item] = self.clock()
        if not self.disruptions:
            assert not self.errors, self.errors

    # ------------------------------------------------------------------ writes

    @rule(item=items, value=values, via=vias)
    def write_then_invalidate(self, item: int, value: int, via: str) -> None:
        self.call(self.apis[via].write, item, value)
        assert self.db[item] == value
        self.warm.pop(item, None)
        self._wrote(via)

    @rule(item=items, value=values, via=vias)
    def write_through(self, item: int, value: int, via: str) -> None:
        got = self.call(self.apis[via].update, item, value)
        assert got == {"v": self.version, "value": value}
        # The entry is stored at once; the shared "all" tag it bumps kills the other items'.
        self.warm = {item: self.clock()}
        self._wrote(via)

    @rule(item=items, value=values, via=vias)
    def write_through_of_a_value_that_cannot_be_cached(
        self, item: int, value: int, via: str
    ) -> None:
        # The write happens; its value cannot be stored, so the write-through must at least
        # invalidate (whether it then raises SerializationError or not).
        self.uncacheable = True
        try:
            self.call(self.apis[via].update, item, value)
        except SerializationError:
            pass
        finally:
            self.uncacheable = False
        assert self.db[item] == value
        self.warm = {}
        self._wrote(via)

    @rule(
        item=items,
        first=values,
        second=values,
        via_first=vias,
        via_second=vias,
        second_kind=st.sampled_from(["write", "update"]),
    )
    def writers_finish_out_of_order(
        self,
        item: int,
        first: int,
        second: int,
        via_first: str,
        via_second: str,
        second_kind: str,
    ) -> None:
        # The first writer reads its generations, writes, then a second writer runs to the end
        # before the first one returns its (older) value: that value must never become valid.
        self.in_writer[item] = (second_kind, via_second, item, second)
        self.call(self.apis[via_first].update, item, first)
        assert item not in self.in_writer
        assert self.db[item] == second
        self.warm = {}
        self._wrote(via_first, via_second)

    @rule(
        item=items,
        value=values,
        reader=vias,
        via=vias,
        kind=st.sampled_from(["write", "update"]),
    )
    def write_lands_while_a_loader_runs(
        self, item: int, value: int, reader: str, via: str, kind: str
    ) -> None:
        api = self.apis[reader]
        self.call(api.read.invalidate, item)  # the handle: this call's entry only
        self.warm.pop(item, None)
        old = self.expected(item)
        self.in_loader[item] = (kind, via, item, value)
        got = self.call(api.read, item)
        assert item not in self.in_loader, "a read after invalidate() did not load"
        assert got == old  # allowed: this read began before the write
        assert self.db[item] == value
        if kind == "update":
            self.warm = {item: self.clock()}
        else:
            self.warm.pop(item, None)
        self._wrote(via)

    @rule(value=values, via=vias)
    def bulk_write_then_invalidate_a_shared_tag(self, value: int, via: str) -> None:
        for item in ITEMS:
            self.db[item] = value + item
        cache = self.caches[via]
        if self.setup.is_async:
            self.call(cache.ainvalidate, "all")
        else:
            cache.invalidate("all")
        self.warm = {}
        self._wrote(via)

    # ------------------------------------------------------------------ the world changes

    @precondition(lambda self: self.version < 3)
    @rule()
    def deploy_a_new_version(self) -> None:
        self.version += 1
        self._build()
        self.warm = {}

    @rule(seconds=st.integers(0, 25))
    def time_passes(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @precondition(lambda self: self.setup.backend == "redis" and self.disruptions < 2)
    @rule()
    def redis_restarts(self) -> None:
        assert self.server is not None
        self.server.restart()
        self.disruptions += 1
        self.warm = {}

    @precondition(lambda self: self.setup.backend == "redis" and self.disruptions < 2)
    @rule()
    def generations_are_evicted(self) -> None:
        # What a maxmemory policy may do: the counters go, the entries stay. A missing
        # generation is unknown, never zero, so no entry stamped with one is valid again.
        assert self.server is not None
        client = redis.Redis.from_url(self.server.url)
        try:
            names = [
                *client.keys(self.namespace + ":t:*"),
                *client.keys(self.namespace + ":k:*"),
            ]
            if names:
                client.delete(*names)
        finally:
            client.close()
        self.warm = {}

    def _redis(self) -> redis.Redis:
        assert self.server is not None
        return redis.Redis.from_url(self.server.url)

    def _recreate(self, name: str, delta: int) -> None:
        """The generation ``name`` evicted and re-created ``delta`` away (if it exists)."""
        client = self._redis()
        try:
            old = client.get(name)
            if old is not None and old.isdigit():
                client.set(name, max(int(old) + delta, 1), px=60_000)
        finally:
            client.close()

    @precondition(lambda self: self.setup.backend == "redis")
    @rule(pick=st.integers(0, 10_000))
    def any_one_key_is_evicted(self, pick: int) -> None:
        # maxmemory with an allkeys-* policy: an entry, a generation or a lease may go at any
        # moment, between any two steps.
        client = self._redis()
        try:
            keys = sorted(client.keys(self.namespace + ":*"))
            if keys:
                client.delete(keys[pick % len(keys)])
        finally:
            client.close()
        self.warm = {}

    @precondition(lambda self: self.setup.backend == "redis")
    @rule(
        item=items,
        tag=st.sampled_from(["item", "all"]),
        delta=st.integers(10**6, 10**12) | st.integers(-(10**12), -(10**6)),
    )
    def a_generation_is_evicted_and_recreated(self, item: int, tag: str, delta: int) -> None:
        # Eviction followed by a re-creation from a random value: higher or lower than before.
        self._recreate(f"{self.namespace}:t:" + (f"item:{item}" if tag == "item" else "all"), delta)
        self.warm = {}

    @precondition(lambda self: self.setup.backend == "redis")
    @rule(item=items, value=values, via=vias, delta=st.integers(-(10**12), 10**12))
    def write_then_its_generation_is_recreated_before_the_message_lands(
        self, item: int, value: int, via: str, delta: int
    ) -> None:
        # The increment and its message leave Redis together, but a process hears the message
        # a little later: the generation may be evicted and re-created in between.
        self.call(self.apis[via].write, item, value)
        self._recreate(f"{self.namespace}:t:item:{item}", delta)
        self.warm = {}
        self._wrote(via)

    @precondition(lambda self: self.setup.bounded)
    @rule()
    def invalidation_channel_drops(self) -> None:
        assert self.server is not None
        self.server.cli("CLIENT", "KILL", "TYPE", "pubsub")

    # ------------------------------------------------------------------ teardown

    def teardown(self) -> None:
        if self.loop is not None:
            for cache in self.caches.values():
                self.loop.run_until_complete(cache.aclose())
            self.loop.close()
        else:
            for cache in self.caches.values():
                cache.close()


def machine_class(setup: Setup, server: RedisServer | None = None) -> type[CoherenceModel]:
    return type(
        "CoherenceModel_" + setup.backend + "_" + str(setup.local),
        (CoherenceModel,),
        {"setup": setup, "server": server},
    )


def run_model(setup: Setup, server: RedisServer | None = None) -> None:
    run_state_machine_as_test(
        machine_class(setup, server),
        settings=settings(
            max_examples=setup.max_examples,
            stateful_step_count=setup.steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


@pytest.fixture(scope="module")
def model_server() -> Iterator[RedisServer]:
    """A redis-server of this module's own: the model restarts it."""
    with RedisServer() as server:
        yield server


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_model_memory(is_async: bool) -> None:
    run_model(Setup("memory", "strict", is_async, max_examples=40, steps=25))


@pytest.mark.redis
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("local", [None, "strict"], ids=["no-l1", "strict-l1"])
def test_model_redis_strict(model_server: RedisServer, local: str | None, is_async: bool) -> None:
    run_model(Setup("redis", local, is_async, max_examples=12, steps=20), model_server)


@pytest.mark.redis
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_model_redis_bounded(model_server: RedisServer, is_async: bool) -> None:
    run_model(Setup("redis", "bounded", is_async, max_examples=8, steps=15), model_server)


# ------------------------------------------------------------------ regressions found by the model


@pytest.mark.parametrize(
    "setup",
    [
        Setup("memory", "strict", False, 1, 1),
        Setup("memory", "strict", True, 1, 1),
        pytest.param(Setup("redis", None, False, 1, 1), marks=pytest.mark.redis),
        pytest.param(Setup("redis", "strict", True, 1, 1), marks=pytest.mark.redis),
    ],
    ids=["memory-sync", "memory-async", "redis-sync", "redis-strict-l1-async"],
)
def test_regression_uncacheable_write_through_must_still_invalidate(
    setup: Setup, request: pytest.FixtureRequest
) -> None:
    # Found by the model: a write-through whose new value the serializer refuses raised
    # SerializationError *before* invalidating, so the write happened and every reader kept
    # being served the old value until its TTL ran out.
    server = request.getfixturevalue("model_server") if setup.backend == "redis" else None
    machine = machine_class(setup, server)()
    try:
        machine.every_read_sees_the_database()
        machine.write_through_of_a_value_that_cannot_be_cached(item=0, value=1, via="own")
        machine.every_read_sees_the_database()
    finally:
        machine.teardown()
