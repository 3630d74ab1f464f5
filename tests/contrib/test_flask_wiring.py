"""Flask wiring: FRESHLINK_METRICS attaches PrometheusMetrics; FRESHLINK_URL may be a client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from flask import Flask, jsonify
from prometheus_client import REGISTRY, CollectorRegistry

from freshlink import Cache, ConfigurationError
from freshlink.contrib.flask import Freshlink

fl = Freshlink()
loads: list[int] = []


@fl.cached(ttl=60, key="link:{loan_id}", tags=["loan:{loan_id}"])
def loan_link(loan_id: int) -> str:
    loads.append(loan_id)
    return f"link-{loan_id}-v{len(loads)}"


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    made: list[Flask] = []

    def make(name: str, **config: Any) -> Flask:
        app = Flask(name)
        app.config.update({"FRESHLINK_NAMESPACE": name, **config})

        @app.get("/loans/<int:loan_id>")
        def show(loan_id: int) -> Any:
            return jsonify(link=loan_link(loan_id))

        fl.init_app(app)
        made.append(app)
        return app

    loads.clear()
    yield make
    for app in made:
        fl.close(app)  # detaches the metrics too: the next test may reuse the names


def _requests(registry: Any, cache: str, tier: str, result: str) -> float | None:
    return registry.get_sample_value(
        "freshlink_requests_total",
        {"cache": cache, "function": f"{__name__}.loan_link", "tier": tier, "result": result},
    )


def test_metrics_with_a_registry_counts_the_apps_cache(make_app: Callable[..., Flask]) -> None:
    registry = CollectorRegistry()
    client = make_app("metered-app", FRESHLINK_METRICS=registry).test_client()
    assert client.get("/loans/1").json == client.get("/loans/1").json
    # A scrape flushes first: the counts are exact, not eventually there.
    assert _requests(registry, "metered-app", "none", "miss") == 1.0
    assert _requests(registry, "metered-app", "l1", "hit") == 1.0
    body = client.get("/freshlink/metrics").text
    assert 'freshlink_loads_total{cache="metered-app"' in body
    assert _requests(REGISTRY, "metered-app", "none", "miss") is None  # only where asked


@pytest.mark.parametrize("flag", [True, "true", "1"])
def test_metrics_true_means_the_default_registry(
    make_app: Callable[..., Flask], flag: object
) -> None:
    name = f"default-registry-{flag}"  # the global registry keeps each name's counts for good
    client = make_app(name, FRESHLINK_METRICS=flag).test_client()
    client.get("/loans/5")
    assert _requests(REGISTRY, name, "none", "miss") == 1.0
    assert "freshlink_requests_total" in client.get("/freshlink/metrics").text


@pytest.mark.parametrize("flag", [False, None, "off", "0", ""])
def test_metrics_off(make_app: Callable[..., Flask], flag: object) -> None:
    app = make_app("no-metrics", FRESHLINK_METRICS=flag)
    assert fl.state(app).exporter is None
    assert app.test_client().get("/freshlink/metrics").status_code == 404


@pytest.mark.parametrize("bad", [42, object(), "no_such_module.REGISTRY"])
def test_a_bad_metrics_value_fails_at_start_up(bad: object) -> None:
    app = Flask("bad-metrics")
    app.config["FRESHLINK_METRICS"] = bad
    with pytest.raises(ConfigurationError, match="FRESHLINK_METRICS"):
        Freshlink(app)


def test_two_apps_one_registry_need_two_names(make_app: Callable[..., Flask]) -> None:
    registry = CollectorRegistry()
    make_app("twin", FRESHLINK_METRICS=registry)
    with pytest.raises(ConfigurationError, match="already reports to this registry"):
        make_app("twin2", FRESHLINK_METRICS=registry, FRESHLINK_NAME="twin")


@pytest.mark.redis
def test_url_may_be_a_ready_redis_client(make_app: Callable[..., Flask], redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    app = make_app("client-app", FRESHLINK_URL=client)
    http = app.test_client()
    first = http.get("/loans/7").json
    assert http.get("/loans/7").json == first
    assert loads == [7]
    assert fl.get_cache(app).url == "Redis"  # named by type: a client has no URL to print
    # The entry really is in that Redis: another process's Cache on the same URL reads it.
    with app.app_context():
        key = loan_link.key(7)
    other = Cache(redis_url, namespace="client-app")
    try:
        assert other.get(key, tags=["loan:7"]) == first["link"]
    finally:
        other.close()
    assert client.ping()


def test_url_of_another_type_is_refused_clearly() -> None:
    app = Flask("bad-url")
    app.config["FRESHLINK_URL"] = 6379
    with pytest.raises(ConfigurationError, match=r"FRESHLINK_URL must be a str .* or a redis-py"):
        Freshlink(app)
