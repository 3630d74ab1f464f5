"""Every freshness policy, exactly: clock and randomness are injected."""

from __future__ import annotations

import math
import random

import pytest

from freshlink import ConfigurationError
from freshlink.policy import (
    Action,
    Freshness,
    backoff,
    decide,
    fresh_horizon,
    jittered_ttl,
    xfetch,
)


def const(x: float):  # type: ignore[no-untyped-def]
    return lambda: x


def test_plain_ttl() -> None:
    p = Freshness(ttl=10)
    assert decide(p, 0, 10, 0, const(0.5)) is Action.SERVE
    assert decide(p, 9.99, 10, 0, const(0.5)) is Action.SERVE
    assert decide(p, 10, 10, 0, const(0.5)) is Action.LOAD
    assert decide(p, 1e9, None, 0, const(0.5)) is Action.SERVE


def test_refresh_ahead() -> None:
    p = Freshness(ttl=10, ahead=0.8)
    assert decide(p, 7.99, 10, 0, const(0.5)) is Action.SERVE
    assert decide(p, 8.0, 10, 0, const(0.5)) is Action.SERVE_AND_REFRESH
    assert decide(p, 9.9, 10, 0, const(0.5)) is Action.SERVE_AND_REFRESH
    assert decide(p, 10, 10, 0, const(0.5)) is Action.LOAD
    assert fresh_horizon(p, 10, 0) == 8.0


def test_stale_while_revalidate() -> None:
    p = Freshness(ttl=10, stale_while_revalidate=5)
    assert decide(p, 10, 10, 0, const(0.5)) is Action.SERVE_STALE_AND_REFRESH
    assert decide(p, 14.99, 10, 0, const(0.5)) is Action.SERVE_STALE_AND_REFRESH
    assert decide(p, 15, 10, 0, const(0.5)) is Action.LOAD
    assert p.retain(10) == 15
    assert p.grace == 5


def test_stale_if_error_only_extends_retention() -> None:
    p = Freshness(ttl=10, stale_if_error=30, stale_while_revalidate=5)
    assert p.retain(10) == 40
    assert decide(p, 16, 10, 0, const(0.5)) is Action.LOAD  # served stale only if load fails


def test_xfetch_formula_exact() -> None:
    # recompute iff -delta * beta * ln(r) >= left
    assert xfetch(left=1.0, load_time=1.0, beta=1.0, rng=const(math.exp(-1.0))) is True
    assert xfetch(left=1.0, load_time=1.0, beta=1.0, rng=const(math.exp(-0.999))) is False
    assert xfetch(left=2.0, load_time=1.0, beta=2.0, rng=const(math.exp(-1.0))) is True
    assert xfetch(left=5.0, load_time=0.0, beta=1.0, rng=const(0.0)) is False  # no delta
    assert xfetch(left=5.0, load_time=1.0, beta=0.0, rng=const(0.0)) is False  # off
    assert xfetch(left=5.0, load_time=1.0, beta=1.0, rng=const(0.0)) is True  # ln 0 = -inf


@pytest.mark.parametrize(
    ("left", "delta", "beta"),
    [(0.5, 0.1, 1.0), (1.0, 0.5, 2.0), (0.05, 0.05, 1.0), (3.0, 1.0, 1.0)],
)
def test_xfetch_probability_matches_the_paper(left: float, delta: float, beta: float) -> None:
    # P[-delta*beta*ln(U) >= left] = P[U <= exp(-left/(delta*beta))] = exp(-left/(delta*beta))
    rng = random.Random(1234)
    n = 200_000
    hits = sum(xfetch(left, delta, beta, rng.random) for _ in range(n))
    expected = math.exp(-left / (delta * beta))
    sigma = math.sqrt(expected * (1 - expected) / n)
    assert abs(hits / n - expected) <= 5 * sigma + 1e-9


def test_fresh_horizon_is_where_xfetch_is_negligible() -> None:
    p = Freshness(ttl=10, beta=1.0)
    h = fresh_horizon(p, 10, 0.1)
    assert h == pytest.approx(10 - 9 * 0.1)
    # at the horizon, the XFetch probability is e**-9
    assert math.exp(-(10 - h) / 0.1) == pytest.approx(math.exp(-9))
    assert fresh_horizon(Freshness(ttl=None), None, 1) is None
    assert fresh_horizon(Freshness(ttl=1, beta=1.0), 1, 10.0) == 0.0


def test_decide_uses_xfetch() -> None:
    p = Freshness(ttl=10, beta=1.0)
    assert decide(p, 9.5, 10, 1.0, const(0.1)) is Action.SERVE_AND_REFRESH  # -ln .1 = 2.3 >= .5
    assert decide(p, 5.0, 10, 1.0, const(0.1)) is Action.SERVE  # 2.3 < 5


def test_jitter() -> None:
    assert jittered_ttl(100, 0.1, const(0.0)) == 100
    assert jittered_ttl(100, 0.1, const(0.5)) == pytest.approx(95)
    assert jittered_ttl(100, 0.0, const(0.5)) == 100
    assert jittered_ttl(None, 0.1, const(0.5)) is None


def test_backoff_is_exponential_with_full_jitter() -> None:
    assert backoff(1, 0.1, 5, const(1.0)) == pytest.approx(0.1)
    assert backoff(2, 0.1, 5, const(1.0)) == pytest.approx(0.2)
    assert backoff(4, 0.1, 5, const(1.0)) == pytest.approx(0.8)
    assert backoff(20, 0.1, 5, const(1.0)) == 5
    assert backoff(3, 0.1, 5, const(0.5)) == pytest.approx(0.2)


def test_negative_caching_and_should_cache() -> None:
    p = Freshness(ttl=60, none_ttl=5)
    assert p.ttl_for(None) == 5
    assert p.ttl_for({"a": 1}) == 60
    assert Freshness(ttl=60).ttl_for(None) == 60
    assert Freshness(cache_none=False).storable(None) is False
    assert Freshness(cache_none=False).storable(0) is True
    only_ok = Freshness(should_cache=lambda r: r.get("ok", False))
    assert only_ok.storable({"ok": True}) is True
    assert only_ok.storable({"ok": False}) is False


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ttl": 0},
        {"ttl": -1},
        {"ahead": 1.0},
        {"ahead": 0},
        {"beta": -1},
        {"jitter": 1},
        {"stale_while_revalidate": -1},
        {"stale_if_error": -0.1},
        {"none_ttl": 0},
        {"should_cache": 3},
    ],
)
def test_bad_options_are_configuration_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        Freshness(**kwargs)  # type: ignore[arg-type]
