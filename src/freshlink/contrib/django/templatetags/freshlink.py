"""``{% load freshlink %}``: ``{% freshlink_cache %}`` caches a template fragment, keyed and tagged.

.. code-block:: html+django

    {% freshlink_cache 300 "loan-card" loan.id tags="loan:{loan.id} user:{loan.borrower_id}" %}
      ... expensive markup ...
    {% endfreshlink_cache %}

Like Django's ``{% cache %}``: a timeout in seconds (``None``: no expiry), the fragment's name
(quoted or bare), then the values it is keyed by. Then options: ``tags=`` (space-separated tag
templates: each ``{expression}`` is resolved in the context, encoded as a cached function's tag
is, so ``"loan:{loan.id}"`` with loan 7 is ``loan:7`` and ``invalidate("loan:7")`` drops the
fragment), and ``user=``: the current user's id, which makes the key per-user.

A fragment that shows the user must say so with ``user=``: a body that uses ``user``,
``perms``, ``csrf_token`` or ``request.user`` / ``.session`` / ``.COOKIES`` / ``.META.HTTP_COOKIE``
/ ``.META.HTTP_AUTHORIZATION`` without it fails when the template compiles
(:class:`FragmentError`, a :class:`~freshlink.errors.ConfigurationError`); a render that reads
them anyway (through a custom tag, say) is shown but not stored, with a logged warning (once
per fragment and reason).

The key also holds the template's name and a hash of the block's source: the same fragment
name in two templates never shares entries, and after a deploy that changes the block every
process renders the new markup at once (a template it includes is not part of that hash: when
only that one changes, rename the fragment).
"""

from __future__ import annotations

import re
from typing import Any

from django import template
from django.template.base import FilterExpression, Node, NodeList, TextNode, Variable
from django.utils.safestring import SafeData, mark_safe

from ....errors import ConfigurationError, KeyTemplateError
from ....handles import UNSET
from ....policy import check_ttl
from ..._viewcache import REFUSED, fetch_or_render, log_refusal, view_policy
from ..._views import fragment_key, interpolate, request_refusal, source_identity
from ..caching import watch_request
from ..conf import get_cache

__all__ = ["FragmentError", "FreshlinkCacheNode", "freshlink_cache", "register"]

register = template.Library()

_OPTIONS = frozenset({"tags", "user"})
_USER_WORDS = re.compile(
    r"(?<![\w.])(?:user|perms|csrf_token"
    r"|request\.(?:user|auser|session|COOKIES|META\.HTTP_COOKIE|META\.HTTP_AUTHORIZATION))\b"
)
_OPTION = re.compile(r"^(\w+)=(.+)$")


class FragmentError(template.TemplateSyntaxError, ConfigurationError):  # type: ignore[misc]
    """A ``{% freshlink_cache %}`` tag written wrongly (raised when the template compiles)."""


def _reads_user(nodelist: NodeList) -> str | None:
    for node in nodelist.get_nodes_by_type(Node):
        token = getattr(node, "token", None)
        if token is None or isinstance(node, TextNode):
            continue
        found = _USER_WORDS.search(token.contents)
        if found:
            return found.group(0)
    return None


class FreshlinkCacheNode(Node):  # type: ignore[misc]
    """The compiled ``{% freshlink_cache %}``: renders its body through the FRESHLINK cache."""

    def __init__(
        self,
        nodelist: NodeList,
        ttl: FilterExpression,
        name: str,
        parts: list[FilterExpression],
        tags: FilterExpression | None,
        user: FilterExpression | None,
        ident: str,
    ) -> None:
        self.nodelist = nodelist
        self.ident = ident
        self.ttl = ttl
        self.name = name
        self.parts = parts
        self.tags = tags
        self.user = user

    def _ttl(self, context: Any) -> float | None:
        value = self.ttl.resolve(context)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise ConfigurationError(
                    f"freshlink_cache {self.name!r}: the timeout {value!r} is not a number"
                ) from None
        return check_ttl(value, f"freshlink_cache {self.name!r} timeout")

    def _tags(self, context: Any) -> tuple[str, ...]:
        if self.tags is None:
            return ()
        text = self.tags.resolve(context)
        if not isinstance(text, str):
            raise KeyTemplateError(f"freshlink_cache tags= must be a str, got {text!r}")

        def resolve(expression: str) -> Any:
            try:
                return Variable(expression).resolve(context)
            except template.VariableDoesNotExist as exc:
                raise KeyTemplateError(
                    f"freshlink_cache {self.name!r}: tag placeholder {{{expression}}}: {exc}"
                ) from None

        return tuple(interpolate(t, resolve) for t in text.split())

    def render(self, context: Any) -> str:
        """Serve the fragment from the cache, or render, store and return it."""
        ttl = self._ttl(context)
        user = UNSET if self.user is None else self.user.resolve(context)
        parts = [p.resolve(context) for p in self.parts]
        key = fragment_key(self.name, parts, user, ident=self.ident)
        cache = get_cache()
        request = getattr(context, "request", None)

        def render() -> tuple[str, Any]:
            with watch_request(request) as reads:
                body = self.nodelist.render(context)
            refusal = request_refusal(reads, user is not UNSET, user)
            if refusal is not None:
                log_refusal(f"fragment {self.name!r}", refusal)
                return body, REFUSED
            return body, [str.__str__(body), isinstance(body, SafeData)]  # exact str: storable

        native, stored = fetch_or_render(
            cache,
            f"fragment:{self.name}",
            key,
            self._tags(context),
            view_policy(cache, ttl),
            render,
        )
        if native is not None:
            return native  # type: ignore[no-any-return]
        text, safe = stored
        return mark_safe(text) if safe else str(text)


@register.tag("freshlink_cache")  # type: ignore[untyped-decorator]
def freshlink_cache(parser: Any, token: Any) -> FreshlinkCacheNode:
    """Compile ``{% freshlink_cache TTL NAME [VALUE...] [tags="..."] [user=EXPR] %}``."""
    bits = token.split_contents()
    tag = bits[0]
    if len(bits) < 3:
        raise FragmentError(f"'{tag}' needs a timeout and a fragment name: {{% {tag} 300 card %}}")
    name = bits[2]
    if len(name) >= 2 and name[0] == name[-1] and name[0] in "\"'":
        name = name[1:-1]
    if not name:
        raise FragmentError(f"'{tag}': the fragment name is empty")
    parts: list[FilterExpression] = []
    options: dict[str, FilterExpression] = {}
    for bit in bits[3:]:
        match = _OPTION.match(bit)
        if match:
            option = match.group(1)
            if option not in _OPTIONS or option in options:
                raise FragmentError(
                    f"'{tag}': unknown or repeated option {option!r} (options: tags, user)"
                )
            options[option] = parser.compile_filter(match.group(2))
        elif options:
            raise FragmentError(f"'{tag}': the key values come before tags= and user=")
        else:
            parts.append(parser.compile_filter(bit))
    # The parser pops tokens off the end of its (reversed) list: what the body consumed is the
    # tail of this copy beyond what is left (the end tag is put back, deleted below).
    pending = list(parser.tokens)
    nodelist = parser.parse(("endfreshlink_cache",))
    body = [(t.token_type.name, t.contents) for t in reversed(pending[len(parser.tokens) :])]
    parser.delete_first_token()
    # The block's identity: its template and its source (the tag and the body's tokens), so
    # the same name in another template, or this block after a deploy changed it, has other keys.
    origin = getattr(parser, "origin", None)
    template_name = getattr(origin, "template_name", None) or getattr(origin, "name", None)
    ident = source_identity(str(template_name), repr([token.contents, body]))
    used = _reads_user(nodelist)
    if used is not None and "user" not in options:
        raise FragmentError(
            f"'{tag}' {name!r}: the fragment uses {used!r}, so it varies by user; key it by "
            f"user with user=request.user.pk, or move {used!r} out of the fragment"
        )
    return FreshlinkCacheNode(
        nodelist,
        parser.compile_filter(bits[1]),
        name,
        parts,
        options.get("tags"),
        options.get("user"),
        ident,
    )
