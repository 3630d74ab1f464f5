"""L1 bookkeeping: bounds by entries and bytes, learning generations, trust."""

from __future__ import annotations

import math
from typing import Any

import pytest

from freshlink import Cache, ConfigurationError, Local
from freshlink.local import POLL_EVERY, NearCache, NearEntry


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


class FakeChannel:
    """A poll hook: counts polls, and may deliver a message or lose trust while polled."""

    def __init__(self, near: NearCache) -> None:
        self.near = near
        self.polls = 0
        self.busy = False
        self.on_poll: list[Any] = []

    def poll(self) -> bool:
        self.polls += 1
        while self.on_poll:
            self.on_poll.pop(0)()
        return not self.busy


def polled_near() -> tuple[NearCache, FakeChannel]:
    near = NearCache(Local())
    near.trusted_until = -math.inf  # as the engine sets a channel-backed L1 up
    channel = FakeChannel(near)
    near.poll_with(channel.poll)
    near.learn(["g"], [1])
    near.put("k", entry())
    near.trust(100.0)
    return near, channel


def test_hits_poll_the_channel_once_per_poll_period() -> None:
    near, channel = polled_near()
    # The hot path's deadline is the next poll, not the proof: the first hit polls.
    assert near.trusted_until < 100.0
    assert near.get("k", 1.0) is not None
    assert channel.polls == 1
    assert near.trusted_until == 1.0 + POLL_EVERY
    assert near.get("k", 1.0 + POLL_EVERY / 2) is not None  # (the slow path has no deadline)
    near.trust(200.0)  # a proof does not move the deadline past the next poll
    assert near.trusted_until == 1.0 + POLL_EVERY
    assert near.trusted(50.0)
    assert not near.trusted(300.0)
    assert near.get("k", 2.0) is not None
    assert channel.polls == 2


def test_a_message_read_by_the_poll_makes_the_same_hit_a_miss() -> None:
    near, channel = polled_near()
    channel.on_poll.append(lambda: near.heard(["g"], [2]))
    assert near.get("k", 1.0) is None  # drained in this caller: the stamp is no longer known


def test_a_channel_lost_during_the_poll_is_not_trusted_again() -> None:
    near, channel = polled_near()
    channel.on_poll.append(near.distrust)
    assert near.get("k", 1.0) is None
    assert near.trusted_until == -math.inf
    near.put("k", entry())
    assert near.get("k", 2.0) is None
    assert channel.polls == 1  # nothing proved: no poll either, until the next proof


def test_a_busy_channel_is_polled_again_soon() -> None:
    near, channel = polled_near()
    channel.busy = True  # another thread holds it
    assert near.get("k", 1.0) is not None
    assert 1.0 < near.trusted_until < 1.0 + POLL_EVERY


def test_the_hot_path_polls_without_the_slow_path() -> None:
    near, channel = polled_near()
    e = near.data["k"]
    e.epoch = near.epoch
    assert near.repoll(1.0, e)  # nothing arrived: served as validated
    assert channel.polls == 1
    assert near.trusted_until == 1.0 + POLL_EVERY
    channel.on_poll.append(lambda: near.heard(["g"], [2]))
    assert not near.repoll(2.0, e)  # a message read by this poll: the slow path re-checks
    assert near.get("k", 2.0) is None
