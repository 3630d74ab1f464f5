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

import hashlib
import inspect
import json
from collections.abc import AsyncGenerator, Callable, Sequence
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from fastapi import params
from fastapi.security.base import SecurityBase
from pydantic import AliasChoices
from starlette.datastructures import URL, Headers
from starlette.requests import HTTPConnection, Request

from ...errors import ConfigurationError

__all__ = [
    "CREDENTIAL_HEADERS",
    "GuardedRequest",
    "dependency_inputs",
    "header_name",
    "marker_of",
    "request_key",
    "request_target",
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


def header_name(param: inspect.Parameter, marker: Any) -> str:
    """The (lower-case) header a ``Header()`` parameter reads."""
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
        seen or header_name(param, marker) in CREDENTIAL_HEADERS
    ):
        return f"{param.name} (the {header_name(param, marker)} header)"
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


def request_key(param: inspect.Parameter) -> tuple[Any, ...]:
    """What FastAPI reads for a query, path or body parameter: the names it looks up in the
    request, in order (its alias, ``validation_alias`` or choices, else its name), and
    whether it takes every value of a repeated query parameter or only one."""
    marker = marker_of(param)
    chosen = getattr(marker, "validation_alias", None)
    if isinstance(chosen, AliasChoices) and all(isinstance(c, str) for c in chosen.choices):
        names: tuple[Any, ...] = tuple(chosen.choices)
    elif isinstance(chosen, str):
        names = (chosen,)
    else:
        alias = getattr(marker, "alias", None)
        names = (alias if isinstance(alias, str) else param.name,)
    return (*names, _many(param.annotation))


def request_target(request: Request) -> str:
    """The key part of a route that takes the Request: a digest of its method, host, path
    and sorted query (like a cached view's key)."""
    query = sorted(request.query_params.multi_items())
    parts = [request.method, request.url.scheme, request.url.netloc, request.url.path, query]
    text = json.dumps(parts, separators=(",", ":"))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


def _many(annotation: Any) -> bool:
    t = _plain(annotation)
    kinds = (list, set, frozenset, tuple, Sequence)
    options = get_args(t) if get_origin(t) in (Union, UnionType) else (t,)
    return any(get_origin(o) in kinds or o in kinds for o in options)


def dependency_inputs(param: inspect.Parameter) -> dict[tuple[Any, ...], str]:
    """The request values (query, path, body...) a ``Depends`` parameter's dependencies read,
    by :func:`request_key`, with the path of names to each: they shape the response but are
    not in the default key.

    Headers, cookies and the request itself are :func:`why_authenticated`'s; a
    :func:`shared_dependency` is not looked into.
    """
    found: dict[tuple[Any, ...], str] = {}

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
                found.setdefault(request_key(sub), where)

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


def _unkeyed(what: str, route: str, fix: str) -> ConfigurationError:
    return ConfigurationError(
        f"cache_response({route}): the route read {what}, which is not in its key, so two "
        f"requests that differ only there would share one response. {fix}; or leave the "
        f"route uncached"
    )


def _header_fix(name: str) -> str:
    param = name.lower().replace("-", "_")
    return (
        f"Declare it on the endpoint ({param}: Annotated[str | None, Header()] = None) "
        f"and keep it in the key"
    )


class _GuardedHeaders(Headers):
    """Headers that raise on a read of a header outside the key, or of all of them at once."""

    route = "?"
    allowed: frozenset[str] = frozenset()
    identity = False  # the key names the user: credential headers may be read

    def _check(self, key: str) -> None:
        name = key.lower()
        if name in self.allowed:
            return
        if name in CREDENTIAL_HEADERS and not self.identity:
            raise _refuse(f"the request's {name!r} header", self.route)
        raise _unkeyed(f"the request's {name!r} header", self.route, _header_fix(name))

    def _all(self, what: str) -> ConfigurationError:
        if not self.identity:  # all of them include the credentials
            return _refuse(f"{what} (all headers)", self.route)
        return _unkeyed(f"{what} (all headers)", self.route, "Declare the headers you need")

    def __getitem__(self, key: str) -> str:
        self._check(key)
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        if isinstance(key, str):
            self._check(key)
        return super().__contains__(key)

    def getlist(self, key: str) -> list[str]:
        self._check(key)
        return super().getlist(key)

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        """Raises ConfigurationError: the raw headers are not in the key."""
        raise self._all("request.headers.raw")

    def keys(self) -> list[str]:  # type: ignore[override]
        """Raises ConfigurationError: which headers a request has is not in the key."""
        raise self._all("request.headers.keys()")

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Raises ConfigurationError: the headers are not in the key."""
        raise self._all("request.headers.items()")

    def values(self) -> list[str]:  # type: ignore[override]
        """Raises ConfigurationError: the headers are not in the key."""
        raise self._all("request.headers.values()")

    def mutablecopy(self) -> Any:
        """Raises ConfigurationError: the copy would hold headers that are not in the key."""
        raise self._all("request.headers.mutablecopy()")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<guarded>)"


class _GuardedScope(dict[str, Any]):
    """The request's scope without what is not in the key; reading that raises."""

    route = "?"
    blocked: frozenset[str] = frozenset()
    identity = False

    def _refusal(self, key: str) -> ConfigurationError:
        # Without a per-user key, all the headers would include the credentials.
        if key == "client" or (key == "headers" and self.identity):
            return _unkeyed(f"request.scope[{key!r}]", self.route, "Declare the headers you need")
        return _refuse(f"request.scope[{key!r}]", self.route)

    def __missing__(self, key: str) -> Any:
        if key in self.blocked:
            raise self._refusal(key)
        raise KeyError(key)

    def get(self, key: str, default: Any = None) -> Any:
        """Like ``dict.get``; raises ConfigurationError for the parts outside the key."""
        if key in self.blocked:
            raise self._refusal(key)
        return super().get(key, default)


class GuardedRequest(Request):
    """The request a cached route sees: reading what its key does not hold raises.

    The key of a route that takes the Request holds its method, host, path and query, so the
    URL, ``query_params`` and ``path_params`` read normally; ``headers`` refuse every header
    but ``Host`` and those in ``headers`` (the route's keyed ``Header()`` parameters), and
    reading them all; the body, the client address, and (unless ``identity``: the key names
    the user) ``cookies``, ``session``, ``state``, ``user``, ``auth`` and the same parts of
    ``scope`` raise ConfigurationError.
    """

    def __init__(
        self,
        request: Request,
        route: str,
        *,
        headers: frozenset[str] = frozenset(),
        identity: bool = False,
    ) -> None:
        blocked = frozenset({"headers", "client"}) | (frozenset() if identity else _PER_USER_SCOPE)
        guarded = _GuardedScope({k: v for k, v in request.scope.items() if k not in blocked})
        guarded.route = route
        guarded.blocked = blocked
        guarded.identity = identity
        super().__init__(guarded, request.receive)
        self._freshlink_route = route
        self._freshlink_real = request
        self._freshlink_headers = headers | {"host"} | (CREDENTIAL_HEADERS if identity else set())
        self._freshlink_identity = identity

    @property
    def url(self) -> URL:
        """The request's URL (its host, from the Host header, is in the key)."""
        return self._freshlink_real.url

    @property
    def base_url(self) -> URL:
        """The app's base URL."""
        return self._freshlink_real.base_url

    @property
    def headers(self) -> Headers:
        """The headers; reading one that is not in the key raises ConfigurationError."""
        guarded = _GuardedHeaders(scope=self._freshlink_real.scope)
        guarded.route = self._freshlink_route
        guarded.allowed = self._freshlink_headers
        guarded.identity = self._freshlink_identity
        return guarded

    @property
    def client(self) -> Any:
        """Raises ConfigurationError: the client's address is not in the key."""
        raise _unkeyed("request.client", self._freshlink_route, "Take it from a keyed parameter")

    def _body_refused(self, what: str) -> ConfigurationError:
        return _unkeyed(what, self._freshlink_route, "Cache only routes whose GET has no body")

    def stream(self) -> AsyncGenerator[bytes, None]:
        """Raises ConfigurationError: the body is not in the key."""
        raise self._body_refused("request.stream() (the body)")

    async def body(self) -> bytes:
        """Raises ConfigurationError: the body is not in the key."""
        raise self._body_refused("request.body()")

    async def json(self) -> Any:
        """Raises ConfigurationError: the body is not in the key."""
        raise self._body_refused("request.json() (the body)")

    def form(self, *args: Any, **kwargs: Any) -> Any:
        """Raises ConfigurationError: the body is not in the key."""
        raise self._body_refused("request.form() (the body)")

    def _identity(self, what: str, why: str) -> Any:
        if not self._freshlink_identity:
            raise _refuse(what, self._freshlink_route)
        return getattr(self._freshlink_real, why)

    @property
    def cookies(self) -> dict[str, str]:
        """Raises ConfigurationError unless the key names the user: cookies identify them."""
        return self._identity("request.cookies", "cookies")  # type: ignore[no-any-return]

    @property
    def session(self) -> dict[str, Any]:
        """Raises ConfigurationError unless the key names the user: the session is theirs."""
        return self._identity("request.session", "session")  # type: ignore[no-any-return]

    @property
    def state(self) -> Any:
        """Raises ConfigurationError unless the key names the user (state often holds them)."""
        return self._identity("request.state", "state")

    @property
    def user(self) -> Any:
        """Raises ConfigurationError unless the key names the user."""
        return self._identity("request.user", "user")

    @property
    def auth(self) -> Any:
        """Raises ConfigurationError unless the key names the user: the credentials are theirs."""
        return self._identity("request.auth", "auth")
