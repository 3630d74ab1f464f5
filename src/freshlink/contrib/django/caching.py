"""``cached_view``: a Django view's response cached in the ``FRESHLINK`` cache, keyed and tagged.

.. code-block:: python

    @cached_view(ttl=60, tags=["loan:{loan_id}"])
    def loan_page(request, loan_id): ...

The key is the view, host, path and query (``query=``: False, or the names of the parameters
kept), the request headers named in ``vary=`` and, with ``per_user=``, the user
(``request.user.pk``, or what a function of the request returns). ``tags`` are templates over
the URL's keyword arguments (and ``{user}``), so ``invalidate("loan:7")`` drops the page.
Like a cached function's, the key also holds a hash of the view's code and ``version=``: after
a deploy that changes the view, no process serves the page the old code rendered (bump
``version=`` when only a template the view renders changed).

Never stored (the response is returned, and the reason logged on ``freshlink.views``: a
WARNING once per view and reason, then DEBUG): a
response that sets a cookie, is ``Cache-Control: private/no-store/no-cache``, varies by
``Cookie``/``Authorization`` or ``*``, streams, or has an uncacheable status; and, unless keyed
by user, a view that read ``request.user``, ``request.session``, ``request.COOKIES`` or a CSRF
token. Requests other than GET, and requests with an ``Authorization`` header (unless keyed by
user), run the view uncached.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from django.http import HttpResponse
from django.utils.functional import SimpleLazyObject

from ...cache import Cache
from ...errors import ConfigurationError
from ...handles import UNSET
from .._viewcache import RequestParts, V, view_decorator
from .._views import Reads, Refusal, StoredResponse, ViewOptions, response_refusal, watched
from .conf import get_cache

__all__ = ["cached_view", "watch_request"]

_CSRF_FLAGS = ("CSRF_COOKIE_NEEDS_UPDATE", "CSRF_COOKIE_USED")


def _noting(reads: Reads, user: Any) -> Callable[[], Any]:
    def evaluate() -> Any:
        reads.note("request.user")
        return user

    return evaluate


@contextlib.contextmanager
def watch_request(request: Any, earlier: bool = False) -> Iterator[Reads]:
    """Record, while the body runs, whether it reads who the user is.

    It watches ``request.user`` (a lazy stand-in notes its first use), ``request.COOKIES``,
    ``request.session.accessed`` (the flag Django's SessionMiddleware adds ``Vary: Cookie``
    for; reset for the body, restored after) and the CSRF token being used. ``earlier``: a
    session read before the body (an eager middleware) counts too: SessionMiddleware's
    ``Vary: Cookie`` will say the response varies by user.
    """
    reads = Reads()
    if request is None:
        yield reads
        return
    saved: dict[str, Any] = {}
    if hasattr(request, "user"):
        saved["user"] = request.user
        request.user = SimpleLazyObject(_noting(reads, request.user))
    saved["COOKIES"] = request.COOKIES
    request.COOKIES = watched(request.COOKIES, reads, "request.COOKIES")
    session = getattr(request, "session", None)
    accessed = getattr(session, "accessed", None)
    if accessed is not None:
        if accessed and earlier:
            reads.note("request.session (before the view, in a middleware)")
        session.accessed = False  # type: ignore[union-attr]
    csrf = [request.META.get(flag) for flag in _CSRF_FLAGS]
    try:
        yield reads
    finally:
        for attr, value in saved.items():
            setattr(request, attr, value)
        if accessed is not None:
            if session.accessed:  # type: ignore[union-attr]
                reads.note("request.session")
            session.accessed = accessed or session.accessed  # type: ignore[union-attr]
        if [request.META.get(flag) for flag in _CSRF_FLAGS] != csrf:
            reads.note("a CSRF token")


def _user(request: Any, per_user: Any) -> Any:
    if per_user is False:
        return UNSET
    if per_user is True:
        user = getattr(request, "user", None)
        if user is None:
            raise ConfigurationError(
                "cached_view(per_user=True) needs request.user: add "
                "django.contrib.auth.middleware.AuthenticationMiddleware to MIDDLEWARE, or "
                "pass per_user=<a function of the request returning the user's id>"
            )
        return user.pk if user.is_authenticated else None
    return per_user(request)


class _Django:
    """:class:`~freshlink.contrib._viewcache.Framework` for Django (the request: ``args[0]``)."""

    __slots__ = ()

    def cache(self) -> Cache:
        return get_cache()

    def request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> RequestParts:
        request = args[0]
        return RequestParts(
            request.method,
            request.get_host,
            request.path,
            ((k, v) for k, vs in request.GET.lists() for v in vs),
            request.headers.get,
            "HTTP_AUTHORIZATION" in request.META,
            kwargs,
        )

    def user(self, args: tuple[Any, ...], per_user: Any) -> Any:
        return _user(args[0], per_user)

    def render(
        self, view: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Any, Reads]:
        with watch_request(args[0], earlier=True) as reads:
            response = view(*args, **kwargs)
            if callable(getattr(response, "render", None)) and not getattr(
                response, "is_rendered", True
            ):
                response.render()  # a TemplateResponse: its template reads count too
        return response, reads

    def refusal(self, response: Any, keyed: bool, vary: Sequence[str]) -> Refusal | None:
        headers = list(response.items())
        if response.cookies:
            headers.append(("Set-Cookie", "..."))
        return response_refusal(
            response.status_code,
            headers,
            keyed_by_user=keyed,
            vary=vary,
            streaming=response.streaming,
        )

    def stored(self, response: Any) -> StoredResponse:
        return StoredResponse.of(
            response.status_code, response.reason_phrase, response.items(), response.content
        )

    def rebuilt(self, value: Any) -> HttpResponse:
        stored = StoredResponse.from_value(value)
        response = HttpResponse(stored.body, status=stored.status, reason=stored.reason or None)
        for name in list(response.headers):
            del response.headers[name]
        for name, header in stored.headers:
            response.headers[name] = header
        return response


_DJANGO = _Django()


def cached_view(
    ttl: Any = UNSET,
    *,
    tags: Iterable[str] = (),
    vary: Iterable[str] = (),
    query: bool | Iterable[str] = True,
    per_user: bool | Callable[[Any], Any] = False,
    name: str | None = None,
    version: str | int | None = None,
) -> Callable[[V], V]:
    """Cache a GET view's response in the ``FRESHLINK`` cache, keyed and tagged (see module)."""
    options = ViewOptions.build(ttl, tags, vary, query, per_user, version)

    return view_decorator(options, _DJANGO, name, request_first=True)
