"""Views cached with ``cached_view``, pages with ``{% freshlink_cache %}`` (test_django_views)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from django.middleware.csrf import get_token
from django.template import engines
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.decorators import method_decorator
from django.views import View

from freshlink.contrib.django import cached_view

renders: list[str] = []
LINKS: dict[int, str] = {}


def page(source: str, request: Any, **context: Any) -> HttpResponse:
    return HttpResponse(engines["django"].from_string(source).render(context, request))


@cached_view(ttl=60, tags=["loan:{loan_id}"])
def loan(request: Any, loan_id: int) -> HttpResponse:
    renders.append(f"loan:{loan_id}")
    response = HttpResponse(f"link {LINKS[loan_id]}", status=200, content_type="text/plain")
    response["X-Link"] = LINKS[loan_id]
    return response


@cached_view(ttl=60, per_user=True, tags=["user:{user}"])
def mine(request: Any) -> HttpResponse:
    renders.append(f"mine:{request.user.username}")
    return HttpResponse(f"hello {request.user.username}")


@cached_view(ttl=60)
def greet(request: Any) -> HttpResponse:  # reads the user without a per-user key
    renders.append("greet")
    return HttpResponse(f"hi {request.user.username or 'stranger'}")


@cached_view(ttl=60)
def visit(request: Any) -> HttpResponse:
    renders.append("visit")
    response = HttpResponse("welcome")
    response.set_cookie("seen", "1")
    return response


@cached_view(ttl=60)
def form(request: Any) -> HttpResponse:
    renders.append("form")
    return HttpResponse(f"<input name=csrf value={get_token(request)}>")


@cached_view(ttl=60, per_user=True)
def my_form(request: Any) -> HttpResponse:
    renders.append("my-form")
    return HttpResponse(f"<input name=csrf value={get_token(request)}>")


@cached_view(ttl=60, query=["page"])
def listing(request: Any) -> HttpResponse:
    renders.append(f"listing:{request.GET.get('page')}")
    return HttpResponse(f"page {request.GET.get('page')}")


CARD = (
    "{% load freshlink %}"
    '{% freshlink_cache 60 "loan-card" loan_id tags="loan:{loan_id} card" %}'
    "<b>{{ note }}{{ link }}</b>{% endfreshlink_cache %}"
)


def card(request: Any, loan_id: int) -> HttpResponse:
    class Note:
        def __str__(self) -> str:
            renders.append(f"card:{loan_id}")
            return ""

    return page(CARD, request, loan_id=loan_id, note=Note(), link=LINKS[loan_id])


BADGE = (
    "{% load freshlink %}"
    "{% freshlink_cache 60 badge user=request.user.pk %}{{ note }}{{ user.username }}"
    "{% endfreshlink_cache %}"
)


def badge(request: Any) -> HttpResponse:
    class Note:
        def __str__(self) -> str:
            renders.append(f"badge:{request.user.username}")
            return ""

    return page(BADGE, request, note=Note())


def eager_user(get_response: Any) -> Any:
    """A middleware that reads the user before every view (a "last seen" stamp, say)."""

    def middleware(request: Any) -> Any:
        request.user.is_authenticated  # noqa: B018 - evaluates the lazy user: reads the session
        return get_response(request)

    return middleware


@cached_view(ttl=60, tags=["loan:{loan_id}"])
def loan_page(request: Any, loan_id: int) -> TemplateResponse:
    """A TemplateResponse: rendered by Django after the view returns."""
    renders.append(f"loan-page:{loan_id}")
    template = engines["django"].from_string("<p>{{ link }}</p>")
    return TemplateResponse(request, template, {"link": LINKS[loan_id]})


@method_decorator(cached_view(ttl=60, tags=["loan:{loan_id}"]), name="get")
class LoanView(View):
    """A class-based view, decorated the way Django documents for function decorators."""

    def get(self, request: Any, loan_id: int) -> HttpResponse:
        renders.append(f"loan-view:{loan_id}")
        return HttpResponse(f"view {LINKS[loan_id]}")


urlpatterns = [
    path("loan-page/<int:loan_id>", loan_page),
    path("loan-view/<int:loan_id>", LoanView.as_view()),
    path("loans/<int:loan_id>", loan),
    path("mine", mine),
    path("greet", greet),
    path("visit", visit),
    path("form", form),
    path("my-form", my_form),
    path("listing", listing),
    path("card/<int:loan_id>", card),
    path("badge", badge),
]
