"""Which parameters of a route carry the user's identity, and a request that guards it.

A cached response is shared by everyone whose call renders the same key. If a route reads
credentials (a security scheme, a ``Security``/``Cookie`` dependency, the ``Authorization``
header) or has a dependency that takes the ``Request`` (at any depth: what it reads from it,
the session, the state, a header, cannot be known) the response may be one user's, so its key
must name every such parameter. Found statically at decoration; a route that takes the
``Request`` itself is guarded at run time instead (:class:`GuardedRequest`): FastAPI hands
dependencies the real request, but the endpoint gets the guarded one.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar, get_args, get_origin

from fastapi import params
from fastapi.security.base import SecurityBase
from starlette.datastructures import URL, Headers
from starlette.requests import HTTPConnection, Request

from ...errors import ConfigurationError

__all__ = [
    "CREDENTIAL_HEADERS",
    "GuardedRequest",
    "dependency_inputs",
    "marker_of",
    "shared_dependency",
    "takes_connection",
    "why_authenticated",
]

#: Headers that carry a user's credentials.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
# What a request carries per user besides its headers: the session (SessionMiddleware), the
# state (middleware often puts the user there), the authentication middleware's user and auth.
_PER_USER_SCOPE = frozenset({"headers", "session", "state", "user", "auth"})
_SHARED = "__freshlink_shared__"

F = TypeVar("F", bound=Callable[..., Any])


def shared_dependency(dependency: F) -> F:
    """Mark a dependency that takes the Request but returns the same value to every caller.

    A dependency that takes the ``Request`` makes :func:`cache_response` refuse the route
    unless its key names it; mark one that only reads ``request.app`` (the app's database,
    settings, cache) to allow it. Its own sub-dependencies are then not inspected either.
    """
    try:
        setattr(dependency, _SHARED, True)
    except (AttributeError, TypeError) as exc:
        raise ConfigurationError(
            f"shared_dependency({dependency!r}): cannot mark it (use a function or a class)"
        ) from exc
    return dependency


def takes_connection(annotation: Any) -> bool:
    """True if a parameter annotated so receives the ``Request``/``WebSocket`` itself."""
    t = _plain(annotation)
    return isinstance(t, type) and issubclass(t, HTTPConnection)


def marker_of(param: inspect.Parameter) -> Any:
    """The FastAPI marker (``Depends(...)``, ``Cookie()``, ...) of a parameter, or None."""
    if isinstance(param.default, params.Depends | params.Param):
        return param.default
    if get_origin(param.annotation) is Annotated:
        for meta in get_args(param.annotation)[1:]:
            if isinstance(meta, params.Depends | params.Param):
                return meta
    return None


def _signature(call: Any) -> inspect.Signature | None:
    target = call.__call__ if not inspect.isroutine(call) and not isinstance(call, type) else call
    try:
        return inspect.signature(target, eval_str=True)
    except (TypeError, ValueError, NameError):
        return None


def _plain(annotation: Any) -> Any:
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _header_name(param: inspect.Parameter, marker: Any) -> str:
    alias = getattr(marker, "alias", None)
    if isinstance(alias, str):
        return alias.lower()
    name = param.name
    return name.replace("_", "-").lower() if getattr(marker, "convert_underscores", True) else name


def why_authenticated(param: inspect.Parameter, seen: frozenset[int] = frozenset()) -> str | None:
    """Why ``param``'s value may depend on the caller (a path of names), or None."""
    if takes_connection(param.annotation):
        return f"{param.name} (the {getattr(_plain(param.annotation), '__name__', 'Request')})"
    marker = marker_of(param)
    if isinstance(marker, params.Cookie):
        return f"{param.name} (a cookie)"
    # Any header a dependency reads (``seen``: below the route) may name the user (X-User,
    # X-Api-Key), and a dependency's value is not in the default key; the route's own header
    # parameters are, unless they carry credentials.
    if isinstance(marker, params.Header) and (
        seen or _header_name(param, marker) in CREDENTIAL_HEADERS
    ):
        return f"{param.name} (the {_header_name(param, marker)} header)"
    if not isinstance(marker, params.Depends):
        return None
    call = marker.dependency
    if call is None:
        call = param.annotation
        if get_origin(call) is Annotated:
            call = get_args(call)[0]
    if isinstance(marker, params.Security):
        return f"{param.name} (Security({getattr(call, '__name__', call)!s}))"
    if isinstance(call, SecurityBase):
        return f"{param.name} ({type(call).__name__})"
    if call is None or id(call) in seen or getattr(call, _SHARED, False):
        return None
    sig = _signature(call)
    for sub in sig.parameters.values() if sig is not None else ():
        why = why_authenticated(sub, seen | {id(call)})
        if why is not None:
            return f"{param.name} -> {why}"
    return None


def dependency_inputs(param: inspect.Parameter) -> dict[str, str]:
    """The request values (query, path, body...) a ``Depends`` parameter's dependencies read,
    by name, with the path to each: they shape the response but are not in the default key.

    Headers, cookies and the request itself are :func:`why_authenticated`'s; a
    :func:`shared_dependency` is not looked into.
    """
    found: dict[str, str] = {}

    def walk(p: inspect.Parameter, path: str, seen: frozenset[int]) -> None:
        marker = marker_of(p)
        if not isinstance(marker, params.Depends) or isinstance(marker, params.Security):
            return
        call = marker.dependency
        if call is None:
            call = _plain(p.annotation)
        if call is None or id(call) in seen or getattr(call, _SHARED, False):
            return
        sig = _signature(call)
        for sub in sig.parameters.values() if sig is not None else ():
            sub_marker = marker_of(sub)
            where = f"{path} -> {sub.name}"
            if isinstance(sub_marker, params.Depends):
                walk(sub, where, seen | {id(call)})
            elif isinstance(sub_marker, params.Header | params.Cookie) or _special(sub):
                continue
            else:  # FastAPI fills it from the query, the path or the body
                found.setdefault(sub.name, where)

    walk(param, param.name, frozenset())
    return found


def _special(param: inspect.Parameter) -> bool:
    """A parameter FastAPI fills with a framework object, not a request value."""
    t = _plain(param.annotation)
    names = {"Response", "BackgroundTasks", "SecurityScopes", "WebSocket"}
    return takes_connection(param.annotation) or (
        isinstance(t, type) and any(c.__name__ in names for c in t.__mro__)
    )


def _refuse(what: str, route: str) -> ConfigurationError:
    return ConfigurationError(
        f"cache_response({route}): the route read {what}, but its key has no "
        f"per-user part, so one user's response would be served to others. Take the value "
        f"as a dependency (Security, Cookie, Header, Depends) and name it in key=, "
        f"e.g. key='...:{{user.id}}'; or leave the route uncached"
    )


def _refusing(key: str, route: str) -> ConfigurationError:
    return _refuse(f"the request's {key.lower()!r} header", route)


class _GuardedHeaders(Headers):
    """Headers that raise on a read of a credential header, or of all their values at once."""

    route = "?"

    def __getitem__(self, key: str) -> str:
        if key.lower() in CREDENTIAL_HEADERS:
            raise _refusing(key, self.route)
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        if isinstance(key, str) and key.lower() in CREDENTIAL_HEADERS:
            raise _refusing(key, self.route)
        return super().__contains__(key)

    def getlist(self, key: str) -> list[str]:
        if key.lower() in CREDENTIAL_HEADERS:
            raise _refusing(key, self.route)
        return super().getlist(key)

    # Reading every value (raw, items, values, a copy) would read the credentials too.
    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        """Raises ConfigurationError: the raw headers include the credentials."""
        raise _refuse("request.headers.raw (all headers)", self.route)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Raises ConfigurationError: the headers include the credentials."""
        raise _refuse("request.headers.items() (all headers)", self.route)

    def values(self) -> list[str]:  # type: ignore[override]
        """Raises ConfigurationError: the headers include the credentials."""
        raise _refuse("request.headers.values() (all headers)", self.route)

    def mutablecopy(self) -> Any:
        """Raises ConfigurationError: the copy would include the credentials."""
        raise _refuse("request.headers.mutablecopy() (all headers)", self.route)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<guarded>)"


class _GuardedScope(dict[str, Any]):
    """The request's scope without what identifies the user; reading that raises."""

    route = "?"

    def __missing__(self, key: str) -> Any:
        if key in _PER_USER_SCOPE:
            raise _refuse(f"request.scope[{key!r}]", self.route)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """Like ``dict.get``; raises ConfigurationError for the per-user parts."""
        if key in _PER_USER_SCOPE:
            raise _refuse(f"request.scope[{key!r}]", self.route)
        return super().get(key, default)


class GuardedRequest(Request):
    """The request a cached route without a per-user key sees: reading credentials raises.

    Its ``headers`` refuse credential headers (and reading them all), and its ``cookies``,
    ``session``, ``state``, ``user``, ``auth`` and the same parts of ``scope`` raise.
    """

    def __init__(self, request: Request, route: str) -> None:
        guarded = _GuardedScope(
            {k: v for k, v in request.scope.items() if k not in _PER_USER_SCOPE}
        )
        guarded.route = route
        super().__init__(guarded, request.receive)
        self._freshlink_route = route
        self._freshlink_real = request
        if hasattr(request, "_body"):  # FastAPI read it already: the stream is consumed
            self._body = request._body

    @property
    def url(self) -> URL:
        """The request's URL (its host comes from the headers, read here unguarded)."""
        return self._freshlink_real.url

    @property
    def base_url(self) -> URL:
        """The app's base URL."""
        return self._freshlink_real.base_url

    @property
    def headers(self) -> Headers:
        """The headers; reading ``Authorization`` or ``Cookie`` raises ConfigurationError."""
        guarded = _GuardedHeaders(scope=self._freshlink_real.scope)
        guarded.route = self._freshlink_route
        return guarded

    @property
    def cookies(self) -> dict[str, str]:
        """Raises ConfigurationError: cookies identify the user."""
        raise _refuse("request.cookies", self._freshlink_route)

    @property
    def session(self) -> dict[str, Any]:
        """Raises ConfigurationError: the session is per user."""
        raise _refuse("request.session", self._freshlink_route)

    @property
    def state(self) -> Any:
        """Raises ConfigurationError: the state is per request (it often holds the user)."""
        raise _refuse("request.state", self._freshlink_route)

    @property
    def user(self) -> Any:
        """Raises ConfigurationError: the authenticated user is per user."""
        raise _refuse("request.user", self._freshlink_route)

    @property
    def auth(self) -> Any:
        """Raises ConfigurationError: the credentials are per user."""
        raise _refuse("request.auth", self._freshlink_route)
