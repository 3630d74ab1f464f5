"""The backend conformance suite: every backend keeps the same guarantees.

Use it from a test module by subclassing and providing a ``make_cache`` fixture that returns
a factory of :class:`~freshlink.Cache` objects on the backend under test (each call a new
``Cache``, as a new process would create, sharing the same data)::

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        def make_cache(self, tmp_url):
            return lambda **kw: Cache(tmp_url, **kw)

``shared`` tells whether two caches from the factory share data (False for ``memory://``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from ..backends.base import Entry
from ..cache import Cache
from ..errors import InvalidTagError

__all__ = ["BackendConformance"]

MakeCache = Callable[..., Cache]


class BackendConformance:
    """Tests every backend must pass. Subclass it and define the ``make_cache`` fixture."""

    shared = True
    #: Seconds another process may keep serving an old value after an acknowledged
    #: invalidation (0 for strict modes; ``max_staleness`` for bounded L1).
    staleness = 0.0

    def test_fill_then_hit(self, make_cache: MakeCache) -> None:
        """A second call is served from the cache."""
        cache = make_cache()
        calls = []

        @cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}"])
        def get_loan(loan_id: int) -> dict[str, Any]:
            calls.append(loan_id)
            return {"id": loan_id, "amount": "12.50"}

        assert get_loan(1) == {"id": 1, "amount": "12.50"}
        assert get_loan(1) == {"id": 1, "amount": "12.50"}
        assert calls == [1]

    def test_tag_invalidation_kills_dependents_only(self, make_cache: MakeCache) -> None:
        """Invalidating a tag reloads exactly the entries stamped with it."""
        cache = make_cache()
        calls: list[tuple[int, int]] = []

        @cache.cached(ttl=60, tags=["loan:{loan_id}", "user:{user_id}"])
        def get_loan(loan_id: int, user_id: int) -> int:
            calls.append((loan_id, user_id))
            return loan_id

        for args in ((1, 42), (2, 42), (3, 7)):
            get_loan(*args)
        cache.invalidate("user:42")
        for args in ((1, 42), (2, 42), (3, 7)):
            get_loan(*args)
        assert calls == [(1, 42), (2, 42), (3, 7), (1, 42), (2, 42)]

    def test_invalidation_reaches_other_caches(self, make_cache: MakeCache) -> None:
        """An invalidation through one Cache is seen by another on the same backend."""
        if not self.shared:
            pytest.skip("backend is per-process")
        a, b = make_cache(), make_cache()
        state = {"v": 1}

        def reader(cache: Cache) -> Any:
            @cache.cached(ttl=60, key="v", tags=["v"], code_identity=False)
            def read_v() -> int:
                return state["v"]

            return read_v

        ra, rb = reader(a), reader(b)
        assert ra() == 1
        assert rb() == 1
        state["v"] = 2
        a.invalidate("v")
        assert ra() == 2  # the writer reads its own write at once
        if self.staleness:
            deadline = time.monotonic() + self.staleness
            while rb() != 2:
                assert time.monotonic() < deadline, "staleness bound exceeded"
                time.sleep(0.001)
        assert rb() == 2

    def test_stale_fill_is_dropped_and_never_readable(self, make_cache: MakeCache) -> None:
        """A fill stamped before an invalidation is not stored and cannot be read."""
        cache = make_cache()
        names = cache.keyspace.names("k", ["t"])
        old = cache.backend.current(names)
        cache.invalidate("t")
        payload = cache.codec.encode("stale", cache._engine.entries.context("k", names, old))
        stored = cache.backend.write(
            cache.keyspace.entry("k"), Entry(payload, names, old, time.time(), 60.0), 60.0
        )
        assert stored is False
        assert cache.backend.read(cache.keyspace.entry("k"), names).entry is None
        assert cache.get("k") is None

    def test_missing_generation_is_unknown_not_zero(self, make_cache: MakeCache) -> None:
        """A generation that does not exist is created with a fresh random value."""
        cache = make_cache()
        (g,) = cache.backend.current([cache.keyspace.tag("never-seen")])
        assert g >= 1 << 40
        assert cache.backend.current([cache.keyspace.tag("never-seen")]) == (g,)
        (h,) = cache.backend.current([cache.keyspace.tag("never-seen-2")])
        assert h != g

    def test_invalidate_increments_by_one(self, make_cache: MakeCache) -> None:
        """Invalidation is one increment per tag and touches nothing else."""
        cache = make_cache()
        names = [cache.keyspace.tag("a"), cache.keyspace.tag("b")]
        before = cache.backend.current(names)
        after = cache.backend.invalidate(names[:1])
        assert after == (before[0] + 1,)
        assert cache.backend.current(names) == (before[0] + 1, before[1])

    def test_write_through_stores_and_invalidates(self, make_cache: MakeCache) -> None:
        """@updates stores the writer's value and kills other entries of its tags."""
        cache = make_cache()
        db = {"link": "old"}
        loads = []

        @cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}"])
        def get_link(loan_id: int) -> str:
            loads.append(loan_id)
            return db["link"]

        @cache.cached(ttl=60, tags=["loan:{loan_id}"])
        def summary(loan_id: int) -> str:
            loads.append(-loan_id)
            return "summary:" + db["link"]

        @cache.updates(get_link)
        def renew(loan_id: int) -> str:
            db["link"] = "new"
            return "new"

        get_link(1)
        summary(1)
        renew(1)
        assert get_link(1) == "new"
        assert summary(1) == "summary:new"
        assert loads == [1, -1, -1]

    def test_write_through_out_of_order_degrades(self, make_cache: MakeCache) -> None:
        """Of two writers that read the same generations, only the first to finish stores."""
        cache = make_cache()
        names = cache.keyspace.names("k", ["t"])
        exp = cache.backend.current(names)
        writes = cache._engine.writes
        writes.run(writes.store("w", "k", names, exp, "B", cache.freshness))
        writes.run(writes.store("w", "k", names, exp, "A", cache.freshness))
        assert cache.get("k") is None
        cache.set("k", "C", tags=["t"])
        assert cache.get("k") == "C"

    def test_get_validates_stored_tags(self, make_cache: MakeCache) -> None:
        """``get`` without tags still honours the tags an entry was stored with."""
        cache = make_cache()
        cache.set("greeting", {"hi": [1, 2]}, ttl=60, tags=["g", "h"])
        assert cache.get("greeting") == {"hi": [1, 2]}
        cache.invalidate("h")
        assert cache.get("greeting", "gone") == "gone"

    def test_delete_is_race_safe(self, make_cache: MakeCache) -> None:
        """``delete`` makes the entry invalid; a value is never served after it."""
        cache = make_cache()
        cache.set("k", 1)
        cache.delete("k")
        assert cache.get("k") is None
        cache.set("k", 2)
        assert cache.get("k") == 2

    def test_ttl_expiry(self, make_cache: MakeCache) -> None:
        """Entries expire after their TTL."""
        cache = make_cache()
        calls = []

        @cache.cached(ttl=0.3)
        def f() -> int:
            calls.append(1)
            return len(calls)

        assert f() == 1
        assert f() == 1
        time.sleep(0.45)
        assert f() == 2

    def test_bad_tag_is_rejected_without_side_effects(self, make_cache: MakeCache) -> None:
        """A tag with whitespace raises and invalidates nothing."""
        cache = make_cache()
        cache.set("k", 1, tags=["ok"])
        with pytest.raises(InvalidTagError):
            cache.invalidate("ok", "not ok")
        assert cache.get("k") == 1

    def test_single_flight_threads(self, make_cache: MakeCache) -> None:
        """20 threads missing one key load it once."""
        cache = make_cache()
        loads = []
        gate = threading.Barrier(20)

        @cache.cached(ttl=60)
        def slow() -> int:
            loads.append(1)
            time.sleep(0.2)
            return 7

        out: list[int] = []

        def run() -> None:
            gate.wait()
            out.append(slow())

        threads = [threading.Thread(target=run) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert out == [7] * 20
        assert len(loads) == 1

    def test_loader_error_not_cached(self, make_cache: MakeCache) -> None:
        """A loader that raises caches nothing; the next call runs it again."""
        cache = make_cache()
        calls = []

        @cache.cached(ttl=60)
        def broken() -> int:
            calls.append(1)
            raise LookupError("nope")

        for _ in range(2):
            with pytest.raises(LookupError):
                broken()
        assert len(calls) == 2

    def test_tampered_signed_payload_is_a_miss(self, make_cache: MakeCache) -> None:
        """With ``secret=``, a modified payload is never returned."""
        cache = make_cache(secret="s3cret")
        errors: list[Any] = []
        cache.events.on("error", errors.append)
        cache.set("k", {"amount": "10.00"}, tags=["t"])
        entry = cache.backend.get_entry(cache.keyspace.entry("k"))
        assert entry is not None
        forged = entry.payload.replace(b"10.00", b"99.00")
        assert forged != entry.payload
        bad = Entry(forged, entry.names, entry.stamps, entry.created, entry.ttl)
        assert cache.backend.write(cache.keyspace.entry("k"), bad, 60.0)
        fresh = make_cache(secret="s3cret")  # no L1 copy of the good value
        assert fresh.get("k", "miss") == "miss"
        cache.clear_local()
        assert cache.get("k", "miss") == "miss"
        assert errors

    async def test_async_paths(self, make_cache: MakeCache) -> None:
        """The async API has the same semantics."""
        cache = make_cache()
        calls: list[int] = []

        @cache.cached(ttl=60, tags=["loan:{loan_id}"])
        async def get_loan(loan_id: int) -> int:
            calls.append(loan_id)
            await asyncio.sleep(0.01)
            return loan_id * 10

        results = await asyncio.gather(*(get_loan(1) for _ in range(20)))
        assert results == [10] * 20
        assert calls == [1]
        await cache.ainvalidate("loan:1")
        assert await get_loan(1) == 10
        assert calls == [1, 1]
        await cache.aset("k", [1, "a"], tags=["t"])
        assert await cache.aget("k") == [1, "a"]
        await cache.ainvalidate("t")
        assert await cache.aget("k") is None
        await cache.aclose()
