"""Django wiring: ``FRESHLINK['METRICS']``, a ready client as ``URL``, the ``--deploy`` check.

Django is configured as in test_django.py (``settings.configure()`` from ``django_project``).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings as django_settings

pytest.importorskip("pytest_django", reason="the Django tests use pytest-django's fixtures")

if not django_settings.configured:
    from django_project import settings as _project

    django_settings.configure(**{k: getattr(_project, k) for k in dir(_project) if k.isupper()})
django.setup()

import redis  # noqa: E402
from django.core.checks import run_checks  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.management.base import SystemCheckError  # noqa: E402
from django.test import Client  # noqa: E402
from prometheus_client import REGISTRY, CollectorRegistry  # noqa: E402

from freshlink import Cache  # noqa: E402
from freshlink.contrib.django import cache, get_cache  # noqa: E402
from freshlink.contrib.django.checks import check_settings  # noqa: E402
from freshlink.contrib.django.conf import get_state  # noqa: E402
from freshlink.testing import RedisServer, free_port  # noqa: E402

calls: list[int] = []


@cache.cached(ttl=60, key="rate:{loan_id}", tags=["loan:{loan_id}"])
def rate(loan_id: int) -> int:
    calls.append(loan_id)
    return loan_id * 10 + len(calls)


FN = f"{__name__}.rate"


def _requests(registry: Any, name: str, tier: str, result: str) -> float | None:
    return registry.get_sample_value(
        "freshlink_requests_total",
        {"cache": name, "function": FN, "tier": tier, "result": result},
    )


def _deploy_messages() -> list[Any]:
    return list(run_checks(tags=["freshlink"], include_deployment_checks=True))


@pytest.fixture(autouse=True)
def _fresh_calls() -> Iterator[None]:
    calls.clear()
    yield
    calls.clear()


# ---------------------------------------------------------------------------- METRICS


def test_metrics_registry_counts_the_configured_cache(settings: Any) -> None:
    registry = CollectorRegistry()
    settings.FRESHLINK = {"NAMESPACE": "djm", "METRICS": registry}
    assert rate(1) == rate(1)
    assert _requests(registry, "djm", "none", "miss") == 1.0
    assert _requests(registry, "djm", "l1", "hit") == 1.0
    response = Client().get("/freshlink/metrics")
    assert response.status_code == 200
    assert f'freshlink_loads_total{{cache="djm",function="{FN}"}} 1.0' in response.text


def test_metrics_true_uses_the_default_registry_and_survives_a_settings_change(
    settings: Any,
) -> None:
    settings.FRESHLINK = {"NAMESPACE": "djdefault", "METRICS": True}
    rate(2)
    assert get_state().exporter.registry is REGISTRY
    assert _requests(REGISTRY, "djdefault", "none", "miss") == 1.0
    # A change rebuilds the cache under the same name: the old exporter must have let go.
    settings.FRESHLINK = {"NAMESPACE": "djdefault", "METRICS": True, "DEFAULT_TTL": 30}
    rate(3)
    assert _requests(REGISTRY, "djdefault", "none", "miss") == 2.0


def test_metrics_off_attaches_nothing(settings: Any) -> None:
    settings.FRESHLINK = {"NAMESPACE": "djoff", "METRICS": False}
    assert get_state().exporter is None
    assert Client().get("/freshlink/metrics").status_code == 404


@pytest.mark.parametrize(
    ("bad", "says"),
    [(42, "CollectorRegistry"), ("no_such_module.REGISTRY", "cannot import the registry")],
)
def test_a_bad_metrics_value_is_a_system_check_error(settings: Any, bad: object, says: str) -> None:
    settings.FRESHLINK = {"METRICS": bad}
    messages = check_settings()
    assert [m.id for m in messages] == ["freshlink.E002"]
    assert "FRESHLINK['METRICS']" in messages[0].msg
    assert says in messages[0].msg
    assert messages[0].hint


# ---------------------------------------------------------------------------- URL = a client


@pytest.mark.redis
def test_url_may_be_a_ready_redis_client(settings: Any, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    settings.FRESHLINK = {"URL": client, "NAMESPACE": "djclient"}
    assert check_settings() == []
    first = rate(7)
    assert rate(7) == first
    assert calls == [7]
    other = Cache(redis_url, namespace="djclient")  # another process on the same Redis
    try:
        assert other.get(rate.key(7), tags=["loan:7"]) == first
    finally:
        other.close()
    get_cache().invalidate("loan:7")
    assert rate(7) != first


def test_url_of_another_type_is_a_system_check_error(settings: Any) -> None:
    settings.FRESHLINK = {"URL": 6379}
    [error] = check_settings()
    assert error.id == "freshlink.E001"
    assert "redis-py client" in error.msg


# ---------------------------------------------------------------------------- --deploy


@pytest.mark.redis
def test_deploy_check_passes_when_the_cache_answers(settings: Any, redis_url: str) -> None:
    settings.FRESHLINK = {"URL": redis_url, "NAMESPACE": "djup"}
    assert _deploy_messages() == []
    # and through manage.py, as a deploy pipeline runs it
    out = io.StringIO()
    call_command("check", "--deploy", "--tag", "freshlink", "--fail-level", "WARNING", stdout=out)
    assert "no issues" in out.getvalue()


@pytest.mark.redis
def test_deploy_check_warns_when_redis_is_down(settings: Any) -> None:
    port = free_port()  # nothing listens there
    settings.FRESHLINK = {"URL": f"redis://:s3cret@127.0.0.1:{port}/0", "NAMESPACE": "djdown"}
    [warning] = _deploy_messages()
    assert warning.id == "freshlink.W002"
    assert f"127.0.0.1:{port}" in warning.msg
    assert "s3cret" not in warning.msg  # never a password in a deploy log
    assert "FRESHLINK['URL']" in warning.hint
    assert run_checks(tags=["freshlink"]) == []  # only with --deploy
    with pytest.raises(SystemCheckError, match=r"freshlink\.W002"):
        call_command("check", "--deploy", "--tag", "freshlink", "--fail-level", "WARNING")


@pytest.mark.redis
@pytest.mark.slow
def test_deploy_check_gives_up_on_a_hung_server_with_a_client_that_never_times_out(
    settings: Any,
) -> None:
    with RedisServer() as server:
        # The app's own client, without a socket timeout: a PING to a hung server blocks forever.
        client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=None)
        settings.FRESHLINK = {"URL": client, "NAMESPACE": "djhung"}
        get_cache()  # built (and connected lazily) while the server still answers
        server.pause()
        try:
            [warning] = _deploy_messages()
        finally:
            server.resume()
        assert warning.id == "freshlink.W002"
        assert "no answer to PING within 2 s" in warning.msg
        assert _deploy_messages() == []  # resumed: reachable again
