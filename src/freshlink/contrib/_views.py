"""Caching views and template fragments: the policy Flask and Django share (pure: no framework).

Nothing here does I/O or imports a framework, so every rule is unit-tested exactly:

* :class:`ViewOptions`: a ``cached_view(...)`` call's options, checked at decoration;
* :func:`view_key` / :func:`fragment_key`: what a cached response or fragment is keyed by (its
  code identity, then the method, host, path, chosen query parameters, chosen request headers
  and, when keyed by user, the user); :meth:`ViewOptions.identity` / :func:`source_identity`:
  that identity, so a deploy that changes a view or a template's block changes its keys;
* :func:`request_refusal` / :func:`response_refusal`: why one response must not be stored (it
  sets a cookie, varies by user without a per-user key, is private, streaming, not cacheable);
* :class:`StoredResponse`: a response as stored (status, reason, headers without Set-Cookie,
  body), round-tripped exactly;
* :class:`Reads` and :func:`watched`: a record of what a handler read that identifies its user.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import string
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError, KeyTemplateError
from ..handles import UNSET, Unset
from ..keys import Template, check_tag, check_version, code_identity, encode_arg
from ..policy import check_ttl

__all__ = [
    "CACHEABLE_STATUSES",
    "USER_HEADERS",
    "Reads",
    "Refusal",
    "StoredResponse",
    "ViewOptions",
    "fragment_key",
    "interpolate",
    "render_tags",
    "request_refusal",
    "response_refusal",
    "select_query",
    "source_identity",
    "view_key",
    "watched",
]

#: Statuses a cache may store without explicit freshness (RFC 9110, section 15.1).
CACHEABLE_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})
#: Request headers that identify a user: a response that varies by them is per-user.
USER_HEADERS = frozenset({"cookie", "authorization"})
_NO_STORE = frozenset({"private", "no-store", "no-cache"})
_HEADER_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


def _digest(parts: object) -> str:
    data = json.dumps(parts, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


# ---------------------------------------------------------------------------- options


PerUser = bool | Callable[..., Any]


@dataclass(frozen=True, slots=True)
class ViewOptions:
    """The checked options of one ``cached_view``: TTL, tag templates, key parts, per-user."""

    ttl: float | Unset | None
    tags: tuple[Template, ...]
    vary: tuple[str, ...]
    query: bool | frozenset[str]
    per_user: PerUser
    version: str | int | None = None

    @classmethod
    def build(
        cls,
        ttl: Any = UNSET,
        tags: Iterable[str] = (),
        vary: Iterable[str] = (),
        query: bool | Iterable[str] = True,
        per_user: PerUser = False,
        version: str | int | None = None,
    ) -> ViewOptions:
        """Check every option now (a mistake fails at import, not on the first request)."""
        checked_ttl = ttl if isinstance(ttl, Unset) else check_ttl(ttl)
        if isinstance(tags, str):
            raise KeyTemplateError(f"tags must be a list of templates, not the str {tags!r}")
        templates = tuple(Template(t) for t in tags)
        if isinstance(vary, str):
            raise ConfigurationError(f"vary must be a list of header names, not the str {vary!r}")
        headers = tuple(vary)
        for h in headers:
            if not isinstance(h, str) or not h or not _HEADER_CHARS.issuperset(h):
                raise ConfigurationError(f"vary: {h!r} is not a request header name")
            if h.lower() in USER_HEADERS:
                raise ConfigurationError(
                    f"vary={h!r} would key the cache by a credential; use per_user= to key "
                    "responses by the user instead"
                )
        if isinstance(query, bool):
            chosen: bool | frozenset[str] = query
        elif isinstance(query, str):
            raise ConfigurationError(f"query must be True, False or a list of names, not {query!r}")
        else:
            chosen = frozenset(query)
            if not all(isinstance(q, str) and q for q in chosen):
                raise ConfigurationError(f"query: parameter names must be non-empty str: {query!r}")
        if not isinstance(per_user, bool) and not callable(per_user):
            raise ConfigurationError(
                f"per_user must be True, False or a callable returning the user, got {per_user!r}"
            )
        check_version(version)
        return cls(
            checked_ttl, templates, tuple(h.lower() for h in headers), chosen, per_user, version
        )

    def identity(self, view: Callable[..., Any]) -> str:
        """The part of a view's keys that changes with its code, ``version=`` or tag list.

        As a cached function's: a deploy that changes the view changes its keys, so no process
        serves a page the old code rendered. The tag templates count too (an entry is checked
        against its tags' generations by position).
        """
        version = self.version if self.version is not None else 0
        return _digest([str(version), code_identity(view), [t.text for t in self.tags]])[:16]

    def check_tags(self, params: Collection[str] | None, where: str) -> None:
        """Each tag placeholder must be a URL parameter of the view (or ``user``)."""
        if params is None:  # the view takes **kwargs: any URL parameter may be named
            return
        allowed = set(params) | ({"user"} if self.per_user is not False else set())
        for tpl in self.tags:
            unknown = [f for f in tpl.fields if f not in allowed]
            if unknown:
                raise KeyTemplateError(
                    f"tag template {tpl.text!r} of {where} names "
                    f"{', '.join(map(repr, unknown))}, which is not a URL parameter of the view"
                    + ("" if self.per_user is not False else " (nor 'user': per_user is off)")
                )


# ---------------------------------------------------------------------------- keys


def select_query(
    pairs: Iterable[tuple[str, str]], query: bool | Collection[str]
) -> list[list[str]]:
    """The query parameters that are part of the key, sorted by name (values keep their order)."""
    if query is False:
        return []
    kept = [[k, v] for k, v in pairs if query is True or k in query]
    return sorted(kept, key=lambda kv: kv[0])


def source_identity(*parts: str | None) -> str:
    """The identity of a template's block: a hash of the template's name and the block's source."""
    return _digest(list(parts))[:16]


def view_key(
    name: str,
    *,
    ident: str,
    method: str,
    host: str,
    path: str,
    query: Sequence[Sequence[str]],
    headers: Sequence[tuple[str, str | None]],
    user: object = UNSET,
) -> str:
    """The key of one response: ``view:<name>:<ident>:<digest of the request's key parts>``.

    ``ident``: the view's :meth:`ViewOptions.identity`.
    """
    who = None if isinstance(user, Unset) else ["u", encode_arg(user)]
    parts = _digest([method, host, path, query, list(map(list, headers)), who])
    return f"view:{name}:{ident}:{parts}"


def fragment_key(name: str, parts: Sequence[Any], user: object = UNSET, *, ident: str) -> str:
    """The key of one template fragment: its name, its block's identity (``ident``: the
    :func:`source_identity` of its template and source) and the values it is keyed by."""
    who = None if isinstance(user, Unset) else encode_arg(user)
    return f"fragment:{name}:{ident}:" + _digest([encode_arg(tuple(parts)), who])


def render_tags(templates: Sequence[Template], values: Mapping[str, Any]) -> tuple[str, ...]:
    """Render and check the tags of one response (the same encoding as a function's tags)."""
    return tuple(check_tag(t.render(values)) for t in templates)


def interpolate(text: str, resolve: Callable[[str], Any]) -> str:
    """Render a tag such as ``"loan:{loan.id}"``: each ``{expression}`` is ``resolve``-d.

    Values are encoded as in a function's tag (``loan:{loan_id}`` with 7 gives ``loan:7``), so
    a template's tag and ``@cache.invalidates("loan:{loan_id}")`` always agree.
    """
    out: list[str] = []
    values: dict[str, Any] = {}
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise KeyTemplateError(f"tag {text!r} is malformed: {exc}") from None
    for literal, field, spec, conv in parsed:
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if field is None:
            continue
        if not field:
            raise KeyTemplateError(f"tag {text!r}: an empty {{}}; write {{loan.id}}")
        slot = f"v{len(values)}"
        values[slot] = resolve(field)
        out.append("{" + slot + ("!" + conv if conv else "") + (":" + spec if spec else "") + "}")
    return check_tag(Template("".join(out)).render(values)) if values else check_tag(text)


# ---------------------------------------------------------------------------- refusals


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why one response is not stored; ``warn``: it looks like a mistake worth a warning."""

    reason: str
    warn: bool = True


class Reads:
    """What a handler read that identifies its user (the session, the cookies, a CSRF token)."""

    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen: list[str] = []

    def note(self, what: str) -> None:
        """Record that ``what`` was read (once)."""
        if what not in self.seen:
            self.seen.append(what)

    def __bool__(self) -> bool:
        return bool(self.seen)


_WATCHED_METHODS = (
    "__getitem__",
    "__contains__",
    "__iter__",
    "__len__",
    "get",
    "getlist",
    "items",
    "keys",
    "values",
    "lists",
    "to_dict",
    "copy",
)


@functools.cache
def _watching(base: type) -> type:
    def wrap(name: str) -> Callable[..., Any]:
        original = getattr(base, name)

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            self._freshlink_reads.note(self._freshlink_what)
            return original(self, *args, **kwargs)

        method.__name__ = name
        return method

    methods = {n: wrap(n) for n in _WATCHED_METHODS if hasattr(base, n)}
    return type(f"Watched{base.__name__}", (base,), methods)


def watched(mapping: Any, reads: Reads, what: str) -> Any:
    """A copy of ``mapping`` (a dict or MultiDict of cookies) that notes every read in ``reads``."""
    copy = _watching(type(mapping))(mapping)  # type: ignore[arg-type]
    copy._freshlink_reads = reads
    copy._freshlink_what = what
    return copy


#: What a handler reads that is one *session's*, not one user's: never shared, even per user
#: (a user's second device, or every anonymous visitor, would get the first one's token).
PER_SESSION = "a CSRF token"


#: ``request_refusal``'s default user: a known one (not anonymous).
_KNOWN = object()


def request_refusal(reads: Reads, keyed_by_user: bool, user: object = _KNOWN) -> Refusal | None:
    """A handler that read who the user is may only be stored under a per-user key, and only
    for a known ``user``: every anonymous visitor's key is the same (user None)."""
    if PER_SESSION in reads.seen:
        return Refusal(
            "it read a CSRF token, which belongs to one session: render forms outside a cached "
            "view or fragment"
        )
    if reads and not keyed_by_user:
        return Refusal(
            f"it read {', '.join(reads.seen)} (it varies by user) and its key has no user; "
            "key it by user (per_user=...) or stop reading the user"
        )
    if reads and user is None:
        return Refusal(
            f"it read {', '.join(reads.seen)} for an anonymous visitor (user None), whose key "
            "every other anonymous visitor shares",
            warn=False,
        )
    return None


def _tokens(value: str) -> list[str]:
    return [t.strip().lower() for t in value.split(",") if t.strip()]


def response_refusal(
    status: int,
    headers: Iterable[tuple[str, str]],
    *,
    keyed_by_user: bool,
    vary: Collection[str] = (),
    streaming: bool = False,
) -> Refusal | None:
    """Why a response must not be stored, or None. ``vary``: the header names in the key."""
    if streaming:
        return Refusal("it is a streaming response", warn=False)
    if status not in CACHEABLE_STATUSES:
        return Refusal(f"status {status} is not cacheable", warn=False)
    for name, value in headers:
        low = name.lower()
        if low == "set-cookie":
            return Refusal("it sets a cookie (Set-Cookie)")
        if low == "cache-control" and _NO_STORE.intersection(
            t.split("=", 1)[0] for t in _tokens(value)
        ):
            return Refusal(f"Cache-Control: {value}", warn=False)
        if low == "vary":
            for token in _tokens(value):
                if token == "*":
                    return Refusal("Vary: *")
                if token in USER_HEADERS:
                    if not keyed_by_user:
                        return Refusal(
                            f"Vary: {token.title()} (it varies by user) and its key has no "
                            "user; key it by user (per_user=...)"
                        )
                elif token not in vary:
                    return Refusal(f"Vary: {token} is not part of the key (add it to vary=)")
    return None


# ---------------------------------------------------------------------------- stored form


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """A response as stored: status, reason, headers (never Set-Cookie) and body."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def of(
        cls, status: int, reason: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> StoredResponse:
        """The stored form of a response (its Set-Cookie headers are dropped, defensively)."""
        kept = tuple((k, v) for k, v in headers if k.lower() != "set-cookie")
        return cls(status, reason, kept, bytes(body))

    def to_value(self) -> list[Any]:
        """A JSON- and msgpack-friendly value (the body in base64)."""
        return [
            self.status,
            self.reason,
            [list(h) for h in self.headers],
            base64.b64encode(self.body).decode("ascii"),
        ]

    @classmethod
    def from_value(cls, value: Any) -> StoredResponse:
        """Rebuild a stored response (exactly what :meth:`to_value` was given)."""
        status, reason, headers, body = value
        return cls(
            int(status),
            str(reason),
            tuple((str(k), str(v)) for k, v in headers),
            base64.b64decode(body),
        )
