"""Serve a view's response or a template fragment through a Cache's coherent read path.

A response is loaded exactly like a cached function's value: the tags' generations are read
*before* the view runs, so a view that rendered old data while ``invalidate("loan:7")`` ran can
never leave its page valid (the same stale-set rule as ``@cache.cached``), and the read opens
the same "get" and "load" spans. What this adds is the per-response refusal: a render that must
not be stored (it set a cookie, read the user...) is returned to its own caller only.
Concurrent callers of the same key share one render (single-flight), so a refused render is
handed to nobody else: each of them renders its own. A render that raised is an ``error`` (its
event, its span) for its own caller only, likewise.

:class:`CachedView` is a cached view's whole algorithm (pass-through, key, tags, render,
refusal, store); a :class:`Framework` adapter gives it the request and the response.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ..cache import Cache
from ..errors import ConfigurationError, SerializationError, ValueTooLargeError
from ..handles import UNSET, Unset
from ..policy import Freshness
from ._views import (
    Reads,
    Refusal,
    StoredResponse,
    ViewOptions,
    render_tags,
    request_refusal,
    select_query,
    view_key,
)

__all__ = [
    "REFUSED",
    "CachedView",
    "Framework",
    "RequestParts",
    "fetch_or_render",
    "log_refusal",
    "view_policy",
]

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

    try:
        got = cache._fetch_own(fname, key, tags, load, policy, REFUSED)
    except (ValueTooLargeError, SerializationError) as exc:
        if not mine:
            raise
        # Rendered, but too big (or not encodable) to store: the page is still this
        # request's answer, as any response that must not be stored is.
        log_refusal(fname, Refusal(f"it cannot be stored: {exc}"), "")
        return mine[0], None
    if mine:
        return mine[0], None
    if got is REFUSED:
        # Another caller's render that must not be stored (its cookie, its user), or one that
        # raised: render ours.
        native, _value = render()
        return native, None
    return None, got


# ---------------------------------------------------------------------------- the view wrapper


@dataclass(frozen=True, slots=True)
class RequestParts:
    """What a cached view needs to know of one request (given by the framework's adapter)."""

    method: str
    #: The host (a function: Django's ``get_host()`` may raise, for a cached request only).
    host: Callable[[], str]
    path: str
    #: The query string's (name, value) pairs, in order.
    query: Iterable[tuple[str, str]]
    #: A request header's value by name (None when absent).
    header: Callable[[str], str | None]
    #: Whether it carries credentials (an ``Authorization`` header).
    credentials: bool
    #: The URL's parameters (what the tag templates are rendered over).
    params: Mapping[str, Any]


class Framework(Protocol):
    """The framework's side of :class:`CachedView`: Flask's and Django's differ only here."""

    def cache(self) -> Cache:
        """The Cache the views are stored in (the app's, the ``FRESHLINK`` one)."""

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RequestParts:
        """The request a call of the view answers."""

    def user(self, args: tuple[Any, ...], per_user: Any) -> Any:
        """The user a ``per_user=`` view is keyed by."""

    def render(
        self, view: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, Reads]:
        """Run the view: its response (rendered) and what it read that identifies its user."""

    def refusal(self, response: Any, keyed: bool, vary: Sequence[str]) -> Refusal | None:
        """Why this response must not be stored (its headers, status, streaming), or None."""

    def stored(self, response: Any) -> StoredResponse:
        """The stored form of a response."""

    def rebuilt(self, value: Any) -> Any:
        """The framework's response from a stored value."""


class CachedView:
    """A view's response served through the cache: the algorithm Flask and Django share."""

    __slots__ = ("fname", "framework", "ident", "keyed", "options", "view")

    def __init__(
        self, view: Callable[..., Any], options: ViewOptions, fname: str, framework: Framework
    ) -> None:
        self.view = view
        self.options = options
        self.fname = fname
        self.framework = framework
        self.ident = options.identity(view)
        self.keyed = options.per_user is not False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Answer one call of the view: from the cache, or by running it (and storing it)."""
        fw, options, keyed = self.framework, self.options, self.keyed
        req = fw.request(args, kwargs)
        if req.method != "GET" or (not keyed and req.credentials):
            # Only GET is cached; a request with credentials may get a personal answer
            # (RFC 9111, 3.5) unless the key names the user.
            return self.view(*args, **kwargs)
        user = fw.user(args, options.per_user) if keyed else UNSET
        key = view_key(
            self.fname,
            ident=self.ident,
            method="GET",
            host=req.host(),
            path=req.path,
            query=select_query(req.query, options.query),
            headers=[(h, req.header(h)) for h in options.vary],
            user=user,
        )
        tags = render_tags(options.tags, {**req.params, "user": user} if keyed else req.params)

        def render() -> tuple[Any, Any]:
            response, reads = fw.render(self.view, args, kwargs)
            refusal = request_refusal(reads, keyed, user) or fw.refusal(
                response, keyed and user is not None, options.vary
            )
            if refusal is not None:
                log_refusal(f"view {self.fname}", refusal, f" ({req.path})")
                return response, REFUSED
            return response, fw.stored(response).to_value()

        cache = fw.cache()
        policy = view_policy(cache, options.ttl)
        native, stored = fetch_or_render(cache, self.fname, key, tags, policy, render)
        return native if native is not None else fw.rebuilt(stored)


V = TypeVar("V", bound=Callable[..., Any])


def view_decorator(
    options: ViewOptions, framework: Framework, name: str | None, *, request_first: bool
) -> Callable[[V], V]:
    """The ``cached_view`` decorator of a framework: its views answered by a :class:`CachedView`.

    ``request_first``: the view takes the request as its first argument (Django), so the
    URL's parameters, which the tag templates may name, are the ones after it.
    """

    def decorate(view: V) -> V:
        if inspect.iscoroutinefunction(view):
            raise ConfigurationError(f"cached_view: {view!r} is async; only sync views are cached")
        fname = name or f"{view.__module__}.{view.__qualname__}"
        options.check_tags(_url_params(view, request_first), fname)
        cached = CachedView(view, options, fname, framework)

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return cached(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def _url_params(view: Callable[..., Any], request_first: bool) -> list[str] | None:
    """The names a view's URL parameters reach it by (None: it takes ``**kwargs``, any)."""
    params = list(inspect.signature(view).parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params[1 if request_first else 0 :]]
