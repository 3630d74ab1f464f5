"""freshlink.contrib.sqlalchemy on real databases: SQLite files here, PostgreSQL where marked.

Every test uses a real redis-server (the session's), a real database and real sessions; a
"crash" is a forked child that commits and dies (``os._exit``) before its after-commit hook
can invalidate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Integer, MetaData, String, create_engine, event, func, inspect, select
from sqlalchemy.orm import DeclarativeBase, Session, mapped_column, sessionmaker

from freshlink import Cache, ConfigurationError
from freshlink.contrib import sqlalchemy as fsa

pytestmark = pytest.mark.redis


class Base(DeclarativeBase):
    pass


class Loan(Base):
    __tablename__ = "loans"
    id = mapped_column(Integer, primary_key=True)
    link = mapped_column(String(200), nullable=False)


class Payment(Base):
    """A model tracked with invalidate_on (the loans are invalidated by hand in these tests)."""

    __tablename__ = "payments"
    id = mapped_column(Integer, primary_key=True)
    user_id = mapped_column(Integer, nullable=False)
    amount = mapped_column(Integer, nullable=False)


fsa.invalidate_on(Payment, tags=["payment:{id}", "user:{user_id}"])


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLite file, or the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'app.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def world(
    db_url: str, make_redis_cache: Callable[..., Cache], request: pytest.FixtureRequest
) -> Iterator[dict[str, Any]]:
    """An app: a loans table, a cached reader and the hooks (``outbox`` param: on or off)."""
    outbox = getattr(request, "param", True)
    metadata = Base.metadata
    engine = create_engine(db_url)
    cache = make_redis_cache(namespace="sa", local=None)
    fsa.uninstall()
    fsa.install(cache, outbox=outbox, metadata=MetaData() if not outbox else metadata)
    metadata.create_all(engine)
    sessions = sessionmaker(engine)
    loads: list[int] = []

    @cache.cached(ttl=300, key="loan:{loan_id}", tags=["loan:{loan_id}"])
    def link(loan_id: int) -> str:
        loads.append(loan_id)
        with sessions() as s:
            return s.get(Loan, loan_id).link  # type: ignore[union-attr]

    with sessions.begin() as s:
        s.add(Loan(id=7, link="v1"))
    try:
        yield {"engine": engine, "sessions": sessions, "link": link, "loads": loads, "cache": cache}
    finally:
        fsa.uninstall()
        metadata.drop_all(engine)
        metadata.remove(metadata.tables[fsa.TABLE]) if fsa.TABLE in metadata.tables else None
        engine.dispose()


def outbox_rows(engine: Any) -> int:
    """Rows waiting in the outbox (0 when this world has none)."""
    if not inspect(engine).has_table(fsa.TABLE):
        return 0
    table = fsa.outbox_table(MetaData())
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def change(world: dict[str, Any], link: str) -> None:
    with world["sessions"].begin() as s:
        s.get(Loan, 7).link = link
        fsa.invalidate_on_commit(s, "loan:7")


def test_a_commit_invalidates_at_once_and_leaves_no_outbox_row(world: dict[str, Any]) -> None:
    assert world["link"](7) == "v1"
    change(world, "v2")
    assert world["link"](7) == "v2"
    assert outbox_rows(world["engine"]) == 0


def test_a_rollback_invalidates_nothing_and_leaves_nothing(world: dict[str, Any]) -> None:
    assert world["link"](7) == "v1"
    with world["sessions"]() as s:
        s.get(Loan, 7).link = "v2"
        fsa.invalidate_on_commit(s, "loan:7")
        s.rollback()
    assert outbox_rows(world["engine"]) == 0
    assert world["link"](7) == "v1"
    assert world["loads"] == [7]  # still the cached value: nothing was invalidated


@pytest.mark.parametrize("world", [True, False], indirect=True, ids=["outbox", "no-outbox"])
def test_a_rolled_back_savepoint_drops_its_tags(world: dict[str, Any]) -> None:
    cache: Cache = world["cache"]
    seen: list[tuple[str, ...]] = []
    cache.events.on("invalidation", lambda e: seen.append(tuple(e.tags)))
    with world["sessions"]() as s:
        fsa.invalidate_on_commit(s, "kept:1")
        savepoint = s.begin_nested()
        fsa.invalidate_on_commit(s, "dropped:1")
        inner = s.begin_nested()
        fsa.invalidate_on_commit(s, "dropped:2")  # inside the savepoint that rolls back
        inner.commit()
        savepoint.rollback()
        released = s.begin_nested()
        fsa.invalidate_on_commit(s, "kept:2")
        released.commit()
        s.commit()
    assert seen == [("kept:1", "kept:2")]
    assert outbox_rows(world["engine"]) == 0


def test_an_unconfirmed_invalidation_stays_in_the_outbox_for_the_relay(
    world: dict[str, Any], caches: list[Cache]
) -> None:
    assert world["link"](7) == "v1"
    # The writer cannot reach Redis (nothing listens on its port); the readers can, and
    # their entry is intact.
    fsa.uninstall()
    unreachable = Cache("redis://127.0.0.1:1/0", namespace="sa", local=None)
    caches.append(unreachable)
    fsa.install(unreachable, outbox=True, metadata=Base.metadata)
    change(world, "v2")  # committed; the invalidation is not confirmed
    assert outbox_rows(world["engine"]) == 1
    assert world["link"](7) == "v1"  # the hole the outbox is there to close...
    done = fsa.relay_once(world["engine"], lambda ns: world["cache"], grace=0)
    assert (done.applied, done.failed, done.pending.rows) == (1, 0, 0)
    assert world["link"](7) == "v2"  # ...closed by the relay


def test_the_relay_leaves_rows_younger_than_the_grace_to_their_writer(
    world: dict[str, Any],
) -> None:
    with world["sessions"].begin() as s:
        table = fsa.outbox_table(Base.metadata)
        s.execute(table.insert().values(namespace="sa", tags="loan:7", created=1e12))
    done = fsa.relay_once(world["engine"], lambda ns: world["cache"], grace=5)
    assert (done.applied, done.pending.rows) == (0, 1)


@pytest.mark.parametrize("world", [True, False], indirect=True, ids=["outbox", "no-outbox"])
def test_a_process_that_dies_after_its_commit(world: dict[str, Any]) -> None:
    # The hole every cache has: the data is committed, the invalidation never sent. With
    # the outbox the relay closes it; without, the old value stays valid until its TTL.
    assert world["link"](7) == "v1"
    engine = world["engine"]
    pid = os.fork()
    if pid == 0:  # the writer
        try:
            engine.dispose(close=False)  # the parent's pooled connections are the parent's
            session = world["sessions"]()

            # First of the after-commit hooks (freshlink's are on the Session class too).
            @event.listens_for(Session, "after_commit", insert=True)
            def die(_session: Session) -> None:
                os._exit(17)  # after the database committed, before any invalidation

            session.get(Loan, 7).link = "v2"
            fsa.invalidate_on_commit(session, "loan:7")
            session.commit()
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 17, "the writer did not die after its commit"
    with world["sessions"]() as s:
        assert s.get(Loan, 7).link == "v2"  # committed
    assert world["link"](7) == "v1"  # stale until something invalidates
    if fsa.installed().table is not None:  # type: ignore[union-attr]
        assert outbox_rows(engine) == 1  # committed with the data
        fsa.relay_once(engine, lambda ns: world["cache"], grace=0)
        assert world["link"](7) == "v2"
    else:
        assert world["link"](7) == "v1", "no outbox: the old value stays until its TTL"


def test_invalidate_on_commit_needs_install_and_real_tags(world: dict[str, Any]) -> None:
    with world["sessions"]() as s, pytest.raises(ConfigurationError, match="non-empty string"):
        fsa.invalidate_on_commit(s, "")
    fsa.uninstall()
    with world["sessions"]() as s, pytest.raises(ConfigurationError, match="install"):
        fsa.invalidate_on_commit(s, "loan:7")


def test_the_relay_command_applies_what_a_writer_left(
    world: dict[str, Any], db_url: str, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from freshlink.cli import main

    assert world["link"](7) == "v1"
    with world["sessions"].begin() as s:  # what a writer that died after its commit leaves
        s.get(Loan, 7).link = "v2"
        s.execute(
            fsa.outbox_table(Base.metadata)
            .insert()
            .values(namespace="sa", tags="loan:7", created=0.0)
        )
    assert main(["relay", "--db", db_url, "--url", redis_url, "--once", "--json"]) == 0
    assert '"applied": 1' in capsys.readouterr().out
    assert world["link"](7) == "v2"
    assert outbox_rows(world["engine"]) == 0


def invalidated(cache: Cache) -> list[tuple[str, ...]]:
    """The tags each invalidation of ``cache`` carried, from now on."""
    seen: list[tuple[str, ...]] = []
    cache.events.on("invalidation", lambda e: seen.append(tuple(e.tags)))
    return seen


def test_changes_of_a_tracked_model_invalidate_its_tags_old_values_included(
    world: dict[str, Any],
) -> None:
    seen = invalidated(world["cache"])
    sessions = world["sessions"]
    with sessions.begin() as s:
        s.add(Payment(id=1, user_id=42, amount=10))
    with sessions.begin() as s:
        s.get(Payment, 1).user_id = 43  # moves to another user: both users' lists change
    with sessions.begin() as s:
        s.delete(s.get(Payment, 1))
    with sessions() as s:
        s.add(Payment(id=2, user_id=42, amount=10))
        s.flush()
        s.rollback()  # flushed, then rolled back: nothing
    assert seen == [
        ("payment:1", "user:42"),
        ("payment:1", "user:42", "user:43"),
        ("payment:1", "user:43"),
    ]
    assert outbox_rows(world["engine"]) == 0


def test_bulk_statements_on_a_tracked_model_invalidate_the_rows_they_touch(
    world: dict[str, Any],
) -> None:
    from sqlalchemy import delete, update

    sessions = world["sessions"]
    with sessions.begin() as s:
        s.add_all([Payment(id=i, user_id=40 + i % 2, amount=i) for i in range(1, 5)])
    seen = invalidated(world["cache"])
    with sessions.begin() as s:  # payments 1 and 3 (user 41) move to user 50
        s.execute(update(Payment).where(Payment.user_id == 41).values(user_id=50))
    with sessions.begin() as s:
        s.execute(delete(Payment).where(Payment.amount >= 4))  # payment 4, user 40
    with sessions.begin() as s:
        s.execute(update(Payment).where(Payment.id == 99).values(amount=0))  # no row: no tags
    assert seen == [
        ("payment:1", "payment:3", "user:41", "user:50"),
        ("payment:4", "user:40"),
    ]
    assert outbox_rows(world["engine"]) == 0


def test_invalidate_on_checks_its_templates() -> None:
    from freshlink import KeyTemplateError

    with pytest.raises(KeyTemplateError, match="not a column attribute of Payment"):
        fsa.invalidate_on(Payment, tags=["payment:{nope}"])
    with pytest.raises(KeyTemplateError, match="no tag templates"):
        fsa.invalidate_on(Payment, tags=[])


async def test_an_async_session_invalidates_after_its_commit(
    world: dict[str, Any], db_url: str
) -> None:
    pytest.importorskip("greenlet")
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    if db_url.startswith("sqlite"):
        pytest.importorskip("aiosqlite")
        async_url = db_url.replace("sqlite://", "sqlite+aiosqlite://")
    else:
        async_url = db_url.replace("+psycopg", "+psycopg_async")
    engine = create_async_engine(async_url)
    sessions = async_sessionmaker(engine)
    try:
        assert world["link"](7) == "v1"
        async with sessions() as s:
            (await s.get(Loan, 7)).link = "v2"  # type: ignore[union-attr]
            fsa.invalidate_on_commit(s, "loan:7")
            await s.rollback()  # nothing
        assert world["link"](7) == "v1"
        async with sessions.begin() as s:
            (await s.get(Loan, 7)).link = "v3"  # type: ignore[union-attr]
            fsa.invalidate_on_commit(s, "loan:7")
        assert world["link"](7) == "v3"
        assert outbox_rows(world["engine"]) == 0
    finally:
        await engine.dispose()


def test_relay_metrics_count_what_each_pass_did(world: dict[str, Any]) -> None:
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    metrics = fsa.RelayMetrics(registry)
    table = fsa.outbox_table(Base.metadata)
    with world["sessions"].begin() as s:
        s.execute(table.insert().values(namespace="sa", tags="loan:7", created=0.0))
        s.execute(table.insert().values(namespace="sa", tags="loan:8", created=1e12))
    metrics.observe(fsa.relay_once(world["engine"], lambda ns: world["cache"], grace=5))

    def value(name: str) -> float:
        got = registry.get_sample_value(name)
        assert got is not None, name
        return got

    assert value("freshlink_outbox_applied_total") == 1
    assert value("freshlink_outbox_failed_total") == 0
    assert value("freshlink_outbox_pending") == 1  # the row younger than the grace
    assert value("freshlink_outbox_oldest_pending_seconds") == 0  # created in the future


def test_a_session_closed_without_commit_invalidates_nothing_later(world: dict[str, Any]) -> None:
    seen = invalidated(world["cache"])
    session = world["sessions"]()
    session.get(Loan, 7).link = "v2"
    fsa.invalidate_on_commit(session, "loan:7")
    session.close()  # neither committed nor rolled back by hand
    with session.begin():  # the same session object, a new transaction
        fsa.invalidate_on_commit(session, "other:1")
    assert seen == [("other:1",)]
    assert world["link"](7) == "v1"


def test_each_sessionmaker_can_invalidate_its_own_cache(
    tmp_path: Path, make_redis_cache: Callable[..., Cache]
) -> None:
    # An app factory makes several apps per process: each installs on its own sessions.
    fsa.uninstall()
    engine = create_engine(f"sqlite:///{tmp_path / 'apps.db'}")
    Base.metadata.create_all(engine)
    first, second = sessionmaker(engine), sessionmaker(engine)
    caches = [make_redis_cache(namespace=n, local=None) for n in ("one", "two")]
    seen = [invalidated(c) for c in caches]
    try:
        fsa.install(caches[0], target=first)
        fsa.install(caches[1], target=second)
        with pytest.raises(ConfigurationError, match="overlap"):
            fsa.install(caches[0])  # every Session: it would invalidate their commits twice
        with first.begin() as s:
            s.add(Payment(id=1, user_id=42, amount=10))  # a tracked model
        with second.begin() as s:
            fsa.invalidate_on_commit(s, "loan:2")
        with Session(engine) as s, pytest.raises(ConfigurationError, match="install"):
            fsa.invalidate_on_commit(s, "loan:3")  # neither app's sessions: no hooks
        assert seen == [[("payment:1", "user:42")], [("loan:2",)]]
        assert fsa.installed(second()) is not None
        fsa.uninstall(first)
        assert fsa.installed(first) is None
        assert fsa.installed(second) is not None
    finally:
        fsa.uninstall()
        engine.dispose()


@pytest.mark.parametrize("url", ["memory://", ""])
def test_the_relay_command_refuses_a_cache_no_server_shares(
    world: dict[str, Any], db_url: str, url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # "applied" in the relay's own memory:// would delete rows whose invalidation reached
    # nobody: the servers would keep the old values until their TTL.
    from freshlink.cli import main

    with world["sessions"].begin() as s:
        s.execute(
            fsa.outbox_table(Base.metadata)
            .insert()
            .values(namespace="sa", tags="loan:7", created=0.0)
        )
    assert main(["relay", "--db", db_url, "--url", url, "--once"]) == 2
    assert "reaches no other process" in capsys.readouterr().err
    assert outbox_rows(world["engine"]) == 1


def test_the_relay_command_reports_a_bad_database_in_one_line(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from freshlink.cli import main

    db = f"sqlite:///{tmp_path / 'missing-dir' / 'app.db'}"
    assert main(["relay", "--db", db, "--url", redis_url, "--once"]) == 3
    err = capsys.readouterr().err
    assert "unable to open database file" in err
    assert "Traceback" not in err
