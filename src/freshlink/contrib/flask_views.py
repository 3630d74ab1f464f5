"""Flask views and templates cached through freshlink: ``fl.cached_view`` and the Jinja tag.

Use them through the extension: ``@fl.cached_view(ttl=60, tags=["loan:{loan_id}"])`` under
``@app.get(...)``, and ``{% freshlink_cache %}`` in templates (registered by ``init_app``).
The rules (what is keyed, what is never stored) are in :mod:`freshlink.contrib._views` and
the docs' "Caching views and template fragments" section.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from ..cache import Cache
from ..errors import ConfigurationError, MissingDependencyError
from ..handles import UNSET
from ._viewcache import RequestParts, V, view_decorator
from ._views import Reads, Refusal, StoredResponse, ViewOptions, response_refusal, watched
from .jinja import FreshlinkExtension

try:
    from flask import Response, make_response, request
    from flask.globals import request_ctx
    from werkzeug.datastructures import Headers
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingDependencyError(
        "freshlink.contrib.flask_views needs Flask: pip install 'freshlink[flask]'"
    ) from exc

__all__ = ["install_jinja", "make_cached_view", "watch_user"]


@contextlib.contextmanager
def watch_user(earlier: bool = False) -> Iterator[Reads]:
    """Record, while the body runs, whether it reads the session or the request's cookies.

    ``session.accessed`` is what Flask itself uses to add ``Vary: Cookie``; it is reset for
    the body and restored (or-ed) after, so reads made before it still count for Flask.
    ``earlier``: a read before the body counts too (for a whole view: a ``before_request``
    hook that loaded the user from the session makes the response per-user, and Flask says
    so with ``Vary: Cookie``).
    """
    reads = Reads()
    if not request:  # no request: a template rendered outside one (nothing to read)
        yield reads
        return
    ctx = request_ctx._get_current_object()  # type: ignore[attr-defined]
    # Flask >= 3.1 marks the session accessed on any read of ctx.session: peek at the opened
    # session itself so that watching does not count as a read.
    session = ctx._session if hasattr(ctx, "_session") else ctx.session
    before = bool(getattr(session, "accessed", False))
    if before and earlier:
        reads.note("the session (before the view: a before_request hook loading the user?)")
    req = ctx.request
    cookies = req.cookies
    req.__dict__["cookies"] = watched(cookies, reads, "request.cookies")
    if session is not None and hasattr(session, "accessed"):
        session.accessed = False
    try:
        yield reads
    finally:
        req.__dict__["cookies"] = cookies
        if session is not None and hasattr(session, "accessed"):
            if session.accessed:
                reads.note("the session")
            session.accessed = before or session.accessed


def install_jinja(env: Any, cache: Callable[[], Cache]) -> None:
    """Add ``{% freshlink_cache %}`` to ``env``, using ``cache()`` and watching Flask's session."""
    env.add_extension(FreshlinkExtension)
    # Plain attributes: Environment.extend() would keep the extension's defaults.
    env.freshlink_cache = cache
    env.freshlink_watch = watch_user


def _stored(response: Response) -> StoredResponse:
    return StoredResponse.of(
        response.status_code,
        response.status.partition(" ")[2],
        response.headers.items(),
        response.get_data(),
    )


class _Flask:
    """:class:`~freshlink.contrib._viewcache.Framework` for Flask (the request is global)."""

    __slots__ = ("cache",)

    def __init__(self, cache: Callable[[], Cache]) -> None:
        self.cache = cache

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RequestParts:
        return RequestParts(
            request.method,
            lambda: request.host,
            request.path,
            request.args.items(multi=True),
            request.headers.get,
            "Authorization" in request.headers,
            {**(request.view_args or {}), **kwargs},
        )

    def user(self, args: tuple[Any, ...], per_user: Any) -> Any:
        return per_user()

    def render(
        self, view: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, Reads]:
        with watch_user(earlier=True) as reads:
            return make_response(view(*args, **kwargs)), reads

    def refusal(self, response: Any, keyed: bool, vary: Sequence[str]) -> Refusal | None:
        return response_refusal(
            response.status_code,
            response.headers.items(),
            keyed_by_user=keyed,
            vary=vary,
            streaming=response.is_streamed,
        )

    def stored(self, response: Any) -> StoredResponse:
        return _stored(response)

    def rebuilt(self, value: Any) -> Response:
        stored = StoredResponse.from_value(value)
        response = Response(stored.body)
        response.status = f"{stored.status} {stored.reason}".rstrip()
        # The stored headers replace the defaults as they are, in order: an exact round trip.
        response.headers = Headers(list(stored.headers))
        return response


def make_cached_view(
    cache: Callable[[], Cache],
    ttl: Any = UNSET,
    *,
    tags: Iterable[str] = (),
    vary: Iterable[str] = (),
    query: bool | Iterable[str] = True,
    per_user: Any = False,
    name: str | None = None,
    version: str | int | None = None,
) -> Callable[[V], V]:
    """Build the ``cached_view`` decorator of :class:`~freshlink.contrib.flask.Freshlink`."""
    if per_user is True:
        raise ConfigurationError(
            "per_user=True: Flask has no standard user; pass a function returning the "
            "current user's id, e.g. per_user=lambda: g.user.id"
        )
    options = ViewOptions.build(ttl, tags, vary, query, per_user, version)
    framework = _Flask(cache)

    return view_decorator(options, framework, name, request_first=False)
