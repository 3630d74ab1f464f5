"""The circuit breaker's transitions, with an injected clock."""

from __future__ import annotations

import pytest

from freshlink import ConfigurationError
from freshlink.breaker import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_opens_after_consecutive_failures_and_heals() -> None:
    clock = Clock()
    changes: list[str] = []
    b = CircuitBreaker(
        failures=3, reset_after=1.0, max_reset=8.0, clock=clock, on_change=changes.append
    )
    assert b.allow()
    b.failure()
    b.failure()
    b.success()  # a success resets the count
    b.failure()
    b.failure()
    assert b.state == "closed"
    b.failure()
    assert b.state == "open"
    assert not b.allow()
    clock.t += 0.99
    assert not b.allow()
    clock.t += 0.01
    assert b.allow()  # the probe
    assert b.state == "half_open"
    assert not b.allow()  # only one probe at a time
    b.success()
    assert b.state == "closed"
    assert b.allow()
    assert changes == ["open", "half_open", "closed"]


def test_failed_probe_reopens_with_longer_wait() -> None:
    clock = Clock()
    b = CircuitBreaker(failures=1, reset_after=1.0, max_reset=3.0, clock=clock)
    b.failure()
    clock.t += 1.0
    assert b.allow()
    b.failure()
    assert b.state == "open"
    assert b.reset_after == 2.0
    clock.t += 1.5
    assert not b.allow()
    clock.t += 0.5
    assert b.allow()
    b.failure()
    assert b.reset_after == 3.0  # capped
    clock.t += 3.0
    assert b.allow()
    b.success()
    assert b.reset_after == 1.0


def test_bad_configuration() -> None:
    with pytest.raises(ConfigurationError):
        CircuitBreaker(failures=0)
    with pytest.raises(ConfigurationError):
        CircuitBreaker(reset_after=2, max_reset=1)
