"""The outbox: invalidations written in the same transaction as the data they are about.

A row holds the tags one transaction invalidates (newline-separated) and the cache namespace
they belong to. It is inserted by the transaction itself, so it exists exactly when the data
change does: a rollback, or a rolled-back savepoint, removes it with the rest. After the
commit the process applies it at once and deletes it; if the process dies first, or the
cache cannot confirm the invalidation, the row stays, and :func:`relay_once` applies it
later. Applying a row twice costs one extra miss, never a stale read.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    delete,
    func,
    or_,
    select,
    update,
)

from ..outbox import TABLE, Invalidate, Pending, RelayPass, apply_rows

__all__ = ["TABLE", "Pending", "RelayPass", "apply_rows", "outbox_table", "relay_once"]


def outbox_table(metadata: MetaData) -> Table:
    """The outbox table in ``metadata`` (added once; ``create_all`` or Alembic creates it)."""
    existing = metadata.tables.get(TABLE)
    if existing is not None:
        return existing
    return Table(
        TABLE,
        metadata,
        # BIGINT on real databases; SQLite's rowid alias must be spelled INTEGER.
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
        Column("namespace", String(200), nullable=False),
        Column("tags", Text, nullable=False),
        Column("created", Float, nullable=False),  # time.time() of the writing transaction
        # A relay's claim (databases without FOR UPDATE SKIP LOCKED): who, and until when.
        Column("claim", String(32), nullable=True),
        Column("claimed_until", Float, nullable=True),
        Index("freshlink_outbox_created", "created"),
    )


def pending(conn: Connection, table: Table, now: float) -> Pending:
    """How many rows wait, and how old the oldest is."""
    count, oldest = conn.execute(select(func.count(), func.min(table.c.created))).one()
    return Pending(int(count), max(now - oldest, 0.0) if oldest is not None else 0.0)


def relay_once(
    engine: Engine,
    table: Table,
    invalidate: Invalidate,
    *,
    grace: float = 5.0,
    batch: int = 500,
    lease: float = 30.0,
    clock: Callable[[], float] = time.time,
) -> RelayPass:
    """Apply the rows older than ``grace`` seconds (the writers apply their own at once:
    the grace keeps the relay from racing them), up to ``batch`` of them.

    Several relays may run at once. On PostgreSQL each takes its rows with ``FOR UPDATE
    SKIP LOCKED`` in the transaction that deletes them, so a relay that dies mid-pass leaves
    them to the next. Elsewhere (SQLite) a relay claims its rows first for ``lease`` seconds
    with one ``UPDATE`` (the database serializes writers), and a claim that outlives its
    relay expires.
    """
    now = clock()
    before = now - grace
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            query = (
                select(table.c.id, table.c.namespace, table.c.tags)
                .where(table.c.created <= before)
                .order_by(table.c.id)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
            done, failed = apply_rows(conn.execute(query), invalidate)
            if done:
                conn.execute(delete(table).where(table.c.id.in_(done)))
    else:
        token = secrets.token_hex(8)
        free = or_(table.c.claimed_until.is_(None), table.c.claimed_until < now)
        with engine.begin() as conn:
            ids = select(table.c.id).where(table.c.created <= before, free)
            conn.execute(
                update(table)
                .where(table.c.id.in_(ids.order_by(table.c.id).limit(batch).scalar_subquery()))
                .where(free)
                .values(claim=token, claimed_until=now + lease)
            )
        with engine.begin() as conn:
            query = select(table.c.id, table.c.namespace, table.c.tags).where(
                table.c.claim == token
            )
            done, failed = apply_rows(conn.execute(query), invalidate)
            if done:
                conn.execute(delete(table).where(table.c.id.in_(done)))
            conn.execute(
                update(table).where(table.c.claim == token).values(claim=None, claimed_until=None)
            )
    with engine.connect() as conn:
        left = pending(conn, table, clock())
    return RelayPass(len(done), failed, left)
