"""Serve a view's response or a template fragment through a Cache's coherent read path.

A response is loaded exactly like a cached function's value: the tags' generations are read
*before* the view runs, so a view that rendered old data while ``invalidate("loan:7")`` ran can
never leave its page valid (the same stale-set rule as ``@cache.cached``), and the read opens
the same "get" and "load" spans. What this adds is the per-response refusal: a render that must
not be stored (it set a cookie, read the user...) is returned to its own caller only.
Concurrent callers of the same key share one render (single-flight), so a refused render is
handed to nobody else: each of them renders its own. A render that raised is an ``error`` (its
event, its span) for its own caller only, likewise.
"""

from __future__ import annotations

import logging
import threading
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

# (view or fragment, reason) pairs already warned about: a refusal repeats on every request,
# and one warning per cause is what a developer needs (the rest go to DEBUG).
_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()
_MAX_WARNED = 10_000


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


def log_refusal(what: str, refusal: Refusal, where: str = "") -> None:
    """Log why a response or fragment was not stored.

    WARNING when it looks like a mistake, once per (``what``, reason) in this process; DEBUG
    otherwise and after that. ``where`` (the request's path) is logged but not part of "once".
    """
    level = logging.DEBUG
    if refusal.warn:
        seen = (what, refusal.reason)
        with _warned_lock:
            if seen not in _warned:
                if len(_warned) >= _MAX_WARNED:
                    _warned.clear()
                _warned.add(seen)
                level = logging.WARNING
    logger.log(level, "freshlink: not caching %s%s: %s", what, where, refusal.reason)


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
    :data:`REFUSED` when it must not be stored. If it raises, the exception reaches this
    caller only (reported as the ``error`` event), and nothing is stored.
    """
    mine: list[Any] = []

    def load() -> Any:
        native, value = render()
        mine.append(native)
        return value

    got = cache._fetch_own(fname, key, tags, load, policy, REFUSED)
    if mine:
        return mine[0], None
    if got is REFUSED:
        # Another caller's render that must not be stored (its cookie, its user), or one that
        # raised: render ours.
        native, _value = render()
        return native, None
    return None, got
