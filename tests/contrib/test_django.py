"""Django plugin: settings, commit-deferred invalidation, bulk helpers, checks, command, views.

Django is configured here with ``settings.configure()`` from ``django_project/settings.py`` (no
DJANGO_SETTINGS_MODULE, so nothing leaks into subprocesses); pytest-django provides the test
database and ``django_capture_on_commit_callbacks``.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import django
import pytest
from django.conf import settings as django_settings

pytest.importorskip("pytest_django", reason="the Django tests use pytest-django's fixtures")

if not django_settings.configured:
    from django_project import settings as _project

    django_settings.configure(**{k: getattr(_project, k) for k in dir(_project) if k.isupper()})
django.setup()

from django.core.checks import run_checks  # noqa: E402
from django.core.management import CommandError, call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from django_project.lending.models import Borrower, Loan  # noqa: E402
from freshlink import Cache, ConfigurationError, Event, KeyTemplateError  # noqa: E402
from freshlink.contrib.django import (  # noqa: E402
    cache,
    get_cache,
    invalidate_objects,
    invalidate_on,
    invalidate_on_commit,
    invalidate_queryset,
    stale_reporter,
)
from freshlink.contrib.django.checks import check_settings  # noqa: E402

loads: list[int] = []


@cache.cached(ttl=60, key="link:{loan_id}", tags=["loan:{loan_id}"])
def loan_link(loan_id: int) -> str:
    loads.append(loan_id)
    return str(Loan.objects.get(pk=loan_id).link)


@cache.cached(ttl=60, key="loans-of:{user_id}", tags=["user:{user_id}"])
def loans_of(user_id: int) -> list[int]:
    return sorted(Loan.objects.filter(borrower_id=user_id).values_list("pk", flat=True))


@stale_reporter("link")
def _refresh_link(request: Any) -> None:
    loan_link.refresh(int(request.POST["loan"]))


def record(c: Cache) -> list[tuple[str, ...]]:
    """Tags of every invalidation ``c`` makes from now on, one tuple per call."""
    seen: list[tuple[str, ...]] = []

    def hook(event: Event) -> None:
        if event.tags:
            seen.append(tuple(sorted(event.tags)))

    c.events.on("invalidation", hook)
    return seen


@pytest.fixture
def fl(settings: Any, redis_url: str) -> Iterator[Cache]:
    """The plugin's cache on a real Redis (closed when the settings fixture restores them)."""
    settings.FRESHLINK = {"URL": redis_url, "NAMESPACE": "dj", "DEFAULT_TTL": 60}
    loads.clear()
    return get_cache()


@pytest.fixture
def people(db: None) -> tuple[Borrower, Borrower]:
    return Borrower.objects.create(name="Ada"), Borrower.objects.create(name="Grace")


Capture = Callable[..., Any]
pytestmark = pytest.mark.redis


# ---------------------------------------------------------------------------- settings


def test_get_cache_follows_the_setting(settings: Any) -> None:
    settings.FRESHLINK = {"NAMESPACE": "first", "DEFAULT_TTL": "30", "LOCAL": "strict"}
    first = get_cache()
    assert first is get_cache()  # built once
    assert (first.namespace, first.freshness.ttl, first.local is not None) == ("first", 30, True)
    settings.FRESHLINK = {"NAMESPACE": "second", "LOCAL": None}
    second = get_cache()
    assert second is not first
    assert (second.namespace, second.local) == ("second", None)


def test_bad_settings_raise_configuration_error(settings: Any) -> None:
    settings.FRESHLINK = {"URL": "ftp://example.com", "DEFAULT_TTL": "soon"}
    with pytest.raises(ConfigurationError, match=r"FRESHLINK\['URL'\].*FRESHLINK\['DEFAULT_TTL'\]"):
        get_cache()


# ---------------------------------------------------------------------------- on_commit


@pytest.mark.django_db
def test_save_invalidates_once_and_only_after_commit(
    fl: Cache, people: tuple[Borrower, Borrower], django_capture_on_commit_callbacks: Capture
) -> None:
    ada, _ = people
    loan = Loan.objects.create(borrower=ada, link="v1")
    assert loan_link(loan.pk) == "v1"
    seen = record(fl)
    with django_capture_on_commit_callbacks() as callbacks:
        loan.link = "v2"
        loan.save()
        assert seen == []  # the transaction has not committed: nothing invalidated yet
        assert loan_link(loan.pk) == "v1"
    assert seen == []
    assert len(callbacks) == 1
    callbacks[0]()  # the commit
    assert seen == [(f"loan:{loan.pk}", f"user:{ada.pk}")]
    assert loan_link(loan.pk) == "v2"


@pytest.mark.django_db
def test_rollback_invalidates_nothing(
    fl: Cache, people: tuple[Borrower, Borrower], django_capture_on_commit_callbacks: Capture
) -> None:
    loan = Loan.objects.create(borrower=people[0], link="v1")
    pk = loan.pk
    assert loan_link(pk) == "v1"
    seen = record(fl)

    def failing_write() -> None:
        with transaction.atomic():
            loan.link = "v2"
            loan.save()
            loan.delete()  # sets loan.pk to None in memory, rolled back or not
            raise RuntimeError("the write failed")

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        failing_write()
    assert callbacks == []
    assert seen == []
    assert loan_link(pk) == "v1"
    assert loads == [pk]


@pytest.mark.django_db
def test_delete_and_borrower_change_invalidate_old_and_new_tags(
    fl: Cache, people: tuple[Borrower, Borrower], django_capture_on_commit_callbacks: Capture
) -> None:
    ada, grace = people
    loan = Loan.objects.create(borrower=ada, link="v1")  # saved: its borrower is remembered
    assert loans_of(ada.pk) == [loan.pk]
    assert loans_of(grace.pk) == []
    seen = record(fl)
    with django_capture_on_commit_callbacks(execute=True):
        loan.borrower = grace
        loan.save()
    assert seen == [(f"loan:{loan.pk}", f"user:{ada.pk}", f"user:{grace.pk}")]
    assert (loans_of(ada.pk), loans_of(grace.pk)) == ([], [loan.pk])
    loaded = Loan.objects.get(pk=loan.pk)  # loaded from the database: its borrower is tracked
    with django_capture_on_commit_callbacks(execute=True):
        loaded.borrower_id = ada.pk
        loaded.save()
    assert seen[1] == (f"loan:{loan.pk}", f"user:{ada.pk}", f"user:{grace.pk}")
    pk = loan.pk
    with django_capture_on_commit_callbacks(execute=True):
        loaded.delete()
    assert seen[2:] == [(f"loan:{pk}", f"user:{ada.pk}")]
    assert loans_of(ada.pk) == []


@pytest.mark.django_db(transaction=True)
def test_real_commit_then_invalidation_seen_by_another_process(fl: Cache, redis_url: str) -> None:
    ada = Borrower.objects.create(name="Ada")
    loan = Loan.objects.create(borrower=ada, link="v1")
    other = Cache(redis_url, namespace="dj")  # another worker on the same Redis
    try:
        other_link = other.cached(ttl=60, key="link:{loan_id}", tags=["loan:{loan_id}"])(
            lambda loan_id: str(Loan.objects.get(pk=loan_id).link)
        )
        assert other_link(loan.pk) == "v1"
        in_atomic: list[bool] = []
        fl.events.on("invalidation", lambda e: in_atomic.append(connection.in_atomic_block))
        with transaction.atomic():
            loan.link = "v2"
            loan.save()
            assert in_atomic == []
            assert other_link(loan.pk) == "v1"  # not committed: the old row is still the truth
        assert in_atomic == [False]  # ran once, after the commit
        assert other_link(loan.pk) == "v2"
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_a_failed_invalidation_does_not_drop_the_commit_hooks_after_it(
    fl: Cache, caplog: pytest.LogCaptureFixture
) -> None:
    # The first hook's cache cannot reach Redis: its invalidation raises InvalidationError at
    # commit. Django ran on_commit hooks in order and stopped at the first that raised, so the
    # invalidations queued after it (here, on the working cache) were silently dropped.
    broken = Cache("redis://127.0.0.1:1/0", namespace="dj-broken")
    later = record(fl)
    ran: list[str] = []
    try:
        with transaction.atomic():
            invalidate_on_commit("loan:1", cache=broken)
            invalidate_on_commit("loan:2")
            transaction.on_commit(lambda: ran.append("app hook"))
        assert later == [("loan:2",)]
        assert ran == ["app hook"]
        assert any("not confirmed" in r.getMessage() for r in caplog.records)
    finally:
        broken.close()


# ---------------------------------------------------------------------------- bulk helpers


@pytest.mark.django_db
def test_invalidate_queryset_renders_rows_before_and_after_update(
    fl: Cache, people: tuple[Borrower, Borrower], django_capture_on_commit_callbacks: Capture
) -> None:
    ada, grace = people
    a = Loan.objects.create(borrower=ada, link="a")
    b = Loan.objects.create(borrower=ada, link="b")
    assert loans_of(grace.pk) == []
    seen = record(fl)
    with django_capture_on_commit_callbacks() as callbacks:
        with invalidate_queryset(Loan.objects.filter(borrower=ada)) as loans:
            assert loans.update(borrower=grace) == 2
        assert seen == []
    assert len(callbacks) == 1
    callbacks[0]()
    assert seen == [
        tuple(sorted([f"loan:{a.pk}", f"loan:{b.pk}", f"user:{ada.pk}", f"user:{grace.pk}"]))
    ]
    assert loans_of(grace.pk) == [a.pk, b.pk]


@pytest.mark.django_db
def test_invalidate_queryset_in_a_rolled_back_block_invalidates_nothing(
    fl: Cache, people: tuple[Borrower, Borrower], django_capture_on_commit_callbacks: Capture
) -> None:
    Loan.objects.create(borrower=people[0], link="a")
    seen = record(fl)

    def failing_update() -> None:
        with (
            transaction.atomic(),
            invalidate_queryset(Loan.objects.all(), tags=["user:{borrower_id}"]) as loans,
        ):
            loans.update(link="z")
            raise RuntimeError

    with django_capture_on_commit_callbacks(execute=True) as callbacks, pytest.raises(RuntimeError):
        failing_update()
    assert (callbacks, seen) == ([], [])


@pytest.mark.django_db
def test_invalidate_objects_after_bulk_create_and_explicit_tags(
    fl: Cache, people: tuple[Borrower, Borrower], django_capture_on_commit_callbacks: Capture
) -> None:
    ada, _ = people
    assert loans_of(ada.pk) == []
    seen = record(fl)
    with django_capture_on_commit_callbacks(execute=True):
        made = Loan.objects.bulk_create([Loan(borrower=ada, link="x"), Loan(borrower=ada)])
        invalidate_objects(made)
        invalidate_on_commit("report:daily")
    assert (f"user:{ada.pk}",) == tuple(t for t in seen[0] if t.startswith("user:"))
    assert seen[1] == ("report:daily",)
    assert loans_of(ada.pk) == sorted(m.pk for m in made)


def test_templates_are_checked_when_declared() -> None:
    with pytest.raises(KeyTemplateError, match="not an attribute of Loan"):
        invalidate_on(Loan, tags=["loan:{no_such_field}"])
    with (
        pytest.raises(KeyTemplateError, match="not a column"),
        invalidate_queryset(Loan.objects.none(), tags=["user:{borrower.name}"]),
    ):
        pass


# ---------------------------------------------------------------------------- checks


def ids(messages: list[Any]) -> list[str]:
    return sorted(m.id for m in messages)


def test_checks_accept_good_settings(settings: Any, redis_url: str) -> None:
    settings.FRESHLINK = {"URL": redis_url, "NAMESPACE": "ok", "LOCAL": "bounded"}
    assert check_settings() == []
    assert list(run_checks(tags=["freshlink"])) == []  # registered by the AppConfig


def test_checks_report_bad_settings_with_ids_and_hints(settings: Any) -> None:
    settings.FRESHLINK = {"URL": "memcached://x"}
    [error] = run_checks(tags=["freshlink"])
    assert error.id == "freshlink.E001"
    assert "redis://" in error.hint
    settings.FRESHLINK = {"DEFAULT_TTL": "soon", "LOCAL": "sometimes", "NAMESPCE": "x"}
    messages = check_settings()
    assert ids(messages) == ["freshlink.E002"] * 3
    assert any("NAMESPCE" in m.msg for m in messages)
    settings.FRESHLINK = {"NAMESPACE": "has space"}  # only Cache() itself knows this rule
    assert ids(check_settings()) == ["freshlink.E002"]
    settings.FRESHLINK = "redis://localhost"
    assert ids(check_settings()) == ["freshlink.E002"]


def test_memory_url_without_debug_warns(settings: Any) -> None:
    settings.DEBUG = False
    settings.FRESHLINK = {"URL": "memory://"}
    [warning] = check_settings()
    assert warning.id == "freshlink.W001"
    assert "Redis" in warning.hint
    settings.DEBUG = True
    assert check_settings() == []


# ---------------------------------------------------------------------------- command


@pytest.mark.django_db
def test_management_command(fl: Cache, people: tuple[Borrower, Borrower]) -> None:
    loan = Loan.objects.create(borrower=people[0], link="v1")
    loan_link(loan.pk)

    def run(*args: str) -> str:
        out = io.StringIO()
        call_command("freshlink", *args, stdout=out)
        return out.getvalue()

    stats = run("stats")
    assert "namespace          dj" in stats
    assert "RedisBackend" in stats
    assert "breaker            closed" in stats
    shown = run("inspect", loan_link.key(loan.pk))
    assert "valid      True" in shown
    assert '"v1"' in shown
    assert run("invalidate", f"loan:{loan.pk}") == f"invalidated 1 tag(s): loan:{loan.pk}\n"
    shown = run("inspect", loan_link.key(loan.pk))
    assert "valid      False" in shown
    assert f"dj:t:loan:{loan.pk}" in shown
    assert "INVALIDATED" in shown
    with pytest.raises(CommandError, match="no entry"):
        run("inspect", "nothing:here")
    with pytest.raises(CommandError, match="whitespace"):
        run("invalidate", "bad tag")


# ---------------------------------------------------------------------------- views


@pytest.mark.django_db
def test_report_stale_view_refreshes_counts_and_rate_limits(
    settings: Any, redis_url: str, people: tuple[Borrower, Borrower]
) -> None:
    registry = CollectorRegistry()
    settings.FRESHLINK = {
        "URL": redis_url,
        "NAMESPACE": "djv",
        "METRICS": registry,
        "REPORT_STALE_BURST": 2,
        "REPORT_STALE_RATE": 0.01,
    }
    loan = Loan.objects.create(borrower=people[0], link="v1")
    assert loan_link(loan.pk) == "v1"
    Loan.objects.filter(pk=loan.pk).update(link="v2")  # a write freshlink was not told about
    assert loan_link(loan.pk) == "v1"
    client = Client()
    response = client.post("/freshlink/report-stale", {"name": "link", "loan": loan.pk})
    assert response.status_code == 200
    assert response.json() == {"refreshed": "link"}
    assert loan_link(loan.pk) == "v2"
    response = client.post(
        "/freshlink/report-stale", {"name": "nope", "next": "https://evil.example/"}
    )
    assert response.status_code == 404
    response = client.post("/freshlink/report-stale", {"name": "link", "loan": loan.pk})
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert client.get("/freshlink/report-stale").status_code == 405
    metrics = client.get("/freshlink/metrics")
    assert metrics.status_code == 200
    assert 'freshlink_stale_reports_total{cache="djv",name="link"} 1.0' in metrics.text


def test_metrics_view_is_404_without_a_registry(settings: Any) -> None:
    settings.FRESHLINK = {"NAMESPACE": "nometrics"}
    assert Client().get("/freshlink/metrics").status_code == 404


# ---------------------------------------------------------------------------- outbox


def outbox_rows() -> list[str]:
    from freshlink.contrib.django.models import OutboxRow

    return list(OutboxRow.objects.order_by("id").values_list("tags", flat=True))


@pytest.mark.django_db(transaction=True)
def test_outbox_rows_are_written_in_the_transaction_and_deleted_once_applied(
    settings: Any, redis_url: str
) -> None:
    settings.FRESHLINK = {"URL": redis_url, "NAMESPACE": "djox", "OUTBOX": True}
    seen = record(get_cache())
    with transaction.atomic():
        invalidate_on_commit("loan:1", "user:2")
        assert outbox_rows() == ["loan:1\nuser:2"]  # in the transaction, with the data
    assert seen == [("loan:1", "user:2")]
    assert outbox_rows() == []  # applied, then deleted
    with transaction.atomic():
        invalidate_on_commit("loan:3")
        with transaction.atomic():  # a savepoint
            invalidate_on_commit("loan:4")
            transaction.set_rollback(True)
    assert seen[1:] == [("loan:3",)]
    assert outbox_rows() == []
    try:
        with transaction.atomic():
            invalidate_on_commit("loan:5")
            raise RuntimeError("the write failed")
    except RuntimeError:
        pass
    assert seen[1:] == [("loan:3",)]
    assert outbox_rows() == []


@pytest.mark.django_db(transaction=True)
def test_an_unconfirmed_invalidation_is_left_for_the_relay_command(
    settings: Any, redis_url: str
) -> None:
    # The writer's cache cannot reach Redis (nothing listens on its port): the commit stands,
    # the row stays, and the relay, with the cache the app really uses, applies it.
    settings.FRESHLINK = {"URL": "redis://127.0.0.1:1/0", "NAMESPACE": "djox", "OUTBOX": True}
    with transaction.atomic():
        invalidate_on_commit("loan:7")
    assert outbox_rows() == ["loan:7"]
    settings.FRESHLINK = {"URL": redis_url, "NAMESPACE": "djox", "OUTBOX": True}
    seen = record(get_cache())
    out = io.StringIO()
    call_command("freshlink", "relay", "--once", "--grace", "5", stdout=out)
    assert "applied=0" in out.getvalue()  # younger than the grace: its writer's to apply
    call_command("freshlink", "relay", "--once", "--grace", "0", stdout=out)
    assert "applied=1 failed=0 pending=0" in out.getvalue()
    assert seen == [("loan:7",)]
    assert outbox_rows() == []


@pytest.mark.django_db(transaction=True)
def test_the_relay_command_refuses_a_memory_cache(settings: Any) -> None:
    settings.FRESHLINK = {"URL": "memory://", "NAMESPACE": "djox", "OUTBOX": True}
    with transaction.atomic():
        invalidate_on_commit("loan:7")  # applied at once in this process's memory://...
    from freshlink.contrib.django.models import OutboxRow

    OutboxRow.objects.create(namespace="djox", tags="loan:8", created=0.0)  # a crash left this
    with pytest.raises(CommandError, match="reaches no other process"):
        call_command("freshlink", "relay", "--once", "--grace", "0", stdout=io.StringIO())
    assert outbox_rows() == ["loan:8"]  # kept for a relay that reaches the servers


def test_the_outbox_setting_is_checked(settings: Any) -> None:
    settings.FRESHLINK = {"OUTBOX": "yes please"}
    messages = check_settings()
    assert [m.id for m in messages] == ["freshlink.E002"]
    assert "FRESHLINK['OUTBOX'] must be True or False" in messages[0].msg


def test_the_outbox_migration_matches_the_model() -> None:
    out = io.StringIO()
    call_command("makemigrations", "freshlink", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
