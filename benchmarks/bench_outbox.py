"""What the outbox adds to a write transaction, on SQLite and PostgreSQL, same run.

python -m benchmarks.bench_outbox [--quick] [--rounds 9] [--number 200]

One write transaction: ``UPDATE`` one row through a SQLAlchemy ``Session`` and commit, with
its invalidation of two tags sent to Redis after the commit
(``freshlink.contrib.sqlalchemy.invalidate_on_commit``), without and with the outbox (the
row written in the transaction, deleted after the invalidation), next to the same
transaction with no invalidation at all (the floor). A SQLite file (WAL, as apps run it) and
a PostgreSQL server started here (``fsync`` off: both measure the work, not the disk). The
rounds are interleaved; each row is µs per transaction, with the ratio to the floor.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Integer, MetaData, Table, create_engine, event, update
from sqlalchemy.orm import Session

from benchmarks._harness import environment, interleaved, table
from freshlink import Cache
from freshlink.contrib import sqlalchemy as fsa
from freshlink.testing import RedisServer
from freshlink.testing.postgres import PostgresServer, postgres_bindir


def _cases(
    db_url: str, cache: Cache, label: str
) -> tuple[list[tuple[str, Any]], Callable[[], None]]:
    """(cases, close) for one database: floor, invalidate after commit, with the outbox."""
    metadata = MetaData()
    items = Table(
        "bench_items", metadata, Column("id", Integer, primary_key=True), Column("v", Integer)
    )
    fsa.outbox_table(metadata)
    engine = create_engine(db_url)
    if db_url.startswith("sqlite"):

        @event.listens_for(engine, "connect")
        def wal(conn: Any, _record: Any) -> None:
            conn.execute("PRAGMA journal_mode=WAL")

    fsa.uninstall()
    fsa.install(cache, outbox=True, metadata=metadata)
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(items.insert(), [{"id": i, "v": 0} for i in range(100)])
    counter = [0]

    def write(tags: bool) -> None:
        counter[0] += 1
        i = counter[0] % 100
        with Session(engine) as s, s.begin():
            s.execute(update(items).where(items.c.id == i).values(v=items.c.v + 1))
            if tags:
                fsa.invalidate_on_commit(s, f"item:{i}", "user:42")

    hooks = fsa.installed()
    assert hooks is not None
    outbox = fsa.outbox_table(metadata)

    def with_hooks(table: Table | None) -> Callable[[], None]:
        def run() -> None:
            hooks.table = table  # the same hooks, the outbox on or off
            write(True)

        return run

    cases = [
        (f"{label}: transaction, no invalidation", lambda: write(False)),
        (f"{label}: + invalidate after commit", with_hooks(None)),
        (f"{label}: + invalidate through the outbox", with_hooks(outbox)),
    ]

    def close() -> None:
        metadata.drop_all(engine)
        engine.dispose()

    return cases, close


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--number", type=int, default=200)
    ap.add_argument("--quick", action="store_true", help="few rounds (CI)")
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.number = 3, 50
    parts = [environment()]
    with RedisServer() as redis_server, tempfile.TemporaryDirectory() as tmp:
        cache = Cache(redis_server.url, namespace="bench-outbox", local=None)
        dbs = [("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}")]
        pg: PostgresServer | None = None
        if postgres_bindir() is not None:
            pg = PostgresServer().start()
            dbs.append(("PostgreSQL", pg.url))
        else:
            parts.append("_PostgreSQL is not installed here: its rows were not measured._")
        try:
            for label, url in dbs:
                cases, close = _cases(url, cache, label)
                try:
                    samples = interleaved(cases, rounds=args.rounds, number=args.number)
                finally:
                    close()
                us = {k: [x / 1000 for x in v] for k, v in samples.items()}
                parts.append(
                    table(
                        us,
                        cases[0][0],
                        unit="µs",
                        title=f"Outbox cost per write transaction, {label} (µs per transaction)",
                    )
                )
        finally:
            fsa.uninstall()
            cache.close()
            if pg is not None:
                pg.stop()
    parts.append(
        "The outbox adds an `INSERT` to the transaction and a `DELETE` after the "
        "invalidation, against Redis's round trip for the invalidation itself."
    )
    out = "\n\n".join(parts)
    print(out)
    return out


if __name__ == "__main__":
    main()
