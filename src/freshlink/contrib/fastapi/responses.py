"""``cache_response``: a GET route's result through the core ``cached`` decorator, plus ETags.

The route's endpoint becomes the *loader* of a cached function whose parameters are the
route's key parameters (path, query, header and cookie parameters, and whatever ``key=`` /
``tags=`` name), so entries are keyed, tagged, single-flighted and invalidated exactly like
any other cached function's: ``cache.invalidate("loan:7")`` drops the response of loan 7 in
every process. Dependencies (a database session, the current user) reach the endpoint
through a context variable instead of the key.

What is stored is the endpoint's *result* (a pydantic model, a dataclass, a dict...; FastAPI
still applies ``response_model`` to it on every request) or the body of a ``Response`` it
returned, with an ETag computed once when it was loaded. A request whose ``If-None-Match``
names that ETag gets ``304 Not Modified`` without a body. Only ``200`` results without
``Set-Cookie`` are stored; other responses pass through uncached.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import secrets
import weakref
from collections import Counter
from collections.abc import Callable
from contextvars import ContextVar
from typing import Annotated, Any, get_args, get_origin

import pydantic
from fastapi import params
from fastapi.encoders import jsonable_encoder
from starlette.background import BackgroundTasks
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from ...cache import Cache
from ...errors import ConfigurationError
from ...handles import UNSET, Unset
from ...keys import Template, code_identity
from .._proxy import _validator
from ._auth import (
    GuardedRequest,
    dependency_inputs,
    header_name,
    marker_of,
    request_key,
    request_target,
    why_authenticated,
)
from ._state import cache_of

__all__ = ["cache_response"]

_REQUEST = "_freshlink_request"
_RESPONSE = "_freshlink_response"
# The current call's full arguments, for the loader (the key only carries key parameters).
_CALL: ContextVar[dict[str, Any]] = ContextVar("freshlink_response_call")
_CACHEABLE_STATUS = frozenset({200})
_SHAPE = "_freshlink_shape"
# The key part of a route that takes the Request: its method, host, path and query.
_TARGET = "_freshlink_target"


def _plain_type(annotation: Any) -> Any:
    return get_args(annotation)[0] if get_origin(annotation) is Annotated else annotation


def _is(annotation: Any, kind: type) -> bool:
    t = _plain_type(annotation)
    return isinstance(t, type) and issubclass(t, kind)


def _etag(payload: Any) -> str:
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(payload, bytes):
        digest.update(payload)
    else:
        text = json.dumps(jsonable_encoder(payload), sort_keys=True, default=str)
        digest.update(text.encode("utf-8", "surrogatepass"))
    # Weak: FastAPI serializes a stored result on each request; the bytes are equal, but
    # a strong ETag would promise byte equality of encodings we do not control.
    return f'W/"{digest.hexdigest()}"'


def _storable(record: dict[str, Any]) -> bool:
    return record.get("live") is None and "raised" not in record


def _shape(route: Any) -> str:
    """The response model's schema and settings: FastAPI applies them to a stored result."""
    model = getattr(route, "response_model", None)
    settings = [
        getattr(route, name, None)
        for name in (
            "response_model_include",
            "response_model_exclude",
            "response_model_by_alias",
            "response_model_exclude_unset",
            "response_model_exclude_defaults",
            "response_model_exclude_none",
        )
    ]
    try:
        schema: Any = pydantic.TypeAdapter(model).json_schema(mode="serialization")
    except Exception:  # a type pydantic cannot describe: its name is the best we have
        schema = repr(model)
    return json.dumps([schema, settings], sort_keys=True, default=repr)


def _with_shape(etag: str, shape: str) -> str:
    if not shape:
        return etag
    digest = hashlib.blake2b(f"{etag}\n{shape}".encode("utf-8", "surrogatepass"), digest_size=16)
    return f'W/"{digest.hexdigest()}"'


def _matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    opaque = etag.removeprefix("W/")
    return any(
        t.strip() == "*" or t.strip().removeprefix("W/") == opaque for t in header.split(",")
    )


def _headers(raw: list[tuple[bytes, bytes]]) -> list[list[str]]:
    return [
        [k.decode("latin-1"), v.decode("latin-1")] for k, v in raw if k.lower() != b"content-length"
    ]


def _added(
    after: list[tuple[bytes, bytes]], before: list[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The headers in ``after`` that ``before`` did not have (a multiset difference)."""
    left = Counter(before)
    out = []
    for h in after:
        if left[h]:
            left[h] -= 1
        else:
            out.append(h)
    return out


def _sets_cookie(headers: list[list[str]]) -> bool:
    return any(k.lower() == "set-cookie" for k, _ in headers)


class _Route:
    """One decorated endpoint: its parameters sorted out, and its loader per Cache."""

    def __init__(self, endpoint: Callable[..., Any], options: dict[str, Any]) -> None:
        self.endpoint = endpoint
        self.name = f"{endpoint.__module__}.{endpoint.__qualname__}"
        self.is_async = inspect.iscoroutinefunction(endpoint)
        self.options = options
        try:
            sig = inspect.signature(endpoint, eval_str=True)
        except (NameError, TypeError):
            sig = inspect.signature(endpoint)
        self.sig = sig
        self.request_name: str | None = None
        self.response_name: str | None = None
        plain: list[str] = []  # path, query, header, cookie, body parameters: the default key
        auth: dict[str, str] = {}
        inputs: dict[tuple[Any, ...], str] = {}  # request values read by dependencies
        for p in sig.parameters.values():
            if _is(p.annotation, HTTPConnection):
                self.request_name = p.name
            elif _is(p.annotation, Response):
                self.response_name = p.name
            elif _is(p.annotation, BackgroundTasks):
                raise ConfigurationError(
                    f"cache_response({self.name}): background tasks would only run on a "
                    f"cache miss; schedule them in an uncached route"
                )
            else:
                why = why_authenticated(p)
                if why is not None:
                    auth[p.name] = why
                if not isinstance(marker_of(p), params.Depends):
                    plain.append(p.name)
                else:
                    inputs.update(dependency_inputs(p))
        key = options["key"]
        fields: set[str] = set()
        for text in (key, *options["tags"]):
            if text is not None:
                fields.update(Template(text).fields)
        parts = set(Template(key).fields) if key is not None else set(plain)
        # Every parameter that may depend on the caller must be in the key: one of them
        # (a language read from the request) does not make the others (the user) safe.
        missing = [n for n in auth if n not in parts]
        self.per_user = bool(auth) and not missing
        if missing:
            raise ConfigurationError(
                f"cache_response({self.name}): the route depends on authentication through "
                f"{'; '.join(auth[n] for n in missing)}, but its key "
                f"does not name {', '.join(missing)}, so one user's response would be served "
                f"to others. Name it in key=, e.g. key='...:{{{missing[0]}...}}'; mark a "
                f"dependency that takes the Request but returns the same value for everyone "
                f"(it reads request.app) with @shared_dependency; or leave the route uncached"
            )
        # A value a dependency reads (pagination's ?page=) shapes the response; it is in the
        # key only as a parameter of the endpoint itself, which FastAPI fills from the same
        # request value. Compared by what FastAPI reads (an alias: ?p=), not by Python name.
        keyed = {request_key(sig.parameters[n]) for n in plain if n in parts}
        unkeyed = [k for k in inputs if k not in keyed]
        if unkeyed:
            reads = "; ".join(
                f"{inputs[k]} (the request value {'/'.join(k[:-1])!r}"
                f"{', every value' if k[-1] else ''})"
                for k in unkeyed
            )
            raise ConfigurationError(
                f"cache_response({self.name}): a dependency reads {reads}, which the key "
                f"does not hold, so two requests that differ only there would share one "
                f"response. Declare a parameter on the endpoint that FastAPI fills from the "
                f"same request value (the same name or alias; a list if the dependency's is "
                f"one) and keep it in the key; or leave the route uncached"
            )
        self.key_params = [n for n in sig.parameters if n in fields or (key is None and n in plain)]
        # An endpoint that takes the Request may read anything from it: its method, host, path
        # and query join the key, and it gets a GuardedRequest that refuses the rest (headers
        # other than its keyed Header() parameters, the body; credentials unless per-user).
        self.headers = frozenset(
            header_name(sig.parameters[n], marker)
            for n in self.key_params
            if isinstance(marker := marker_of(sig.parameters[n]), params.Header)
        )
        if self.request_name is not None:
            self.key_params.append(_TARGET)
            if key is not None:
                self.options = {**options, "key": f"{key}:{{{_TARGET}}}"}
        self.cache_control = options["cache_control"] or (
            "private, no-cache" if self.per_user else "no-cache"
        )
        self._bound: weakref.WeakKeyDictionary[Cache, Any] = weakref.WeakKeyDictionary()
        # Applied once to an unused Cache now, so a bad template fails at import, not on the
        # first request.
        self.loader(_validator())

    def loader(self, cache: Cache) -> Any:
        """The cached loader of this route in ``cache`` (built once per Cache)."""
        found = self._bound.get(cache)
        if found is not None:
            return found

        async def load(**_key: Any) -> dict[str, Any]:
            return await self.run(_CALL.get())

        load.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in self.key_params]
        )
        load.__module__ = self.endpoint.__module__
        load.__qualname__ = load.__name__ = self.endpoint.__qualname__
        opts = self.options
        version = f"{opts['version'] if opts['version'] is not None else 0}.r" + code_identity(
            self.endpoint
        )
        made = cache.cached(
            ttl=opts["ttl"],
            key=opts["key"],
            tags=opts["tags"],
            version=version,
            should_cache=_storable,
            # Like a view (``view_policy``): never refreshed in the background (FastAPI has
            # closed the request's dependencies, its database session, by then) and never
            # served stale, whatever the Cache's defaults.
            ahead=None,
            beta=0.0,
            stale_while_revalidate=0.0,
            stale_if_error=0.0,
            cache_none=True,
        )(load)
        self._bound[cache] = made
        return made

    def shape_of(self, route: Any) -> str:
        """What of FastAPI's route shapes the body of a stored result (its response model)."""
        if route is None:
            return ""
        # Kept on FastAPI's route (unhashable, so not a dict key): computed once per route.
        shape = getattr(route, _SHAPE, None)
        if not isinstance(shape, str):
            shape = _shape(route)
            setattr(route, _SHAPE, shape)
        return shape

    async def call_endpoint(self, kwargs: dict[str, Any]) -> Any:
        """Run the endpoint (a sync one in the thread pool, as FastAPI would)."""
        if self.is_async:
            return await self.endpoint(**kwargs)
        return await run_in_threadpool(self.endpoint, **kwargs)

    async def run(self, call: dict[str, Any]) -> dict[str, Any]:
        """The loader: run the endpoint and describe its result as a storable record."""
        record: dict[str, Any] = {"by": call["token"]}
        try:
            result = await self.call_endpoint(call["kwargs"])
        except HTTPException as exc:
            # An answer (404, 403), not a failure of the loader: never stored, never answered
            # with an older value, and only its own caller gets it.
            record["raised"] = exc
            return record
        if isinstance(result, Response):
            body = getattr(result, "body", None)
            headers = _headers(result.raw_headers)
            record.update(kind="response", status=result.status_code, headers=headers)
            if not isinstance(body, bytes):  # streaming or file: nothing to store
                record["live"] = result
                return record
            record.update(body=body, media=result.media_type, etag=_etag(body))
            if result.status_code not in _CACHEABLE_STATUS or _sets_cookie(headers):
                record["live"] = result
            return record
        sub: Response = call["response"]
        headers = _headers(_added(sub.raw_headers, call["before"]))
        status = sub.status_code
        record.update(kind="value", status=status, headers=headers, value=result)
        record["etag"] = _etag([status, headers, result])
        if status not in (None, *_CACHEABLE_STATUS) or _sets_cookie(headers):
            record["live"] = result
        return record

    async def serve(self, kwargs: dict[str, Any]) -> Any:
        """The wrapper FastAPI calls: serve from the cache, or a 304 for a matching ETag."""
        request: Request = kwargs[self.request_name] if self.request_name else kwargs.pop(_REQUEST)
        sub: Response = kwargs[self.response_name] if self.response_name else kwargs.pop(_RESPONSE)
        if request.method != "GET":
            return await self.call_endpoint(kwargs)
        keys = {n: kwargs[n] for n in self.key_params if n != _TARGET}
        if self.request_name:
            keys[_TARGET] = request_target(request)
            kwargs[self.request_name] = GuardedRequest(
                request, self.name, headers=self.headers, identity=self.per_user
            )
        chooser = self.options["cache"]
        cache = (
            cache_of(request.app)
            if chooser is None
            else chooser
            if isinstance(chooser, Cache)
            else chooser(request)
        )
        # Headers a dependency set on the Response (a request id) are this request's; only
        # what the endpoint adds is stored and replayed.
        before = list(sub.raw_headers)
        call = {"kwargs": kwargs, "response": sub, "before": before, "token": secrets.token_hex(8)}
        reset = _CALL.set(call)
        try:
            record = await self.loader(cache)(**keys)
        finally:
            _CALL.reset(reset)
        mine = record["by"] == call["token"]
        if "raised" in record:
            if mine:
                raise record["raised"]
            return await self.call_endpoint(kwargs)
        if "live" in record:
            # Not storable (it set a cookie, failed, streams): only its own caller may see
            # it; a concurrent caller that shared the load runs the endpoint itself.
            return record["live"] if mine else await self.call_endpoint(kwargs)
        etag = record["etag"]
        if record["kind"] == "value":
            etag = _with_shape(etag, self.shape_of(request.scope.get("route")))
        if _matches(request.headers.get("if-none-match"), etag):
            return Response(
                status_code=304, headers={"ETag": etag, "Cache-Control": self.cache_control}
            )
        if record["kind"] == "response":
            response = Response(content=record["body"], status_code=record["status"])
            response.raw_headers = [
                (k.encode("latin-1"), v.encode("latin-1")) for k, v in record["headers"]
            ] + [(b"content-length", str(len(record["body"])).encode("latin-1"))]
            response.headers["ETag"] = etag
            response.headers["Cache-Control"] = self.cache_control
            return response
        if not mine:  # the headers the endpoint set on its Response parameter, on a hit
            for k, v in record["headers"]:
                sub.headers.append(k, v)
            if record["status"] is not None:
                sub.status_code = record["status"]
        sub.headers["ETag"] = etag
        sub.headers["Cache-Control"] = self.cache_control
        return record["value"]


def cache_response(
    *,
    ttl: float | Unset | None = UNSET,
    key: str | None = None,
    tags: list[str] | tuple[str, ...] = (),
    version: str | int | None = None,
    cache: Cache | Callable[[Request], Cache] | None = None,
    cache_control: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Cache a GET route's result, keyed and tagged like ``cache.cached``, with ETag/304.

    Put it *below* ``@app.get(...)``. ``key`` and ``tags`` are templates over the route's
    parameters (``tags=["loan:{loan_id}"]``); without ``key`` the path, query, header and
    cookie parameters form it (an endpoint that takes the ``Request`` adds its method, host,
    path and query). A route that depends on authentication is refused unless
    ``key`` names the user (``key="me:{user.id}"``). ``cache`` defaults to the app's
    (see :func:`~freshlink.contrib.fastapi.lifespan`).
    """
    options = {
        "ttl": ttl,
        "key": key,
        "tags": tuple(tags),
        "version": version,
        "cache": cache,
        "cache_control": cache_control,
    }

    def decorate(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        route = _Route(endpoint, options)

        async def wrapper(**kwargs: Any) -> Any:
            return await route.serve(kwargs)

        given = list(route.sig.parameters.values())
        extra = []
        if route.request_name is None:
            extra.append(
                inspect.Parameter(_REQUEST, inspect.Parameter.KEYWORD_ONLY, annotation=Request)
            )
        if route.response_name is None:
            extra.append(
                inspect.Parameter(_RESPONSE, inspect.Parameter.KEYWORD_ONLY, annotation=Response)
            )
        tail = [p for p in given if p.kind is inspect.Parameter.VAR_KEYWORD]
        given = [p for p in given if p.kind is not inspect.Parameter.VAR_KEYWORD]
        wrapper.__signature__ = route.sig.replace(parameters=[*given, *extra, *tail])  # type: ignore[attr-defined]
        for attr in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(wrapper, attr, getattr(endpoint, attr, None))
        wrapper.freshlink_route = route  # type: ignore[attr-defined]
        return wrapper

    return decorate
