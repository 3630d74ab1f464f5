"""Flask: ``fl.cached_view`` and ``{% freshlink_cache %}`` on the test client, Redis and memory."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, g, make_response, render_template_string, request, session

from freshlink import ConfigurationError, KeyTemplateError
from freshlink.contrib.flask import Freshlink
from freshlink.contrib.jinja import FragmentError

fl = Freshlink()
renders: list[str] = []
LINKS: dict[int, str] = {}


@pytest.fixture(params=["memory", "redis"])
def url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture(autouse=True)
def _clean() -> None:
    renders.clear()


def create_app(url: str) -> Flask:
    app = Flask("views")
    app.config.update(FRESHLINK_URL=url, FRESHLINK_NAMESPACE="fv", SECRET_KEY="tests-only")

    @app.before_request
    def who() -> None:
        g.user_id = request.headers.get("X-User")

    @app.get("/loans/<int:loan_id>")
    @fl.cached_view(ttl=60, tags=["loan:{loan_id}"])
    def loan(loan_id: int) -> Any:
        renders.append(f"loan:{loan_id}")
        response = make_response(f"link {LINKS[loan_id]}", 200)
        response.headers["X-Link"] = LINKS[loan_id]
        response.headers.add("X-Multi", "a")
        response.headers.add("X-Multi", "b")
        return response

    @app.get("/mine")
    @fl.cached_view(ttl=60, per_user=lambda: g.user_id, tags=["user:{user}"])
    def mine() -> Any:
        renders.append(f"mine:{g.user_id}")
        return f"hello {g.user_id}"

    @app.get("/add/<item>")
    def add(item: str) -> Any:
        session["cart"] = [*session.get("cart", []), item]
        return "ok"

    @app.get("/cart")
    @fl.cached_view(ttl=60, per_user=lambda: session.get("uid"))  # anonymous: None
    def cart() -> Any:
        renders.append("cart")
        return "cart: " + ",".join(session.get("cart", []))

    @app.get("/greet")
    @fl.cached_view(ttl=60)
    def greet() -> Any:  # reads the session without a per-user key: never stored
        renders.append("greet")
        return f"hi {session.get('name', 'stranger')}"

    @app.get("/visit")
    @fl.cached_view(ttl=60)
    def visit() -> Any:
        renders.append("visit")
        response = make_response("welcome")
        response.set_cookie("seen", "1")
        return response

    @app.get("/theme")
    @fl.cached_view(ttl=60)
    def theme() -> Any:
        renders.append("theme")
        return f"theme {request.cookies.get('theme', 'light')}"

    @app.get("/page")
    @fl.cached_view(ttl=60, query=["page"], vary=["Accept-Language"])
    def page() -> Any:
        renders.append(f"page:{request.args.get('page')}:{request.headers.get('Accept-Language')}")
        return f"page {request.args.get('page')}"

    @app.get("/teapot")
    @fl.cached_view(ttl=60)
    def teapot() -> Any:
        renders.append("teapot")
        return "short and stout", 418

    @app.get("/card/<int:loan_id>")
    def card(loan_id: int) -> Any:
        return render_template_string(
            '{% freshlink_cache "loan-card", loan_id, tags=["loan:%d" % loan_id] %}'
            "<b>{{ note(loan_id) }}</b>{% endfreshlink_cache %}",
            loan_id=loan_id,
            note=lambda i: renders.append(f"card:{i}") or LINKS[i],
        )

    @app.get("/badge")
    def badge() -> Any:
        return render_template_string(
            '{% freshlink_cache "badge", user=g.user_id %}{{ session.get("name") }}'
            "{{ note() }}{% endfreshlink_cache %}",
            note=lambda: renders.append(f"badge:{g.user_id}") or "",
        )

    fl.init_app(app)
    return app


@pytest.fixture
def app(url: str) -> Iterator[Flask]:
    renders.clear()
    LINKS.clear()
    LINKS.update({7: "v1", 8: "w1"})
    app = create_app(url)
    yield app
    fl.close(app)


pytestmark = pytest.mark.redis


def test_a_view_is_cached_round_trips_exactly_and_its_tag_drops_it(app: Flask) -> None:
    client = app.test_client()
    first = client.get("/loans/7")
    second = client.get("/loans/7")
    assert renders == ["loan:7"]
    assert (second.status, second.data) == (first.status, first.data) == ("200 OK", b"link v1")
    assert second.headers.to_wsgi_list() == first.headers.to_wsgi_list()
    assert second.headers.getlist("X-Multi") == ["a", "b"]
    client.get("/loans/8")
    LINKS[7] = "v2"
    with app.app_context():
        fl.invalidate("loan:7")
    assert client.get("/loans/7").data == b"link v2"
    assert client.get("/loans/8").data == b"link w1"  # another loan's page was kept
    assert renders == ["loan:7", "loan:8", "loan:7"]


def test_query_and_vary_headers_are_part_of_the_key(app: Flask) -> None:
    client = app.test_client()
    client.get("/page?page=1&utm=a")
    client.get("/page?utm=b&page=1")  # utm is not in query=: the same page
    client.get("/page?page=2")
    client.get("/page?page=1", headers={"Accept-Language": "fr"})
    assert renders == ["page:1:None", "page:2:None", "page:1:fr"]


def test_per_user_keys_separate_users_and_the_user_tag(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/mine", headers={"X-User": "ada"}).data == b"hello ada"
    assert client.get("/mine", headers={"X-User": "bob"}).data == b"hello bob"
    assert client.get("/mine", headers={"X-User": "ada"}).data == b"hello ada"
    assert renders == ["mine:ada", "mine:bob"]
    with app.app_context():
        fl.invalidate("user:ada")
    client.get("/mine", headers={"X-User": "ada"})
    client.get("/mine", headers={"X-User": "bob"})
    assert renders == ["mine:ada", "mine:bob", "mine:ada"]


def test_responses_that_read_the_user_or_set_cookies_are_never_stored(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    with client.session_transaction() as sess:
        sess["name"] = "Ada"
    caplog.set_level(logging.DEBUG, "freshlink.views")
    assert client.get("/greet").data == b"hi Ada"
    anon = app.test_client()
    assert anon.get("/greet").data == b"hi stranger"  # not Ada's page
    assert client.get("/visit").headers["Set-Cookie"].startswith("seen=1")
    assert client.get("/visit").headers["Set-Cookie"].startswith("seen=1")
    client.set_cookie("theme", "dark")
    assert client.get("/theme").data == b"theme dark"
    assert anon.get("/theme").data == b"theme light"
    assert renders == ["greet", "greet", "visit", "visit", "theme", "theme"]
    reasons = [r.getMessage() for r in caplog.records]
    assert any("the session" in r for r in reasons)
    assert any("Set-Cookie" in r for r in reasons)
    assert any("request.cookies" in r for r in reasons)


def test_credentials_uncacheable_statuses_and_other_methods_pass_through(app: Flask) -> None:
    client = app.test_client()
    client.get("/loans/7", headers={"Authorization": "Bearer x"})
    client.get("/loans/7", headers={"Authorization": "Bearer x"})
    client.get("/teapot")
    assert client.get("/teapot").status_code == 418
    assert renders == ["loan:7", "loan:7", "teapot", "teapot"]


def test_a_fragment_is_cached_and_dropped_by_its_tag(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/card/7").data == b"<b>v1</b>"
    assert client.get("/card/7").data == b"<b>v1</b>"
    LINKS[7] = "v<2>"
    with app.app_context():
        fl.invalidate("loan:7")
    assert client.get("/card/7").data == b"<b>v&lt;2&gt;</b>"  # still escaped after a hit
    assert client.get("/card/7").data == b"<b>v&lt;2&gt;</b>"
    assert renders == ["card:7", "card:7"]


def test_a_per_user_fragment_is_keyed_by_its_user(app: Flask) -> None:
    client = app.test_client()
    client.get("/badge", headers={"X-User": "ada"})
    client.get("/badge", headers={"X-User": "ada"})
    client.get("/badge", headers={"X-User": "bob"})
    assert renders == ["badge:ada", "badge:bob"]


def test_a_fragment_that_reads_the_user_without_a_user_key_is_refused(app: Flask) -> None:
    with app.test_request_context(), pytest.raises(FragmentError, match="varies by user"):
        render_template_string(
            '{% freshlink_cache "hello" %}{{ current_user.name }}{% endfreshlink_cache %}'
        )
    with app.test_request_context(), pytest.raises(ConfigurationError, match="session"):
        render_template_string('{% freshlink_cache "x" %}{{ session.a }}{% endfreshlink_cache %}')


def test_a_fragment_reading_the_session_at_run_time_is_not_stored(app: Flask) -> None:
    hidden = lambda: session.get("name", "nobody")  # noqa: E731 - the static check cannot see it
    src = '{% freshlink_cache "hidden" %}{{ hidden() }}{% endfreshlink_cache %}'
    with app.test_request_context():
        session["name"] = "Ada"
        assert render_template_string(src, hidden=hidden) == "Ada"
    with app.test_request_context():
        assert render_template_string(src, hidden=hidden) == "nobody"


def test_a_user_loaded_before_the_view_makes_its_response_per_user(url: str) -> None:
    # The Flask tutorial's pattern: a before_request hook loads g.user from the session.
    app = Flask("hooked")
    app.config.update(FRESHLINK_URL=url, FRESHLINK_NAMESPACE="hooked", SECRET_KEY="tests-only")

    @app.before_request
    def load_user() -> None:
        g.user = session.get("name")

    @app.get("/hello")
    @fl.cached_view(ttl=60)
    def hello() -> Any:
        return f"hello {g.user}"

    @app.get("/hello-each")
    @fl.cached_view(ttl=60, per_user=lambda: g.user)
    def hello_each() -> Any:
        renders.append(f"each:{g.user}")
        return f"hello {g.user}"

    fl.init_app(app)
    ada, anon = app.test_client(), app.test_client()
    with ada.session_transaction() as sess:
        sess["name"] = "Ada"
    try:
        assert ada.get("/hello").data == b"hello Ada"
        assert anon.get("/hello").data == b"hello None"  # not Ada's page
        for _ in range(2):
            assert ada.get("/hello-each").data == b"hello Ada"
            assert anon.get("/hello-each").data == b"hello None"
        # Ada's page is stored under her key; an anonymous visitor's (user None, a key every
        # anonymous visitor shares) that read the session is rendered each time.
        assert renders == ["each:Ada", "each:None", "each:None"]
    finally:
        fl.close(app)


def test_programming_errors_fail_at_decoration() -> None:
    with pytest.raises(KeyTemplateError, match="loan_idd"):
        fl.cached_view(tags=["loan:{loan_idd}"])(lambda loan_id: "")
    with pytest.raises(KeyTemplateError, match="user"):
        fl.cached_view(tags=["user:{user}"])(lambda: "")
    with pytest.raises(ConfigurationError, match="per_user=True"):
        fl.cached_view(per_user=True)
    with pytest.raises(ConfigurationError, match="per_user"):
        fl.cached_view(vary=["Cookie"])
    with pytest.raises(ConfigurationError, match="ttl"):
        fl.cached_view(ttl=-1)


def test_concurrent_refused_renders_are_not_shared() -> None:
    # Single-flight shares one render between concurrent callers of a key: a refused one
    # (here, each caller's own cookie) must never reach the other caller.
    import threading
    import time

    app = Flask("race")
    app.config.update(FRESHLINK_URL="memory://", FRESHLINK_NAMESPACE="race")
    b_arrived = threading.Event()

    @app.before_request
    def arrived() -> None:
        if request.headers.get("X-Me") == "b":
            b_arrived.set()

    @app.get("/who")
    @fl.cached_view(ttl=60)
    def who() -> Any:
        me = request.headers["X-Me"]
        if me == "a":
            assert b_arrived.wait(timeout=30)
            time.sleep(0.2)  # lets "b" join this render's flight (either way it must get "b")
        response = make_response(me)
        response.set_cookie("me", me)
        return response

    fl.init_app(app)
    out: dict[str, bytes] = {}

    def call(me: str) -> None:
        out[me] = app.test_client().get("/who", headers={"X-Me": me}).data

    first = threading.Thread(target=call, args=("a",))
    first.start()
    while not (first.is_alive() and "a" not in out):
        time.sleep(0.01)
    time.sleep(0.1)  # "a" is in its view (or soon): "b" then finds its flight running
    call("b")
    first.join(timeout=30)
    fl.close(app)
    assert out == {"a": b"a", "b": b"b"}


# ---------------------------------------------------------------------------- code identity


def _jinja(cache: Any, **templates: str) -> Any:
    from jinja2 import DictLoader, Environment

    from freshlink.contrib.jinja import FreshlinkExtension

    env = Environment(extensions=[FreshlinkExtension], loader=DictLoader(templates))
    env.freshlink_cache = cache  # type: ignore[attr-defined]
    return env


def test_a_fragment_name_in_two_templates_keys_two_fragments(caches: list[Any]) -> None:
    from freshlink import Cache

    cache = Cache("memory://", namespace="ident")
    caches.append(cache)
    env = _jinja(cache)
    nav = '{% freshlink_cache "nav" %}Hello {{ who }}{% endfreshlink_cache %}'
    first = env.from_string(nav)
    assert first.render(who="alice") == "Hello alice"
    assert first.render(who="bob") == "Hello alice"  # cached: it is keyed by nothing
    other = env.from_string('{% freshlink_cache "nav" %}Other {{ 1 }}{% endfreshlink_cache %}')
    assert other.render() == "Other 1"  # not the first template's markup
    # The same source in another template: its own fragment too.
    named = _jinja(cache, **{"a.html": nav, "b.html": nav})
    assert named.get_template("a.html").render(who="carol") == "Hello carol"
    assert named.get_template("b.html").render(who="dan") == "Hello dan"
    assert named.get_template("a.html").render(who="eve") == "Hello carol"


def test_a_deploy_that_changes_a_block_serves_its_new_markup(redis_url: str) -> None:
    from freshlink import Cache

    old, new, again = (Cache(redis_url, namespace="deploy") for _ in range(3))
    try:
        src = '{% freshlink_cache "card", 7 %}<b>{{ v }}</b>{% endfreshlink_cache %}'
        page = "page.html"
        assert _jinja(old, **{page: src}).get_template(page).render(v="1") == "<b>1</b>"
        # Another process, the same template: served from the cache (the key is stable).
        assert _jinja(again, **{page: src}).get_template(page).render(v="2") == "<b>1</b>"
        changed = src.replace("<b>", "<i>").replace("</b>", "</i>")
        assert _jinja(new, **{page: changed}).get_template(page).render(v="3") == "<i>3</i>"
    finally:
        for c in (old, new, again):
            c.close()


def test_a_deploy_that_changes_a_view_or_its_version_renders_anew(redis_url: str) -> None:
    def serve(view: Any, version: Any = None) -> bytes:
        app = Flask("deployed")
        app.config.update(FRESHLINK_URL=redis_url, FRESHLINK_NAMESPACE="deploy-views")
        app.get("/page")(fl.cached_view(ttl=60, name="page", version=version)(view))
        fl.init_app(app)
        try:
            return app.test_client().get("/page").data
        finally:
            fl.close(app)

    def page_v1() -> str:
        return "old page"

    def page_v2() -> str:
        return "new page"

    def page_v2_new_template() -> str:
        return "new page"  # as if the template it renders changed (its code did not)

    assert serve(page_v1) == b"old page"
    assert serve(page_v1) == b"old page"
    assert serve(page_v2) == b"new page"  # not the page the old code rendered
    assert serve(page_v2_new_template) == b"new page"  # the same code: the same key
    renders.clear()

    def counted() -> str:
        renders.append("v")
        return "new page"

    serve(counted)
    serve(counted)
    serve(counted, version=2)
    assert renders == ["v", "v"]


@pytest.mark.parametrize(
    "body",
    [
        "Hello {{ user.name }}",
        "{{ perms }}",
        "{{ g.get('user') }}",
        "{{ g['user'].name }}",
        "{{ request.user }}",
    ],
)
def test_a_fragment_naming_the_user_needs_a_user_key(body: str) -> None:
    from jinja2 import Environment

    from freshlink.contrib.jinja import FreshlinkExtension

    env = Environment(extensions=[FreshlinkExtension])
    with pytest.raises(FragmentError, match="varies by user"):
        env.from_string('{% freshlink_cache "nav" %}' + body + "{% endfreshlink_cache %}")
    env.from_string(
        '{% freshlink_cache "nav", user=uid %}' + body + "{% endfreshlink_cache %}"
    )  # keyed by user: fine
    env.from_string(
        "{% freshlink_cache \"nav\" %}{{ g.get('locale') }}{{ username }}{% endfreshlink_cache %}"
    )  # not the user


def test_anonymous_visitors_of_a_per_user_view_never_share_a_page(url: str) -> None:
    # Every anonymous visitor's user is None: one key for all of them. A page that read the
    # session for one of them must not be served to the next.
    app = create_app(url)
    a, b = app.test_client(), app.test_client()
    a.get("/add/diamond-ring")
    b.get("/add/socks")
    assert a.get("/cart").data == b"cart: diamond-ring"
    assert b.get("/cart").data == b"cart: socks"
    assert renders == ["cart", "cart"]
    fl.get_cache(app).close()


def test_a_page_too_big_to_store_is_served_uncached(url: str) -> None:
    app = Flask("big")
    app.config.update(FRESHLINK_URL=url, FRESHLINK_NAMESPACE="big", FRESHLINK_MAX_VALUE_SIZE=4096)

    @app.get("/report")
    @fl.cached_view(ttl=60)
    def report() -> Any:
        renders.append("report")
        return "x" * 10_000

    fl.init_app(app)
    client = app.test_client()
    try:
        for _ in range(2):
            response = client.get("/report")
            assert (response.status_code, len(response.data)) == (200, 10_000)
        assert renders == ["report", "report"]  # rendered each time, never a 500
    finally:
        fl.close(app)
