"""Freshness decisions as pure functions: time and randomness are always passed in."""

from __future__ import annotations

from collections.abc import Callable

from .errors import ConfigurationError

__all__ = ["check_ttl", "jittered_ttl"]


def check_ttl(ttl: float | None, what: str = "ttl") -> float | None:
    """Validate a TTL in seconds (None means no expiry)."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not ttl > 0:
        raise ConfigurationError(
            f"{what} must be a positive number of seconds or None, got {ttl!r}"
        )
    return float(ttl)


def jittered_ttl(ttl: float | None, jitter: float, rng: Callable[[], float]) -> float | None:
    """Shorten ``ttl`` by a random fraction in ``[0, jitter)`` so entries do not expire together."""
    if ttl is None or jitter <= 0:
        return ttl
    return ttl * (1.0 - jitter * rng())
