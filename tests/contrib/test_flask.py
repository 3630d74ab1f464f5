"""Flask plugin: app factory, per-app caches, config errors, CLI, endpoints, a real Redis."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask, abort, g, jsonify, request
from prometheus_client import CollectorRegistry

from freshlink import ConfigurationError, KeyTemplateError, Local
from freshlink.contrib.flask import Freshlink, FreshlinkState

# Module level, as in an application: decorated before any app exists.
fl = Freshlink()
LINKS: dict[str, dict[int, str]] = {}  # app name -> loan id -> link (each app's "database")
loads: list[tuple[str, int]] = []


def db() -> dict[int, str]:
    return LINKS[g.db_name]


@fl.cached(ttl=60, key="link:{loan_id}", tags=["loan:{loan_id}"])
def loan_link(loan_id: int) -> str:
    loads.append((g.db_name, loan_id))
    return db()[loan_id]


@fl.invalidates("loan:{loan_id}")
def renew(loan_id: int, link: str) -> None:
    db()[loan_id] = link


@fl.stale_reporter("link")
def _refresh_link() -> None:
    loan_link.refresh(int(request.form["loan"]))


def create_app(name: str, db_name: str | None = None, **config: Any) -> Flask:
    """A tiny app factory: config first, then init_app, as real factories do."""
    app = Flask(name)
    app.config.update({"FRESHLINK_NAMESPACE": name, **config})
    db_name = db_name or name
    LINKS.setdefault(db_name, {1: f"{db_name}-v1"})

    @app.before_request
    def pick_db() -> None:
        g.db_name = db_name

    @app.get("/loans/<int:loan_id>")
    def show(loan_id: int) -> Any:
        if loan_id not in db():
            abort(404)
        return jsonify(link=loan_link(loan_id))

    @app.post("/loans/<int:loan_id>/renew")
    def do_renew(loan_id: int) -> Any:
        renew(loan_id, request.form["link"])
        return jsonify(renewed=loan_id)

    fl.init_app(app)
    return app


@pytest.fixture
def apps() -> Iterator[Callable[..., Flask]]:
    made: list[Flask] = []

    def make(name: str, db_name: str | None = None, **config: Any) -> Flask:
        app = create_app(name, db_name, **config)
        made.append(app)
        return app

    LINKS.clear()
    loads.clear()
    yield make
    for app in made:
        fl.close(app)


def test_two_apps_each_have_their_own_cache(apps: Callable[..., Flask]) -> None:
    a, b = apps("a"), apps("b")
    ca, cb = a.test_client(), b.test_client()
    assert ca.get("/loans/1").json == {"link": "a-v1"}
    assert cb.get("/loans/1").json == {"link": "b-v1"}
    assert ca.get("/loans/1").json == {"link": "a-v1"}
    assert loads == [("a", 1), ("b", 1)]  # one load per app, then hits
    assert fl.get_cache(a) is not fl.get_cache(b)
    assert isinstance(a.extensions["freshlink"], FreshlinkState)
    assert ca.post("/loans/1/renew", data={"link": "a-v2"}).status_code == 200
    assert ca.get("/loans/1").json == {"link": "a-v2"}
    assert cb.get("/loans/1").json == {"link": "b-v1"}
    assert not hasattr(fl, "app")


def test_handles_and_proxy_methods_use_the_current_app(apps: Callable[..., Flask]) -> None:
    a = apps("a")
    assert loan_link.key(1).endswith(":link:1")  # no app needed to render a key
    assert loan_link.tags(1) == ("loan:1",)
    with a.app_context():
        g.db_name = "a"
        assert loan_link(1) == "a-v1"
        LINKS["a"][1] = "a-v2"
        assert loan_link(1) == "a-v1"
        fl.invalidate("loan:1")
        assert loan_link(1) == "a-v2"
        LINKS["a"][1] = "a-v3"
        loan_link.invalidate(1)
        assert loan_link(1) == "a-v3"
        assert fl.cache.get(loan_link.key(1)) == "a-v3"
        LINKS["a"][1] = "a-v4"
        assert loan_link.refresh(1) == "a-v4"
        assert loan_link.uncached(1) == "a-v4"
    with pytest.raises(RuntimeError, match="application context"):
        loan_link(1)


def test_bad_templates_fail_at_decoration() -> None:
    with pytest.raises(KeyTemplateError):
        fl.cached(key="x:{nope}")(lambda loan_id: loan_id)
    with pytest.raises(KeyTemplateError):
        fl.invalidates("loan:{nope}")(lambda loan_id: None)
    with pytest.raises(ConfigurationError, match="unknown option"):
        fl.cached(ttl=5, stale_while_revalidat=1)(lambda loan_id: loan_id)


def test_config_is_read_from_freshlink_keys(apps: Callable[..., Flask]) -> None:
    app = apps(
        "cfg",
        FRESHLINK_DEFAULT_TTL="45",
        FRESHLINK_LOCAL="bounded",
        FRESHLINK_MAX_STALENESS=0.25,
        FRESHLINK_LOCAL_MAXSIZE=100,
        FRESHLINK_JITTER="0.1",
        FRESHLINK_SECRET="s3cret",
    )
    c = fl.get_cache(app)
    assert c.freshness.ttl == 45
    assert c.local == Local(maxsize=100, mode="bounded", max_staleness=0.25)
    assert c.codec.signed
    ext = Freshlink(namespace="from-options", default_ttl=10)
    other = Flask("other")
    other.config["FRESHLINK_DEFAULT_TTL"] = 20  # app config wins over constructor options
    ext.init_app(other)
    try:
        assert (ext.get_cache(other).namespace, ext.get_cache(other).freshness.ttl) == (
            "from-options",
            20,
        )
    finally:
        ext.close(other)


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"FRESHLINK_URL": "memcached://x"}, "FRESHLINK_URL must be a memory://"),
        ({"FRESHLINK_DEFAULT_TTL": "soon"}, "FRESHLINK_DEFAULT_TTL must be a number"),
        ({"FRESHLINK_LOCAL": "sometimes"}, "FRESHLINK_LOCAL must be 'bounded'"),
        ({"FRESHLINK_MAX_STALENESS": 1}, "FRESHLINK_MAX_STALENESS needs FRESHLINK_LOCAL"),
        ({"FRESHLINK_DEFUALT_TTL": 1}, "unknown option FRESHLINK_DEFUALT_TTL"),
        ({"FRESHLINK_NAMESPACE": "has space"}, "namespace must be"),
        ({"FRESHLINK_SERIALIZER": "pickle"}, "pickle"),
        ({"FRESHLINK_METRICS": object()}, "CollectorRegistry"),
        ({"FRESHLINK_REPORT_STALE_RATE": 0}, "FRESHLINK_REPORT_STALE_RATE"),
        ({"FRESHLINK_METRICS_URL": "metrics"}, "starting with '/'"),
    ],
)
def test_config_errors_raise_at_init_app(config: dict[str, Any], match: str) -> None:
    app = Flask("bad")
    app.config.update(config)
    with pytest.raises(ConfigurationError, match=match):
        Freshlink().init_app(app)
    assert "freshlink" not in app.extensions


def test_init_app_twice_and_uninitialised_app() -> None:
    app = Flask("twice")
    ext = Freshlink(app)
    try:
        with pytest.raises(ConfigurationError, match="already initialised"):
            ext.init_app(app)
        with pytest.raises(ConfigurationError, match="not initialised"):
            ext.state(Flask("never"))
    finally:
        ext.close(app)


def test_cli_stats_invalidate_inspect(apps: Callable[..., Flask]) -> None:
    app = apps("cli")
    app.test_client().get("/loans/1")
    runner = app.test_cli_runner()
    stats = runner.invoke(args=["freshlink", "stats"])
    assert stats.exit_code == 0, stats.output
    for line in ("namespace          cli", "url                memory://", "l1 entries         1"):
        assert line in stats.output
    assert "breaker            none" in stats.output
    key = loan_link.key(1)
    shown = runner.invoke(args=["freshlink", "inspect", key])
    assert shown.exit_code == 0, shown.output
    assert "valid      True" in shown.output
    assert '"cli-v1"' in shown.output
    done = runner.invoke(args=["freshlink", "invalidate", "loan:1", "user:9"])
    assert done.output == "invalidated 2 tag(s): loan:1 user:9\n"
    shown = runner.invoke(args=["freshlink", "inspect", key])
    assert "valid      False" in shown.output
    assert "cli:t:loan:1" in shown.output
    assert "INVALIDATED" in shown.output
    missing = runner.invoke(args=["freshlink", "inspect", "nothing"])
    assert missing.exit_code == 1
    assert "no entry" in missing.output
    bad = runner.invoke(args=["freshlink", "invalidate", "bad tag"])
    assert bad.exit_code == 1
    assert "whitespace" in bad.output


def test_metrics_endpoint_is_opt_in(apps: Callable[..., Flask]) -> None:
    assert apps("plain").test_client().get("/freshlink/metrics").status_code == 404
    registry = CollectorRegistry()
    app = apps(
        "metered",
        FRESHLINK_METRICS=registry,
        FRESHLINK_METRICS_URL="/internal/metrics",
        FRESHLINK_REPORT_STALE=True,
    )
    client = app.test_client()
    client.get("/loans/1")
    assert client.post("/freshlink/report-stale", data={"name": "link", "loan": 1}).json == {
        "refreshed": "link"
    }
    response = client.get("/internal/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert 'freshlink_stale_reports_total{cache="metered",name="link"} 1.0' in response.text


def test_report_stale_refreshes_counts_and_rate_limits(apps: Callable[..., Flask]) -> None:
    app = apps(
        "stale",
        FRESHLINK_REPORT_STALE=True,
        FRESHLINK_REPORT_STALE_BURST=3,
        FRESHLINK_REPORT_STALE_RATE=0.01,
    )
    client = app.test_client()
    assert client.get("/loans/1").json == {"link": "stale-v1"}
    LINKS["stale"][1] = "stale-v2"  # a write nobody told freshlink about
    assert client.get("/loans/1").json == {"link": "stale-v1"}
    response = client.post(
        "/freshlink/report-stale", data={"name": "link", "loan": 1, "next": "/loans/1"}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/loans/1"
    assert client.get("/loans/1").json == {"link": "stale-v2"}
    assert client.post("/freshlink/report-stale", json={"name": "nope"}).status_code == 404
    evil = client.post(
        "/freshlink/report-stale", data={"name": "link", "loan": 1, "next": "//evil.example/"}
    )
    assert evil.status_code == 200  # no open redirect: a JSON answer instead
    limited = client.post("/freshlink/report-stale", data={"name": "link", "loan": 1})
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    other_client = client.post(
        "/freshlink/report-stale",
        data={"name": "link", "loan": 1},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},
    )
    assert other_client.status_code == 200  # the limit is per client
    assert fl.state(app).reports.counts == {"link": 3}
    assert client.get("/freshlink/report-stale").status_code == 405


@pytest.mark.redis
def test_renewal_is_visible_on_the_next_request_from_another_app(
    apps: Callable[..., Flask], redis_url: str
) -> None:
    # Two app instances with their own Cache on one Redis and one database: two processes.
    shared = {"FRESHLINK_URL": redis_url, "FRESHLINK_NAMESPACE": "lending"}
    front = apps("front", "db", **shared).test_client()
    office = apps("office", "db", **shared).test_client()
    assert fl.get_cache(front.application) is not fl.get_cache(office.application)
    assert front.get("/loans/1").json == {"link": "db-v1"}
    for i in range(2, 12):
        assert office.post("/loans/1/renew", data={"link": f"db-v{i}"}).status_code == 200
        assert front.get("/loans/1").json == {"link": f"db-v{i}"}
    assert loads.count(("db", 1)) == 11  # each renewal cost exactly one reload


@pytest.mark.redis
def test_cli_stats_on_redis(apps: Callable[..., Flask], redis_url: str) -> None:
    app = apps("r", FRESHLINK_URL=redis_url, FRESHLINK_LOCAL="bounded")
    out = app.test_cli_runner().invoke(args=["freshlink", "stats"]).output
    assert "RedisBackend (with circuit breaker)" in out
    assert "bounded (L1 may lag an invalidation by at most 0.1 s)" in out
    assert "breaker            closed" in out


def test_importing_the_plugins_loads_only_their_framework() -> None:
    code = (
        "import sys, freshlink.contrib, freshlink.contrib.flask\n"
        "print('django' in sys.modules, 'prometheus_client' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


@fl.updates(loan_link)
def write_through(loan_id: int, link: str) -> str:
    db()[loan_id] = link
    return link


class Loans:
    @fl.cached(ttl=60, key="method:{loan_id}")
    def link(self, loan_id: int) -> str:
        return db()[loan_id]


def test_updates_and_methods_through_the_proxy(apps: Callable[..., Flask]) -> None:
    app = apps("wt")
    with app.app_context():
        g.db_name = "wt"
        assert loan_link(1) == "wt-v1"
        assert write_through(1, "wt-v2") == "wt-v2"
        LINKS["wt"][1] = "changed behind freshlink's back"
        assert loan_link(1) == "wt-v2"  # the write stored its value: served from the cache
        loans = Loans()
        assert loans.link(1) == "changed behind freshlink's back"
        LINKS["wt"][1] = "later"
        assert loans.link(1) == "changed behind freshlink's back"
        loans.link.invalidate(1)
        assert loans.link(1) == "later"
        assert loans.link.key(1).endswith(":method:1")
    with pytest.raises(ConfigurationError, match="updates"):
        fl.updates(lambda loan_id: loan_id)
