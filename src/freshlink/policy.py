"""Freshness decisions as pure functions: time and randomness are always passed in.

Nothing here does I/O or reads a clock, so every policy is tested exactly
(tests/unit/test_policy.py).
The cache asks :func:`decide` what to do with an entry that is *valid* (its generations are
current); an invalidated entry is never served, whatever these policies say.

Around an entry's expiry (``age`` is seconds since it was stored)::

    age: 0 ........ ahead*ttl ........ ttl ............ ttl + swr ..... ttl + sie
         SERVE      SERVE + refresh    SERVE_STALE + refresh   (only if the loader fails)
                    (or XFetch: with probability growing towards ttl)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any

from .errors import ConfigurationError

__all__ = [
    "Action",
    "Freshness",
    "backoff",
    "check_ttl",
    "decide",
    "fresh_horizon",
    "jittered_ttl",
    "xfetch",
]


def check_ttl(ttl: float | None, what: str = "ttl") -> float | None:
    """Validate a TTL in seconds (None means no expiry)."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise ConfigurationError(
            f"{what} must be a positive number of seconds or None, got {ttl!r}"
        )
    return float(ttl)


def _check_window(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigurationError(f"{what} must be >= 0 seconds, got {value!r}")
    return float(value)


def jittered_ttl(ttl: float | None, jitter: float, rng: Callable[[], float]) -> float | None:
    """Shorten ``ttl`` by a random fraction in ``[0, jitter)`` so entries do not expire together."""
    if ttl is None or jitter <= 0:
        return ttl
    return ttl * (1.0 - jitter * rng())


def xfetch(left: float, load_time: float, beta: float, rng: Callable[[], float]) -> bool:
    """XFetch (Vattani et al., "Optimal Probabilistic Cache Stampede Prevention", 2015).

    Recompute early when ``now - delta * beta * ln(rand()) >= expiry``, i.e. when
    ``-delta * beta * ln(rand()) >= left``: the probability grows as expiry nears and with the
    measured recompute time ``delta`` (``load_time``), so slow loaders start earlier.
    """
    if beta <= 0 or load_time <= 0:
        return False
    r = rng()
    if r <= 0.0:
        return True  # ln(0) = -inf: the formula says recompute
    return -load_time * beta * math.log(r) >= left


def backoff(attempt: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Seconds to wait before retry ``attempt`` (1, 2, ...): exponential with full jitter."""
    return rng() * min(cap, base * 2.0 ** max(attempt - 1, 0))


class Action(Enum):
    """What to do with a valid entry."""

    SERVE = "serve"
    SERVE_AND_REFRESH = "serve_and_refresh"
    SERVE_STALE_AND_REFRESH = "serve_stale_and_refresh"
    LOAD = "load"


@dataclass(frozen=True, slots=True)
class Freshness:
    """The freshness policy of one cached function (defaults come from its Cache)."""

    ttl: float | None = 300.0
    jitter: float = 0.0
    ahead: float | None = None
    beta: float = 0.0
    stale_while_revalidate: float = 0.0
    stale_if_error: float = 0.0
    none_ttl: float | None = None
    cache_none: bool = True
    should_cache: Callable[[Any], bool] | None = None
    retry_base: float = 0.1
    retry_cap: float = 5.0
    expiring_within: float | None = None

    def __post_init__(self) -> None:
        check_ttl(self.ttl)
        if not isinstance(self.jitter, int | float) or not 0 <= self.jitter < 1:
            raise ConfigurationError(f"jitter must be a fraction in [0, 1), got {self.jitter!r}")
        if self.ahead is not None and not (
            isinstance(self.ahead, int | float) and 0 < self.ahead < 1
        ):
            raise ConfigurationError(f"ahead must be a fraction in (0, 1), got {self.ahead!r}")
        if isinstance(self.beta, bool) or not isinstance(self.beta, int | float) or self.beta < 0:
            raise ConfigurationError(f"beta must be >= 0, got {self.beta!r}")
        _check_window(self.stale_while_revalidate, "stale_while_revalidate")
        _check_window(self.stale_if_error, "stale_if_error")
        check_ttl(self.none_ttl, "none_ttl")
        if self.should_cache is not None and not callable(self.should_cache):
            raise ConfigurationError("should_cache must be a callable taking the result")
        if self.expiring_within is not None:
            _check_window(self.expiring_within, "expiring_within")

    def with_(self, **changes: Any) -> Freshness:
        """A copy with some fields changed (keyword arguments already checked: no ``UNSET``)."""
        return replace(self, **changes)

    @property
    def grace(self) -> float:
        """How long past its TTL an entry must be kept (for SWR and stale-if-error)."""
        return max(self.stale_while_revalidate, self.stale_if_error)

    @property
    def refreshes(self) -> bool:
        """True if any policy may refresh an entry in the background."""
        return bool(self.ahead or self.beta or self.stale_while_revalidate)

    def retain(self, ttl: float | None) -> float | None:
        """How long the backend must keep an entry whose freshness TTL is ``ttl``."""
        return None if ttl is None else ttl + self.grace

    @property
    def keep(self) -> float:
        """Seconds a fill's entry is kept (0: for ever), for the generations a miss creates."""
        retain = self.retain(self.ttl)
        return 0.0 if retain is None else retain

    def ttl_for(self, value: Any) -> float | None:
        """The TTL for a loaded value (negative caching: ``None`` may have its own)."""
        if value is None and self.none_ttl is not None:
            return self.none_ttl
        return self.ttl

    def storable(self, value: Any) -> bool:
        """Whether a loaded value is stored at all."""
        if value is None and not self.cache_none:
            return False
        return self.should_cache is None or bool(self.should_cache(value))


def decide(
    policy: Freshness, age: float, ttl: float | None, load_time: float, rng: Callable[[], float]
) -> Action:
    """What to do with a valid entry of ``age`` seconds whose TTL is ``ttl``."""
    if ttl is None:
        return Action.SERVE
    left = ttl - age
    if left > 0:
        if policy.ahead is not None and age >= policy.ahead * ttl:
            return Action.SERVE_AND_REFRESH
        if xfetch(left, load_time, policy.beta, rng):
            return Action.SERVE_AND_REFRESH
        return Action.SERVE
    if -left < policy.stale_while_revalidate:
        return Action.SERVE_STALE_AND_REFRESH
    return Action.LOAD


# Below this age-to-expiry margin (in units of delta * beta) XFetch fires with probability
# below e**-9 ~ 1.2e-4 per check; the L1 fast path serves without consulting it until then.
_XFETCH_MARGIN = 9.0


def fresh_horizon(policy: Freshness, ttl: float | None, load_time: float) -> float | None:
    """Age under which :func:`decide` is SERVE without drawing a random number (None: ever)."""
    if ttl is None:
        return None
    horizon = ttl
    if policy.ahead is not None:
        horizon = min(horizon, policy.ahead * ttl)
    if policy.beta > 0 and load_time > 0:
        horizon = min(horizon, ttl - _XFETCH_MARGIN * policy.beta * load_time)
    return max(horizon, 0.0)
