"""A Jinja2 extension: ``{% freshlink_cache %}`` caches a template fragment, keyed and tagged.

.. code-block:: html+jinja

    {% freshlink_cache "loan-card", loan.id, ttl=300, tags=["loan:%d" % loan.id] %}
      ... expensive markup ...
    {% endfreshlink_cache %}

The first argument names the fragment; the other positional arguments are the values it is
keyed by (typed: ``7`` and ``"7"`` are different keys). Options: ``ttl=`` (seconds, ``None``:
no expiry; default: the cache's), ``tags=`` (a list of tags, or one tag), and ``user=``: the
current user's id, which makes the key per-user. ``invalidate("loan:7")`` drops every fragment
tagged ``loan:7`` at once, in every process, exactly like a cached function's entries. The key
also holds the template's name and a hash of the block's source: the same fragment name in two
templates never shares entries, and after a deploy that changes the block every process renders
the new markup at once (a template it includes is not part of that hash: when only that one
changes, rename the fragment).

A fragment that shows who the user is must be keyed by the user: a body that names
``user``, ``session``, ``current_user``, ``csrf_token``, ``perms``, ``g.user`` (or
``g.get("user")``) or ``request.cookies`` / ``.authorization`` / ``.headers`` without ``user=``
fails when the template is compiled
(:class:`FragmentError`, a :class:`~freshlink.errors.ConfigurationError`), and a render that
reads the session or cookies anyway (seen by the ``freshlink_watch`` hook; Flask installs one)
is shown but not stored, with a logged warning (once per fragment and reason).

Flask's :class:`~freshlink.contrib.flask.Freshlink` registers it on each app. Elsewhere, add it
yourself and say which Cache it uses: ``env = Environment(extensions=[FreshlinkExtension])``,
then ``env.freshlink_cache = cache`` (a Cache, or a function returning one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..cache import Cache
from ..errors import ConfigurationError, MissingDependencyError
from ..handles import UNSET
from ..keys import check_tag
from ..policy import check_ttl
from ._viewcache import REFUSED, fetch_or_render, log_refusal, view_policy
from ._views import Reads, fragment_key, request_refusal, source_identity

try:
    from jinja2 import TemplateSyntaxError, Undefined, nodes
    from jinja2.ext import Extension
    from jinja2.parser import Parser
    from markupsafe import Markup
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise MissingDependencyError(
        "freshlink.contrib.jinja needs Jinja2: pip install 'freshlink[flask]'"
    ) from exc

__all__ = ["FragmentError", "FreshlinkExtension"]

_OPTIONS = frozenset({"ttl", "tags", "user"})
#: Names whose use in a fragment shows the user (Flask's globals, Flask-Login's, and ``user``
#: and ``perms``, which Django's context processors and most apps' contexts name the user by).
_USER_NAMES = frozenset({"session", "current_user", "csrf_token", "user", "perms"})
#: ``name.attr``, ``name["attr"]`` or ``name.get("attr")`` that shows the user.
_USER_ATTRS = {
    "request": frozenset({"cookies", "authorization", "headers", "user", "session", "COOKIES"}),
    "g": frozenset({"user", "current_user"}),
}


class FragmentError(TemplateSyntaxError, ConfigurationError):
    """A ``{% freshlink_cache %}`` tag written wrongly (raised when the template compiles)."""


def _attr(node: nodes.Node) -> tuple[str, object] | None:
    """``(name, attribute)`` of ``name.attr``, ``name["attr"]`` or ``name.get("attr")``."""
    if isinstance(node, nodes.Call):
        func = node.node
        if not (isinstance(func, nodes.Getattr) and func.attr == "get" and node.args):
            return None
        base, first = func.node, node.args[0]
        attr = first.value if isinstance(first, nodes.Const) else None
    elif isinstance(node, nodes.Getattr):
        base, attr = node.node, node.attr
    elif isinstance(node, nodes.Getitem):
        base, attr = node.node, node.arg.value if isinstance(node.arg, nodes.Const) else None
    else:
        return None
    return (base.name, attr) if isinstance(base, nodes.Name) else None


def _reads_user(body: list[nodes.Node]) -> str | None:
    for top in body:
        for node in top.find_all((nodes.Name, nodes.Getattr, nodes.Getitem, nodes.Call)):
            if isinstance(node, nodes.Name):
                if node.name in _USER_NAMES and node.ctx == "load":
                    return node.name
                continue
            found = _attr(node)
            if found is not None and found[1] in _USER_ATTRS.get(found[0], ()):
                return f"{found[0]}.{found[1]}"
    return None


@contextlib.contextmanager
def _no_watch() -> Iterator[Reads]:
    yield Reads()


class FreshlinkExtension(Extension):
    """``{% freshlink_cache name, *key_parts, ttl=, tags=, user= %}...{% endfreshlink_cache %}``."""

    tags = {"freshlink_cache"}

    def __init__(self, environment: Any) -> None:
        super().__init__(environment)
        environment.extend(freshlink_cache=None, freshlink_watch=_no_watch)

    def parse(self, parser: Parser) -> nodes.Node:
        """Parse the tag's arguments and body; check the body against ``user=``."""
        lineno = next(parser.stream).lineno
        args: list[nodes.Expr] = []
        options: dict[str, nodes.Expr] = {}
        while parser.stream.current.type != "block_end":
            if args or options:
                parser.stream.expect("comma")
            if parser.stream.current.type == "name" and parser.stream.look().type == "assign":
                option = parser.stream.current.value
                if option not in _OPTIONS or option in options:
                    parser.fail(
                        f"freshlink_cache: unknown or repeated option {option!r} "
                        f"(options: {', '.join(sorted(_OPTIONS))})",
                        lineno,
                        FragmentError,
                    )
                parser.stream.skip(2)
                options[option] = parser.parse_expression()
            elif options:
                parser.fail(
                    "freshlink_cache: key values come before options", lineno, FragmentError
                )
            else:
                args.append(parser.parse_expression())
        if not args:
            parser.fail('freshlink_cache needs a fragment name: {% freshlink_cache "card" %}',
                        lineno, FragmentError)  # fmt: skip
        body = parser.parse_statements(("name:endfreshlink_cache",), drop_needle=True)
        used = _reads_user(body)
        if used is not None and "user" not in options:
            parser.fail(
                f"freshlink_cache: the fragment reads {used!r}, so it varies by user; key it "
                f"by user with user=<the user's id>, or move {used!r} out of the fragment",
                lineno,
                FragmentError,
            )
        # The block's identity: its template and its parsed source (the tag's arguments and
        # body; a node's repr is its fields, without line numbers). Another template's block
        # of the same name, or this one after a deploy changed it, gets other keys.
        ident = source_identity(parser.name, repr([args, options, body]))
        call = self.call_method(
            "_render",
            [args[0], nodes.Const(ident), nodes.List(args[1:])],
            [nodes.Keyword(k, v) for k, v in options.items()],
        )
        return nodes.CallBlock(call, [], [], body).set_lineno(lineno)

    def _cache(self) -> Cache:
        found = getattr(self.environment, "freshlink_cache", None)
        cache = found() if callable(found) and not isinstance(found, Cache) else found
        if not isinstance(cache, Cache):
            raise ConfigurationError(
                "freshlink_cache: the environment has no Cache; set env.freshlink_cache = cache "
                "(Flask: Freshlink(app) does it)"
            )
        return cache

    def _render(
        self,
        name: Any,
        ident: str,
        parts: list[Any],
        caller: Callable[[], str],
        ttl: Any = UNSET,
        tags: Any = (),
        user: Any = UNSET,
    ) -> str:
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"freshlink_cache: the name must be a non-empty str: {name!r}")
        rendered_tags = (tags,) if isinstance(tags, str) else tuple(tags)
        for tag in rendered_tags:
            check_tag(tag)
        cache = self._cache()
        policy = view_policy(cache, ttl if ttl is UNSET else check_ttl(ttl, "freshlink_cache ttl"))
        # An undefined value (an anonymous user's missing id) keys like None, as it renders "".
        parts = [None if isinstance(p, Undefined) else p for p in parts]
        if isinstance(user, Undefined):
            user = None
        key = fragment_key(name, parts, user, ident=ident)
        watch: Callable[[], contextlib.AbstractContextManager[Reads]] = getattr(
            self.environment, "freshlink_watch", _no_watch
        )

        def render() -> tuple[str, Any]:
            with watch() as reads:
                body = caller()
            refusal = request_refusal(reads, user is not UNSET, user)
            if refusal is not None:
                log_refusal(f"fragment {name!r}", refusal)
                return body, REFUSED
            return body, [str.__str__(body), isinstance(body, Markup)]

        native, stored = fetch_or_render(
            cache, f"fragment:{name}", key, rendered_tags, policy, render
        )
        if native is not None:
            return native  # type: ignore[no-any-return]
        text, markup = stored
        return Markup(text) if markup else str(text)
