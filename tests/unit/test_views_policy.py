"""The view/fragment policy shared by Flask and Django (pure), and its path through a Cache."""

from __future__ import annotations

import json

import pytest
from werkzeug.datastructures import ImmutableMultiDict

from freshlink import Cache, ConfigurationError, KeyEncodingError, KeyTemplateError
from freshlink.contrib._viewcache import REFUSED, fetch_or_render, log_refusal, view_policy
from freshlink.contrib._views import (
    Reads,
    StoredResponse,
    ViewOptions,
    fragment_key,
    interpolate,
    render_tags,
    request_refusal,
    response_refusal,
    select_query,
    source_identity,
    view_key,
    watched,
)
from freshlink.events import Event

# ---------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"ttl": 0}, "ttl"),
        ({"tags": "loan:{id}"}, "not the str"),
        ({"tags": ["loan:{0}"]}, "positional"),
        ({"vary": "Accept-Language"}, "not the str"),
        ({"vary": ["Accept Language"]}, "not a request header"),
        ({"vary": ["Cookie"]}, "per_user"),
        ({"query": "page"}, "query must be"),
        ({"query": [""]}, "non-empty"),
        ({"per_user": "yes"}, "per_user"),
    ],
)
def test_bad_options_fail_at_decoration(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises((ConfigurationError, KeyTemplateError), match=match):
        ViewOptions.build(**kwargs)  # type: ignore[arg-type]


def test_tag_placeholders_must_be_url_parameters_or_the_keyed_user() -> None:
    opts = ViewOptions.build(tags=["loan:{loan_id}", "user:{user}"], per_user=True)
    opts.check_tags(["loan_id"], "v")
    opts.check_tags(None, "v")  # **kwargs: anything goes
    with pytest.raises(KeyTemplateError, match=r"'loan_id'.*not a URL parameter"):
        opts.check_tags(["id"], "v")
    with pytest.raises(KeyTemplateError, match="nor 'user'"):
        ViewOptions.build(tags=["user:{user}"]).check_tags([], "v")
    assert ViewOptions.build(vary=["Accept-Language"]).vary == ("accept-language",)


# ---------------------------------------------------------------------------- keys


def test_select_query_keeps_the_chosen_parameters_sorted_by_name() -> None:
    pairs = [("utm", "x"), ("page", "2"), ("a", "2"), ("a", "1")]
    assert select_query(pairs, False) == []
    assert select_query(pairs, True) == [["a", "2"], ["a", "1"], ["page", "2"], ["utm", "x"]]
    assert select_query(pairs, frozenset({"page"})) == [["page", "2"]]


def _key(**changes: object) -> str:
    base: dict[str, object] = {
        "ident": "i1",
        "method": "GET",
        "host": "example.com",
        "path": "/loans/7",
        "query": [["page", "1"]],
        "headers": [("accept-language", "fr")],
    }
    base.update(changes)
    return view_key("app.loan", **base)  # type: ignore[arg-type]


def test_every_part_of_a_request_changes_the_view_key() -> None:
    key = _key()
    assert key == _key()
    assert key.startswith("view:app.loan:i1:")
    variants = [
        _key(ident="i2"),  # another version of the view's code
        _key(method="HEAD"),
        _key(host="other.example"),
        _key(path="/loans/8"),
        _key(query=[]),
        _key(headers=[("accept-language", None)]),
        _key(user=None),  # the anonymous user's page is not the shared one
        _key(user=7),
        _key(user="7"),
    ]
    assert len({key, *variants}) == len(variants) + 1


def test_fragment_keys_are_typed_per_user_and_per_block() -> None:
    assert fragment_key("card", [7], ident="a") == fragment_key("card", [7], ident="a")
    keys = {
        fragment_key("card", [7], ident="a"),
        fragment_key("card", ["7"], ident="a"),
        fragment_key("row", [7], ident="a"),
        fragment_key("card", [7], user=1, ident="a"),
        fragment_key("card", [7], user=2, ident="a"),
        fragment_key("card", [7], ident="b"),  # another template's block, or a changed one
    }
    assert len(keys) == 6
    with pytest.raises(KeyEncodingError):
        fragment_key("card", [object()], ident="a")
    assert source_identity("a.html", "x") == source_identity("a.html", "x")
    assert len({source_identity("a.html", "x"), source_identity("b.html", "x")}) == 2
    assert source_identity("a.html", "x") != source_identity("a.html", "y")


def _page_v1() -> str:
    return "v1"


def _page_v2() -> str:
    return "v2"


def test_a_views_identity_changes_with_its_code_version_and_tags() -> None:
    base = ViewOptions.build(tags=["loan:{loan_id}"])
    ident = base.identity(_page_v1)
    assert ident == ViewOptions.build(tags=["loan:{loan_id}"]).identity(_page_v1)
    others = {
        base.identity(_page_v2),
        ViewOptions.build(tags=["loan:{loan_id}"], version=2).identity(_page_v1),
        ViewOptions.build(tags=["loan:{loan_id}", "all"]).identity(_page_v1),
    }
    assert ident not in others
    assert len(others) == 3
    with pytest.raises(KeyTemplateError, match="version"):
        ViewOptions.build(version="has space")


def test_tags_are_encoded_as_a_cached_functions_tags() -> None:
    cache = Cache(namespace="t")

    @cache.cached(tags=["loan:{slug}"])
    def f(slug: str) -> str:
        return slug

    opts = ViewOptions.build(tags=["loan:{slug}"])
    for slug in ("7", "a:b", "x y"):
        assert render_tags(opts.tags, {"slug": slug}) == f.tags(slug)
        assert interpolate("loan:{loan.slug}", lambda _e, s=slug: s) == f.tags(slug)[0]


def test_interpolate_resolves_each_expression() -> None:
    seen: list[str] = []

    def resolve(expr: str) -> object:
        seen.append(expr)
        return {"loan.id": 7, "loan.user.pk": 42}[expr]

    assert interpolate("loan:{loan.id}:{loan.user.pk}", resolve) == "loan:7:42"
    assert seen == ["loan.id", "loan.user.pk"]
    assert interpolate("fixed", resolve) == "fixed"
    with pytest.raises(KeyTemplateError, match="empty"):
        interpolate("loan:{}", resolve)
    with pytest.raises(KeyTemplateError, match="malformed"):
        interpolate("loan:{x", resolve)


# ---------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("status", "headers", "keyed", "reason"),
    [
        (200, [("Set-Cookie", "a=1")], True, "sets a cookie"),
        (200, [("Vary", "Cookie, Accept-Encoding")], False, "Vary: Cookie"),
        (200, [("vary", "authorization")], False, "Vary: Authorization"),
        (200, [("Vary", "*")], True, "Vary: *"),
        (200, [("Vary", "Accept-Encoding")], True, "accept-encoding is not part of the key"),
        (200, [("Cache-Control", "private, max-age=60")], True, "private"),
        (200, [("Cache-Control", "no-store")], True, "no-store"),
        (500, [], True, "status 500"),
        (302, [], True, "status 302"),
    ],
)
def test_responses_that_must_not_be_stored(
    status: int, headers: list[tuple[str, str]], keyed: bool, reason: str
) -> None:
    refusal = response_refusal(status, headers, keyed_by_user=keyed)
    assert refusal is not None
    assert reason in refusal.reason


def test_responses_that_may_be_stored() -> None:
    ok = [("Content-Type", "text/html"), ("Cache-Control", "public, max-age=60")]
    assert response_refusal(200, ok, keyed_by_user=False) is None
    assert response_refusal(404, [], keyed_by_user=False) is None
    assert response_refusal(200, [("Vary", "Cookie")], keyed_by_user=True) is None
    vary = [("Vary", "Accept-Language")]
    assert response_refusal(200, vary, keyed_by_user=False, vary=["accept-language"]) is None
    streamed = response_refusal(200, ok, keyed_by_user=False, streaming=True)
    assert streamed is not None
    assert not streamed.warn


def test_a_handler_that_read_the_user_needs_a_user_key() -> None:
    reads = Reads()
    assert request_refusal(reads, keyed_by_user=False) is None
    reads.note("the session")
    reads.note("the session")
    refusal = request_refusal(reads, keyed_by_user=False)
    assert refusal is not None
    assert refusal is not None
    assert refusal.warn
    assert "read the session (it varies by user)" in refusal.reason
    assert request_refusal(reads, keyed_by_user=True) is None
    anonymous = request_refusal(reads, keyed_by_user=True, user=None)
    assert anonymous is not None
    assert "anonymous visitor" in anonymous.reason
    reads.note("a CSRF token")  # one session's: never shared, even under a user's key
    csrf = request_refusal(reads, keyed_by_user=True, user=7)
    assert csrf is not None
    assert "CSRF" in csrf.reason


@pytest.mark.parametrize("mapping", [{"theme": "dark"}, ImmutableMultiDict([("theme", "dark")])])
def test_watched_mappings_note_reads_and_keep_their_type(mapping: object) -> None:
    reads = Reads()
    copy = watched(mapping, reads, "cookies")
    assert isinstance(copy, type(mapping))
    assert not reads
    assert copy == mapping
    reads.seen.clear()  # == may read the contents; what counts is the handler's reads
    assert copy.get("theme") == "dark"  # type: ignore[attr-defined]
    assert reads.seen == ["cookies"]


# ---------------------------------------------------------------------------- stored form


def test_a_stored_response_round_trips_exactly_without_set_cookie() -> None:
    body = bytes(range(256))
    headers = [("Content-Type", "image/png"), ("Set-Cookie", "a=1"), ("X-A", "1"), ("X-A", "2")]
    stored = StoredResponse.of(203, "Non-Authoritative Information", headers, body)
    assert [h[0] for h in stored.headers] == ["Content-Type", "X-A", "X-A"]
    back = StoredResponse.from_value(json.loads(json.dumps(stored.to_value())))
    assert back == stored
    assert back.body == body


# ---------------------------------------------------------------------------- through a Cache


def test_a_refused_render_is_returned_but_not_stored_and_a_stored_one_is_served() -> None:
    cache = Cache(namespace="views")
    policy = view_policy(cache, 60)
    assert (policy.ttl, policy.stale_while_revalidate, policy.ahead) == (60.0, 0.0, None)
    renders: list[str] = []

    def refused() -> tuple[str, object]:
        renders.append("refused")
        return "mine", REFUSED

    assert fetch_or_render(cache, "f", "k1", ["t"], policy, refused) == ("mine", None)
    assert fetch_or_render(cache, "f", "k1", ["t"], policy, refused) == ("mine", None)
    assert renders == ["refused", "refused"]

    def stored() -> tuple[str, object]:
        renders.append("stored")
        return "native", ["value"]

    assert fetch_or_render(cache, "f", "k2", ["t"], policy, stored) == ("native", None)
    assert fetch_or_render(cache, "f", "k2", ["t"], policy, stored) == (None, ["value"])
    cache.invalidate("t")
    assert fetch_or_render(cache, "f", "k2", ["t"], policy, stored) == ("native", None)
    assert renders == ["refused", "refused", "stored", "stored"]


def test_a_render_that_raised_fails_its_own_caller_only() -> None:
    import threading

    cache = Cache(namespace="views")
    policy = view_policy(cache, 60)
    started, release = threading.Event(), threading.Event()
    out: dict[str, object] = {}

    def denied() -> tuple[str, object]:
        started.set()
        assert release.wait(timeout=30)
        raise PermissionError("not for you")

    def leader() -> None:
        try:
            fetch_or_render(cache, "f", "k", ["t"], policy, denied)
        except PermissionError as exc:
            out["leader"] = exc

    thread = threading.Thread(target=leader)
    thread.start()
    assert started.wait(timeout=30)
    follower = threading.Thread(
        target=lambda: out.setdefault(
            "follower", fetch_or_render(cache, "f", "k", ["t"], policy, lambda: ("ok", ["ok"]))
        )
    )
    follower.start()
    while not cache._engine.flight._calls:  # the leader's flight is running...
        threading.Event().wait(0.01)
    threading.Event().wait(0.2)  # ...and the follower has (most likely) joined it
    release.set()
    thread.join(timeout=30)
    follower.join(timeout=30)
    assert isinstance(out["leader"], PermissionError)
    assert out["follower"] in [("ok", None), (None, ["ok"])]  # its own render, or a stored one


def test_a_render_that_raced_an_invalidation_is_not_kept() -> None:
    # The same stale-set rule as a cached function: generations are read before rendering.
    cache = Cache(namespace="views")
    policy = view_policy(cache, 60)
    version = ["old"]

    def render_during_write() -> tuple[str, object]:
        seen = version[0]
        version[0] = "new"
        cache.invalidate("loan:7")  # the write lands while the page renders
        return seen, [seen]

    assert fetch_or_render(cache, "f", "k", ["loan:7"], policy, render_during_write)[0] == "old"
    got = fetch_or_render(cache, "f", "k", ["loan:7"], policy, lambda: ("fresh", ["fresh"]))
    assert got == ("fresh", None)  # the old page was never served from the cache


def test_a_render_that_raised_is_an_error_event_and_stores_nothing() -> None:
    cache = Cache(namespace="views")
    policy = view_policy(cache, 60)
    errors: list[Event] = []
    cache.events.on("error", errors.append)

    def denied() -> tuple[str, object]:
        raise PermissionError("not for you")

    with pytest.raises(PermissionError):
        fetch_or_render(cache, "app.page", "k", ["t"], policy, denied)
    assert [(e.function, type(e.error)) for e in errors] == [("app.page", PermissionError)]
    # Nothing was stored: the next caller renders its own page.
    assert fetch_or_render(cache, "app.page", "k", ["t"], policy, lambda: ("ok", ["ok"])) == (
        "ok",
        None,
    )
    assert len(errors) == 1


def test_a_refusal_warns_once_per_view_and_reason_then_logs_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from freshlink.contrib._views import Refusal

    caplog.set_level(logging.DEBUG, "freshlink.views")
    what = f"view tests.once.{id(caplog)}"  # not warned about by any other test
    for path in ("/loans/7", "/loans/8", "/loans/7"):
        log_refusal(what, Refusal("it sets a cookie (Set-Cookie)"), f" ({path})")
    log_refusal(what, Refusal("Vary: *"), " (/loans/7)")
    log_refusal(what, Refusal("status 500 is not cacheable", warn=False))
    prefix = f"freshlink: not caching {what}"
    levels = [
        (r.levelname, r.getMessage().removeprefix(prefix).split(": ", 1)[1]) for r in caplog.records
    ]
    assert levels == [
        ("WARNING", "it sets a cookie (Set-Cookie)"),
        ("DEBUG", "it sets a cookie (Set-Cookie)"),
        ("DEBUG", "it sets a cookie (Set-Cookie)"),
        ("WARNING", "Vary: *"),
        ("DEBUG", "status 500 is not cacheable"),
    ]
    assert "(/loans/8)" in caplog.records[1].getMessage()
