"""Which parameters of a route carry the user's identity, and a request that guards it.

A cached response is shared by everyone whose call renders the same key. If a route reads
credentials (a security scheme, a ``Security``/``Cookie`` dependency, the ``Authorization``
header) the response is one user's, so its key must contain a parameter that depends on
them. Found statically at decoration; a route that takes the ``Request`` itself is guarded at
run time instead (:class:`GuardedRequest`), since what it reads cannot be known in advance.
"""

from __future__ import annotations

import inspect
from typing import Annotated, Any, get_args, get_origin

from fastapi import params
from fastapi.security.base import SecurityBase
from starlette.datastructures import Headers
from starlette.requests import Request

from ...errors import ConfigurationError

__all__ = ["CREDENTIAL_HEADERS", "GuardedRequest", "marker_of", "why_authenticated"]

#: Headers that carry a user's credentials.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


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


def _header_name(param: inspect.Parameter, marker: Any) -> str:
    alias = getattr(marker, "alias", None)
    if isinstance(alias, str):
        return alias.lower()
    name = param.name
    return name.replace("_", "-").lower() if getattr(marker, "convert_underscores", True) else name


def why_authenticated(param: inspect.Parameter, seen: frozenset[int] = frozenset()) -> str | None:
    """Why ``param``'s value depends on the caller's credentials (a path of names), or None."""
    marker = marker_of(param)
    if isinstance(marker, params.Cookie):
        return f"{param.name} (a cookie)"
    if isinstance(marker, params.Header) and _header_name(param, marker) in CREDENTIAL_HEADERS:
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
    if call is None or id(call) in seen:
        return None
    sig = _signature(call)
    for sub in sig.parameters.values() if sig is not None else ():
        why = why_authenticated(sub, seen | {id(call)})
        if why is not None:
            return f"{param.name} -> {why}"
    return None


def _refuse(what: str, route: str) -> ConfigurationError:
    return ConfigurationError(
        f"cache_response({route}): the route read {what} of the request, but its key has no "
        f"per-user part, so one user's response would be served to others. Declare the "
        f"credentials as a dependency (Security, Cookie, Header) and put the user in key=, "
        f"e.g. key='...:{{user.id}}'; or leave the route uncached"
    )


class _GuardedHeaders(Headers):
    """Headers that raise on a read of a credential header."""

    route = "?"

    def __getitem__(self, key: str) -> str:
        if key.lower() in CREDENTIAL_HEADERS:
            raise _refuse(f"the {key.lower()!r} header", self.route)
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        if isinstance(key, str) and key.lower() in CREDENTIAL_HEADERS:
            raise _refuse(f"the {key.lower()!r} header", self.route)
        return super().__contains__(key)

    def getlist(self, key: str) -> list[str]:
        if key.lower() in CREDENTIAL_HEADERS:
            raise _refuse(f"the {key.lower()!r} header", self.route)
        return super().getlist(key)


class GuardedRequest(Request):
    """The request a cached route without a per-user key sees: reading credentials raises."""

    def __init__(self, request: Request, route: str) -> None:
        super().__init__(request.scope, request.receive)
        self._freshlink_route = route

    @property
    def headers(self) -> Headers:
        """The headers; reading ``Authorization`` or ``Cookie`` raises ConfigurationError."""
        guarded = _GuardedHeaders(scope=self.scope)
        guarded.route = self._freshlink_route
        return guarded

    @property
    def cookies(self) -> dict[str, str]:
        """Raises ConfigurationError: cookies identify the user."""
        raise _refuse("cookies", self._freshlink_route)

    @property
    def user(self) -> Any:
        """Raises ConfigurationError: the authenticated user is per user."""
        raise _refuse("request.user", self._freshlink_route)

    @property
    def auth(self) -> Any:
        """Raises ConfigurationError: the credentials are per user."""
        raise _refuse("request.auth", self._freshlink_route)
