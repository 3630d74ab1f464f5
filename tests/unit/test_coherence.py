"""The coherence model on the embedded backend: stale sets, joins and write-through races."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from freshlink import Cache, Local
from freshlink.backends.base import Entry


class ControlledLoader:
    """A loader that reads the source, then waits to be released before returning."""

    def __init__(self) -> None:
        self.value = "old"
        self.read_done = threading.Event()
        self.release = threading.Event()
        self.block = True
        self.loads = 0

    def __call__(self) -> str:
        self.loads += 1
        seen = self.value  # read the source of truth ...
        if self.block:
            self.block = False
            self.read_done.set()
            assert self.release.wait(5)  # ... and return late, after the write
        return seen


@pytest.mark.parametrize("local", [Local(mode="strict"), None], ids=["l1", "no-l1"])
def test_stale_set_race_can_never_make_old_value_readable(local: Local | None) -> None:
    cache = Cache(local=local)
    src = ControlledLoader()

    @cache.cached(ttl=60, tags=["loan:{loan_id}"])
    def get_link(loan_id: int) -> str:
        return src()

    @cache.invalidates("loan:{loan_id}")
    def renew(loan_id: int) -> None:
        src.value = "renewed"

    results: dict[str, str] = {}
    slow = threading.Thread(target=lambda: results.setdefault("slow", get_link(7)))
    slow.start()
    assert src.read_done.wait(5)  # the loader has read "old"
    renew(7)  # the write is acknowledged here
    # A read that starts now must not join the slow flight (it read older generations).
    assert get_link(7) == "renewed"
    src.release.set()
    slow.join()
    assert results["slow"] == "old"  # allowed: that read began before the write
    # The late fill was stamped with old generations: never readable afterwards.
    for _ in range(3):
        assert get_link(7) == "renewed"


def test_entry_with_old_stamps_is_a_miss_even_if_stored() -> None:
    cache = Cache(local=None)
    calls = 0

    @cache.cached(ttl=60, tags=["t"])
    def f() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert f() == 1
    key = f.key()
    names = cache.keyspace.names(key, ["t"])
    old = cache.backend.current(names)
    cache.invalidate("t")
    # Simulate a buggy or racing writer that stores an entry stamped with old generations.
    payload = cache.codec.encode(99, cache._engine.entries.context(key, names, old))
    cache.backend._store(cache.keyspace.entry(key), Entry(payload, names, old, 0.0, None), None)  # type: ignore[attr-defined]
    assert f() == 2


def test_invalidation_is_o1_and_only_bumps_named_generations() -> None:
    cache = Cache()
    backend = cache.backend
    names = [cache.keyspace.tag("a"), cache.keyspace.tag("b")]
    before = backend.current(names)
    cache.invalidate("a")
    after = backend.current(names)
    assert after[0] == before[0] + 1
    assert after[1] == before[1]


def test_missing_generation_is_unknown_not_zero() -> None:
    cache = Cache()
    g1 = cache.backend.current(["x:t:fresh"])
    assert g1[0] > 0
    assert Cache().backend.current(["x:t:fresh"]) != g1  # a new store draws anew


def test_write_through_out_of_order_never_leaves_older_value_valid() -> None:
    cache = Cache(local=None)
    loads = 0

    @cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}"])
    def get_loan(loan_id: int) -> str:
        nonlocal loads
        loads += 1
        return "from-db"

    key = get_loan.key(1)
    names = cache.keyspace.names(key, get_loan.tags(1))
    # Writers A and B both read generations before writing.
    exp_a = cache.backend.current(names)
    exp_b = cache.backend.current(names)
    # B finishes first and stores; A finishes later with an older value: A must not store.
    writes = cache._engine.writes
    writes.run(writes.store("w", key, names, exp_b, "B", cache.freshness))
    writes.run(writes.store("w", key, names, exp_a, "A", cache.freshness))
    assert get_loan(1) == "from-db"
    assert loads == 1


def test_writer_reads_its_own_write_through_l1() -> None:
    cache = Cache()
    state = {"v": 1}

    @cache.cached(ttl=60, tags=["s"])
    def read() -> int:
        return state["v"]

    @cache.updates(read)
    def write(v: int) -> int:
        state["v"] = v
        return v

    assert read() == 1
    for v in range(2, 50):
        write(v)
        assert read() == v


def test_values_are_copies_not_the_loaders_object() -> None:
    cache = Cache()
    original: dict[str, Any] = {"items": [1, 2]}

    @cache.cached(ttl=60)
    def f() -> dict[str, Any]:
        return original

    first = f()
    first["items"].append(3)
    original["items"].append(4)
    assert f() == {"items": [1, 2]}


def test_low_level_get_set_delete() -> None:
    cache = Cache()
    cache.set("greeting", {"hello": "world"}, ttl=30, tags=["g"])
    assert cache.get("greeting") == {"hello": "world"}
    cache.invalidate("g")
    assert cache.get("greeting", "gone") == "gone"
    cache.set("k", 1)
    cache.delete("k")
    assert cache.get("k") is None


async def test_async_low_level() -> None:
    cache = Cache()
    await cache.aset("k", [1, 2], tags=["g"])
    assert await cache.aget("k") == [1, 2]
    await cache.ainvalidate("g")
    assert await cache.aget("k") is None
    await cache.aset("k", 3)
    await cache.adelete("k")
    assert await cache.aget("k") is None
