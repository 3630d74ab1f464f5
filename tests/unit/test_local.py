"""L1 bookkeeping: bounds by entries and bytes, learning generations, trust."""

from __future__ import annotations

import math

import pytest

from freshlink import Cache, ConfigurationError, Local
from freshlink.local import NearCache, NearEntry


def entry(size: int = 0, name: str = "g", gen: int = 1) -> NearEntry:
    return NearEntry("v", (name,), (gen,), math.inf, size=size)


def test_bytes_bound_and_count_bound_together() -> None:
    near = NearCache(Local(maxsize=3, max_bytes=1000))
    for i in range(10):
        near.put(i, entry(size=300))
    assert len(near) == 3  # 900 bytes: both bounds hold
    near.put("big", entry(size=5000))
    assert "big" not in near.data  # larger than the whole budget: not held at all
    near.put("a", entry(size=600))
    assert sum(e.size for e in near.data.values()) <= 1000


def test_cached_values_respect_the_byte_budget() -> None:
    cache = Cache(local=Local(maxsize=1000, max_bytes=50_000))

    @cache.cached(ttl=60)
    def blob(n: int) -> str:
        return "x" * 10_000

    for n in range(30):
        assert len(blob(n)) == 10_000
    assert cache.near is not None
    assert len(cache.near) <= 5


def test_learn_forgets_on_regression_and_bumps_epoch() -> None:
    near = NearCache(Local())
    near.learn(["g"], [5])
    e0 = near.epoch
    near.learn(["g"], [7])
    assert near.known["g"] == 7
    assert near.epoch == e0 + 1
    near.learn(["g"], [6])  # a late reply or a re-created generation: trust neither
    assert "g" not in near.known
    near.put("k", entry(gen=6))
    assert near.get("k", 0.0) is None


def test_distrust_flushes_and_trust_moves_forward_only() -> None:
    near = NearCache(Local())
    near.learn(["g"], [1])
    near.put("k", entry())
    near.trusted_until = -math.inf  # as for a channel-backed L1 before its first proof
    near.trust(10.0)
    near.trust(5.0)
    assert near.trusted_until == 10.0
    assert near.get("k", 1.0) is not None
    near.distrust()
    assert len(near) == 0
    assert near.trusted_until == -math.inf


@pytest.mark.parametrize(
    "kwargs",
    [{"max_bytes": 0}, {"maxsize": 0}, {"mode": "loose"}, {"max_staleness": 0}, {"ttl": -1}],
)
def test_bad_local_options(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Local(**kwargs)  # type: ignore[arg-type]
