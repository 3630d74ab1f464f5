"""A Jinja2 extension: ``{% freshlink_cache %}`` caches a template fragment, keyed and tagged.

.. code-block:: html+jinja

    {% freshlink_cache "loan-card", loan.id, ttl=300, tags=["loan:%d" % loan.id] %}
      ... expensive markup ...
    {% endfreshlink_cache %}

The first argument names the fragment; the other positional arguments are the values it is
keyed by (typed: ``7`` and ``"7"`` are different keys). Options: ``ttl=`` (seconds, ``None``:
no expiry; default: the cache's), ``tags=`` (a list of tags, or one tag), and ``user=``: the
current user's id, which makes the key per-user. ``invalidate("loan:7")`` drops every fragment
tagged ``loan:7`` at once, in every process, exactly like a cached function's entries.

A fragment that shows who the user is must be keyed by the user: a body that names
``session``, ``current_user``, ``csrf_token``, ``g.user`` or ``request.cookies`` /
``.authorization`` / ``.headers`` without ``user=`` fails when the template is compiled
(:class:`FragmentError`, a :class:`~freshlink.errors.ConfigurationError`), and a render that
reads the session or cookies anyway (seen by the ``freshlink_watch`` hook; Flask installs one)
is shown but not stored, with a logged warning.

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
from ._views import Reads, fragment_key, request_refusal

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
#: Names whose use in a fragment shows the user (Flask's globals and Flask-Login's).
_USER_NAMES = frozenset({"session", "current_user", "csrf_token"})
_USER_ATTRS = {"request": frozenset({"cookies", "authorization", "headers"}), "g": {"user"}}


class FragmentError(TemplateSyntaxError, ConfigurationError):
    """A ``{% freshlink_cache %}`` tag written wrongly (raised when the template compiles)."""


def _reads_user(body: list[nodes.Node]) -> str | None:
    for top in body:
        for node in top.find_all((nodes.Name, nodes.Getattr)):
            if isinstance(node, nodes.Name) and node.name in _USER_NAMES and node.ctx == "load":
                return node.name
            if (
                isinstance(node, nodes.Getattr)
                and isinstance(node.node, nodes.Name)
                and node.attr in _USER_ATTRS.get(node.node.name, ())
            ):
                return f"{node.node.name}.{node.attr}"
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
        call = self.call_method(
            "_render",
            [args[0], nodes.List(args[1:])],
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
        key = fragment_key(name, parts, user)
        watch: Callable[[], contextlib.AbstractContextManager[Reads]] = getattr(
            self.environment, "freshlink_watch", _no_watch
        )

        def render() -> tuple[str, Any]:
            with watch() as reads:
                body = caller()
            refusal = request_refusal(reads, user is not UNSET)
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
