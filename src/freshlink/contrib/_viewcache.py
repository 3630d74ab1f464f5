"""Serve a view's response or a template fragment through a Cache's coherent read path.

A response is loaded exactly like a cached function's value: the tags' generations are read
*before* the view runs, so a view that rendered old data while ``invalidate("loan:7")`` ran can
never leave its page valid (the same stale-set rule as ``@cache.cached``). What this adds is the
per-response refusal: a render that must not be stored (it set a cookie, read the user...) is
returned to its own caller only. Concurrent callers of the same key share one render
(single-flight), so a refused render is handed to nobody else: each of them renders its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..cache import Cache
from ..handles import Unset
from ..policy import Freshness
from ._views import Refusal

__all__ = ["REFUSED", "fetch_or_render", "log_refusal", "view_policy"]

logger = logging.getLogger("freshlink.views")


class _Refused:
    """The value a render that must not be stored stands for (never stored, never shared)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "REFUSED"


#: Returned by a render whose response must not be stored.
REFUSED = _Refused()


def _storable(value: Any) -> bool:
    return value is not REFUSED


def view_policy(cache: Cache, ttl: float | Unset | None) -> Freshness:
    """The cache's freshness policy for views: no background refresh, no stale responses.

    A view runs in its request: a refresh in a background thread has no request to run in, and
    serving an expired page while re-rendering it is not what a user of ``cache_page`` expects.
    """
    changes: dict[str, Any] = {
        "ahead": None,
        "beta": 0.0,
        "stale_while_revalidate": 0.0,
        "stale_if_error": 0.0,
        "cache_none": True,
        "should_cache": _storable,
    }
    if not isinstance(ttl, Unset):
        changes["ttl"] = ttl
    return cache.freshness.with_(**changes)


def log_refusal(what: str, refusal: Refusal) -> None:
    """Log why a response or fragment was not stored (WARNING when it looks like a mistake)."""
    level = logging.WARNING if refusal.warn else logging.DEBUG
    logger.log(level, "freshlink: not caching %s: %s", what, refusal.reason)


def fetch_or_render(
    cache: Cache,
    fname: str,
    key: str,
    tags: Sequence[str],
    policy: Freshness,
    render: Callable[[], tuple[Any, Any]],
) -> tuple[Any, Any]:
    """``(native, None)`` when this call rendered, or ``(None, stored value)`` on a hit.

    ``render()`` returns the framework's response (or fragment) and its stored value, or
    :data:`REFUSED` when it must not be stored.
    """
    mine: list[Any] = []
    failed: list[Exception] = []

    def load() -> Any:
        try:
            native, value = render()
        except Exception as exc:
            # Kept for this caller alone: a view that raised for one request (a 403 for this
            # user, a 404 raised as an exception) must not fail the callers sharing its flight.
            failed.append(exc)
            return REFUSED
        mine.append(native)
        return value

    k, names = cache._located(key, tags)
    got = cache._path.fetch(fname, k, names, load, policy)
    if failed:
        raise failed[0]
    if mine:
        return mine[0], None
    if got is REFUSED:
        # Another caller's render that must not be stored (its cookie, its user): render ours.
        native, _value = render()
        return native, None
    return None, got
