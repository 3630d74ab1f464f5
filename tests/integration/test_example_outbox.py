"""The Flask example's outbox: a back-office process that dies right after its commit.

The renewal is committed, its invalidation never sent: the borrower's cached page still shows
the expired link (the hole every after-commit invalidation has). One ``freshlink relay
--once`` run, as an operator runs it, applies the row the commit left, and the next page
shows the renewed link.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from subprocess import PIPE
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.orm import Session

from freshlink.contrib import sqlalchemy as fsa

pytestmark = [pytest.mark.redis]

ROOT = Path(__file__).resolve().parents[2]
STATE = re.compile(r'data-link-state="(\w+)" data-token="([^"]*)"')


@pytest.fixture
def example(redis_url: str, tmp_path: Path) -> Any:
    """The Flask example app on a fresh SQLite file and the session's Redis."""
    sys.path.insert(0, str(ROOT))
    try:
        from examples.flask_lending.app import create_app
    finally:
        sys.path.remove(str(ROOT))
    database = tmp_path / "lending.sqlite3"
    app = create_app({"FRESHLINK_URL": redis_url, "LENDING_DATABASE": str(database)})
    yield app, f"sqlite:///{database}"
    fsa.uninstall(app.extensions["lending"])
    app.extensions["lending"].kw["bind"].dispose()
    app.extensions["freshlink"].cache.close()


def page(client: Any) -> tuple[str, str]:
    """The borrower's link state and token, as "my loan" shows them."""
    found = STATE.search(client.get("/my-loan").get_data(as_text=True))
    assert found is not None
    return found.group(1), found.group(2)


def pending(app: Any) -> int:
    """Rows waiting in the example's outbox."""
    with app.extensions["lending"]() as s:
        return int(s.scalar(select(func.count()).select_from(text(fsa.TABLE))))


def test_a_renewal_whose_process_dies_after_the_commit_is_applied_by_the_relay(
    example: tuple[Any, str], redis_url: str
) -> None:
    app, db_url = example
    borrower = app.test_client()
    borrower.get("/login/1")
    assert page(borrower)[0] == "expired"  # seeded expired, and now cached
    sessions = app.extensions["lending"]
    pid = os.fork()
    if pid == 0:  # the back office
        try:
            sessions.kw["bind"].dispose(close=False)  # the parent's pooled connections

            # Ahead of freshlink's hook on the same sessions: the commit is done, nothing sent.
            @event.listens_for(sessions, "after_commit", insert=True)
            def die(_session: Session) -> None:
                os._exit(17)

            app.test_client().post("/staff/loans/1/renew")
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 17, "the back office did not die after its commit"
    with sessions() as s:
        token = s.scalar(text("SELECT link_token FROM loans WHERE id = 1"))
    assert token != "ada-0"  # committed
    assert page(borrower) == ("expired", "ada-0")  # the hole: the old page is still served
    assert pending(app) == 1  # ...but the commit left its invalidation in the outbox

    relay = subprocess.run(
        [sys.executable, "-m", "freshlink", "relay", "--db", db_url, "--url", redis_url,
         "--once", "--grace", "0"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert relay.returncode == 0, relay.stdout + relay.stderr
    assert "applied=1 failed=0 pending=0" in relay.stdout
    assert page(borrower) == ("valid", token)
    assert pending(app) == 0


DIE_AFTER_COMMIT = """
import os
from django.db import transaction
from examples.django_lending.loans.models import Loan

with transaction.atomic():
    # Registered first, so it runs first of the commit hooks: before freshlink's invalidation.
    transaction.on_commit(lambda: os._exit(17))
    loan = Loan.objects.get(pk=1)
    loan.set_link(900)
    loan.save()
"""
READ = """
from examples.django_lending.loans.models import Loan
from examples.django_lending.loans.services import my_loan

print(my_loan(1)["link_token"], Loan.objects.get(pk=1).link_token)
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def django_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The Django example's LENDING_DATABASE: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "lending.sqlite3")
    import psycopg

    server = request.getfixturevalue("postgres_url").replace("+psycopg", "")
    name = f"lending_{os.getpid()}_{abs(hash(tmp_path)) % 10**6}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.mark.slow
def test_the_django_example_relays_what_a_dead_process_committed(
    django_database: str, redis_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FRESHLINK_", "LENDING_"))}
    env.update(FRESHLINK_URL=redis_url, LENDING_DATABASE=django_database)

    def manage(*args: str, code: int = 0) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "examples.django_lending", *args],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == code, done.stdout + done.stderr
        return done.stdout

    manage("migrate", "--no-input", "-v", "0")
    assert manage("shell", "-v", "0", "-c", READ).split() == [
        "ada-0",
        "ada-0",
    ]  # now cached in Redis
    manage("shell", "-v", "0", "-c", DIE_AFTER_COMMIT, code=17)
    cached, committed = manage("shell", "-v", "0", "-c", READ).split()
    assert (cached, committed != "ada-0") == ("ada-0", True)  # the hole: stale after the commit

    # Two relays at once (SKIP LOCKED on PostgreSQL, a claim on SQLite): exactly one of
    # them applies the row, and neither fails.
    relay = [sys.executable, "-m", "examples.django_lending", "freshlink", "relay", "--once"]
    relays = [
        subprocess.Popen([*relay, "--grace", "0"], cwd=ROOT, env=env, stdout=PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [r.communicate(timeout=60)[0] for r in relays]
    assert [r.returncode for r in relays] == [0, 0], outputs
    applied = re.findall(r"applied=(\d+) failed=0", "".join(outputs))
    assert sorted(applied) == ["0", "1"], outputs
    assert manage("shell", "-v", "0", "-c", READ).split() == [committed, committed]
    assert "applied=0 failed=0 pending=0" in manage("freshlink", "relay", "--once")
