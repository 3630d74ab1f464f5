"""Django: ``cached_view`` and ``{% freshlink_cache %}`` on the test client, real Redis and memory.

The views live in ``django_project/cached_views.py``; Django is configured as in test_django.py.
"""

from __future__ import annotations

import logging
from typing import Any

import django
import pytest
from django.conf import settings as django_settings

pytest.importorskip("pytest_django", reason="the Django tests use pytest-django's fixtures")

if not django_settings.configured:
    from django_project import settings as _project

    django_settings.configure(**{k: getattr(_project, k) for k in dir(_project) if k.isupper()})
django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.template import Context, engines  # noqa: E402
from django.test import Client  # noqa: E402

from django_project import cached_views  # noqa: E402
from freshlink import ConfigurationError, KeyTemplateError  # noqa: E402
from freshlink.contrib.django import cached_view, get_cache  # noqa: E402
from freshlink.contrib.django.templatetags.freshlink import FragmentError  # noqa: E402

renders = cached_views.renders
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
pytestmark = [pytest.mark.redis, pytest.mark.urls("django_project.cached_views")]


@pytest.fixture(params=["memory", "redis"])
def fl(request: pytest.FixtureRequest, settings: Any) -> Any:
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    settings.FRESHLINK = {"URL": url, "NAMESPACE": "djviews", "DEFAULT_TTL": 60}
    settings.MIDDLEWARE = MIDDLEWARE
    renders.clear()
    cached_views.LINKS.clear()
    cached_views.LINKS.update({7: "v1", 8: "w1"})
    return get_cache()


@pytest.fixture
def users(db: None) -> tuple[Client, Client]:
    ada, bob = Client(), Client()
    ada.force_login(User.objects.create_user("ada"))
    bob.force_login(User.objects.create_user("bob"))
    return ada, bob


def test_a_view_is_cached_round_trips_exactly_and_its_tag_drops_it(fl: Any) -> None:
    client = Client()
    first = client.get("/loans/7")
    second = client.get("/loans/7")
    assert renders == ["loan:7"]
    assert (second.status_code, second.reason_phrase, second.content) == (
        first.status_code,
        first.reason_phrase,
        first.content,
    )
    assert second.content == b"link v1"
    assert list(second.headers.items()) == list(first.headers.items())
    assert second["X-Link"] == "v1"
    client.get("/loans/8")
    cached_views.LINKS[7] = "v2"
    fl.invalidate("loan:7")
    assert client.get("/loans/7").content == b"link v2"
    assert client.get("/loans/8").content == b"link w1"
    assert renders == ["loan:7", "loan:8", "loan:7"]


@pytest.mark.parametrize("route", ["loan-page", "loan-view"])
def test_template_responses_and_class_based_views_are_cached_and_dropped(
    fl: Any, route: str
) -> None:
    client = Client()
    first = client.get(f"/{route}/7")
    again = client.get(f"/{route}/7")
    assert again.content == first.content
    assert b"v1" in again.content
    assert renders == [f"{route}:7"]
    cached_views.LINKS[7] = "v2"
    fl.invalidate("loan:7")
    assert b"v2" in client.get(f"/{route}/7").content
    assert renders == [f"{route}:7", f"{route}:7"]


def test_query_parameters_outside_query_are_ignored(fl: Any) -> None:
    client = Client()
    client.get("/listing?page=1&utm=a")
    client.get("/listing?utm=b&page=1")
    client.get("/listing?page=2")
    assert renders == ["listing:1", "listing:2"]


def test_per_user_keys_separate_users(fl: Any, users: tuple[Client, Client]) -> None:
    ada, bob = users
    assert ada.get("/mine").content == b"hello ada"
    assert bob.get("/mine").content == b"hello bob"
    assert ada.get("/mine").content == b"hello ada"
    assert renders == ["mine:ada", "mine:bob"]
    fl.invalidate(f"user:{User.objects.get(username='ada').pk}")
    ada.get("/mine")
    bob.get("/mine")
    assert renders == ["mine:ada", "mine:bob", "mine:ada"]


def test_a_csrf_token_is_never_shared_even_per_user(fl: Any, users: tuple[Client, Client]) -> None:
    # A CSRF token is one session's: another anonymous visitor (all keyed as user None), or
    # the same user on a second device, must get its own.
    ada, _ = users
    anonymous = [Client(), Client()]
    tokens = [c.get("/my-form").content for c in anonymous]
    assert tokens[0] != tokens[1]
    second_device = Client()
    second_device.force_login(User.objects.get(username="ada"))
    assert ada.get("/my-form").content != second_device.get("/my-form").content
    assert renders == ["my-form"] * 4


def test_views_reading_the_user_or_setting_cookies_are_never_stored(
    fl: Any, users: tuple[Client, Client], caplog: pytest.LogCaptureFixture
) -> None:
    ada, _ = users
    caplog.set_level(logging.DEBUG, "freshlink.views")
    assert ada.get("/greet").content == b"hi ada"
    assert Client().get("/greet").content == b"hi stranger"  # not Ada's page
    assert ada.get("/greet")["Vary"] == "Cookie"  # what Django itself says of it
    assert "seen" in ada.get("/visit").cookies
    assert "seen" in ada.get("/visit").cookies
    ada.get("/form")
    ada.get("/form")
    assert renders == ["greet", "greet", "greet", "visit", "visit", "form", "form"]
    reasons = " | ".join(r.getMessage() for r in caplog.records)
    assert "request.user" in reasons
    assert "Set-Cookie" in reasons
    assert "CSRF" in reasons


def test_a_user_read_by_a_middleware_makes_the_response_per_user(
    fl: Any, users: tuple[Client, Client], settings: Any
) -> None:
    settings.MIDDLEWARE = [*MIDDLEWARE, "django_project.cached_views.eager_user"]
    ada, bob = users
    ada.get("/loans/7")
    bob.get("/loans/7")
    assert renders == ["loan:7", "loan:7"]  # each a render: the session was read for them
    ada.get("/mine")
    ada.get("/mine")
    assert renders == ["loan:7", "loan:7", "mine:ada"]  # keyed by user: cached


def test_credentials_and_other_methods_pass_through(fl: Any) -> None:
    client = Client()
    client.get("/loans/7", HTTP_AUTHORIZATION="Bearer x")
    client.get("/loans/7", HTTP_AUTHORIZATION="Bearer x")
    client.post("/loans/7")
    assert renders == ["loan:7", "loan:7", "loan:7"]


def test_a_fragment_is_cached_and_dropped_by_its_tag(fl: Any) -> None:
    client = Client()
    assert client.get("/card/7").content == b"<b>v1</b>"
    assert client.get("/card/7").content == b"<b>v1</b>"
    cached_views.LINKS[7] = "v<2>"
    fl.invalidate("loan:7")
    assert client.get("/card/7").content == b"<b>v&lt;2&gt;</b>"
    assert client.get("/card/7").content == b"<b>v&lt;2&gt;</b>"  # escaped once, after a hit
    client.get("/card/8")
    fl.invalidate("card")  # a fixed tag drops every card
    client.get("/card/7")
    client.get("/card/8")
    assert renders == ["card:7", "card:7", "card:8", "card:7", "card:8"]


def test_a_per_user_fragment_is_keyed_by_its_user(fl: Any, users: tuple[Client, Client]) -> None:
    ada, bob = users
    assert ada.get("/badge").content == b"ada"
    assert ada.get("/badge").content == b"ada"
    assert bob.get("/badge").content == b"bob"
    assert renders == ["badge:ada", "badge:bob"]


def test_a_fragment_that_shows_the_user_without_a_user_key_is_refused() -> None:
    engine = engines["django"]
    for body in ("{{ user.username }}", "{% csrf_token %}", "{% if request.user %}x{% endif %}"):
        with pytest.raises(FragmentError, match="varies by user"):
            engine.from_string(
                "{% load freshlink %}{% freshlink_cache 60 hello %}"
                + body
                + "{% endfreshlink_cache %}"
            )
    with pytest.raises(ConfigurationError, match="unknown or repeated option"):
        engine.from_string(
            "{% load freshlink %}{% freshlink_cache 60 x using=1 %}{% endfreshlink_cache %}"
        )


def test_a_fragment_rendered_outside_a_request_and_its_tag_templates(fl: Any) -> None:
    template = engines["django"].from_string(
        '{% load freshlink %}{% freshlink_cache None "row" loan.id tags="loan:{loan.id}" %}'
        "{{ loan.link }}{% endfreshlink_cache %}"
    )
    assert template.render({"loan": {"id": 7, "link": "a"}}) == "a"
    assert template.render({"loan": {"id": 7, "link": "b"}}) == "a"  # cached, no expiry
    fl.invalidate("loan:7")
    assert template.render({"loan": {"id": 7, "link": "b"}}) == "b"
    with pytest.raises(KeyTemplateError, match=r"loan\.idd"):
        engines["django"].from_string(
            '{% load freshlink %}{% freshlink_cache 60 "row" tags="loan:{loan.idd}" %}'
            "{% endfreshlink_cache %}"
        ).render({"loan": {"id": 7}})


def test_programming_errors_fail_at_decoration() -> None:
    with pytest.raises(KeyTemplateError, match="loan_idd"):
        cached_view(tags=["loan:{loan_idd}"])(lambda request, loan_id: None)
    with pytest.raises(KeyTemplateError, match="user"):
        cached_view(tags=["user:{user}"])(lambda request: None)
    with pytest.raises(ConfigurationError, match="async"):

        @cached_view()
        async def view(request: Any) -> None: ...

    with pytest.raises(ConfigurationError, match="per_user"):
        cached_view(vary=["Authorization"])


# ---------------------------------------------------------------------------- code identity


def test_a_fragment_name_in_two_templates_keys_two_fragments(fl: Any) -> None:
    from django.template import Engine

    engine = engines["django"]
    nav = "{% load freshlink %}{% freshlink_cache 60 nav %}Hello {{ who }}{% endfreshlink_cache %}"
    first = engine.from_string(nav)
    assert first.render({"who": "alice"}) == "Hello alice"
    assert first.render({"who": "bob"}) == "Hello alice"  # cached: it is keyed by nothing
    other = engine.from_string(
        "{% load freshlink %}{% freshlink_cache 60 nav %}Other{% endfreshlink_cache %}"
    )
    assert other.render({}) == "Other"  # not the first template's markup
    # The same source in two named templates: two fragments.
    named = Engine(
        loaders=[("django.template.loaders.locmem.Loader", {"a.html": nav, "b.html": nav})],
        libraries={"freshlink": "freshlink.contrib.django.templatetags.freshlink"},
    )
    assert named.get_template("a.html").render(Context({"who": "carol"})) == "Hello carol"
    assert named.get_template("b.html").render(Context({"who": "dan"})) == "Hello dan"
    assert named.get_template("a.html").render(Context({"who": "eve"})) == "Hello carol"


def test_a_deploy_that_changes_a_block_serves_its_new_markup(fl: Any) -> None:
    engine = engines["django"]
    src = (
        "{% load freshlink %}{% freshlink_cache 60 card 7 %}"
        "{% if v > 5 %}big{% elif v > 0 %}<b>{{ v }}</b>{% endif %}{% endfreshlink_cache %}"
    )
    assert engine.from_string(src).render({"v": 1}) == "<b>1</b>"
    assert engine.from_string(src).render({"v": 2}) == "<b>1</b>"  # the same block: a hit
    # Only an {% elif %} changed (a token no node keeps): still another block.
    changed = src.replace("{% elif v > 0 %}", "{% elif v > 1 %}")
    assert engine.from_string(changed).render({"v": 3}) == "<b>3</b>"
    # The same tokens, nested otherwise: another block too.
    flat = "{% if a %}A{% endif %}{% if b %}B{% endif %}"
    nested = "{% if a %}A{% if b %}B{% endif %}{% endif %}"
    wrap = "{% load freshlink %}{% freshlink_cache 60 ab %}BODY{% endfreshlink_cache %}"
    assert engine.from_string(wrap.replace("BODY", flat)).render({"b": 1}) == "B"
    assert engine.from_string(wrap.replace("BODY", nested)).render({"b": 1}) == ""


def test_a_deploy_that_changes_a_view_or_its_version_renders_anew(fl: Any) -> None:
    from django.http import HttpResponse
    from django.test import RequestFactory

    request = RequestFactory().get("/page")

    def page_v1(request: Any) -> HttpResponse:
        renders.append("v1")
        return HttpResponse("old page")

    def page_v2(request: Any) -> HttpResponse:
        renders.append("v2")
        return HttpResponse("new page")

    assert cached_view(ttl=60, name="page")(page_v1)(request).content == b"old page"
    assert cached_view(ttl=60, name="page")(page_v1)(request).content == b"old page"
    assert cached_view(ttl=60, name="page")(page_v2)(request).content == b"new page"
    assert cached_view(ttl=60, name="page")(page_v2)(request).content == b"new page"
    cached_view(ttl=60, name="page", version="2")(page_v2)(request)
    assert renders == ["v1", "v2", "v2"]
