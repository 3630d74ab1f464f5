"""The example's database: SQLAlchemy 2 models on SQLite (or any database URL).

Every change of a ``Loan`` invalidates its tags after its transaction commits, through the
outbox (``freshlink.contrib.sqlalchemy``): the tags are written to ``freshlink_outbox`` in
the same transaction, so a process that dies right after the commit leaves them for
``freshlink relay`` instead of leaving the old link cached until its TTL.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from sqlalchemy import Float, ForeignKey, Integer, String, create_engine, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from freshlink import Cache
from freshlink.contrib import sqlalchemy as fsa


class Base(DeclarativeBase):
    pass


class Borrower(Base):
    __tablename__ = "borrowers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class Loan(Base):
    __tablename__ = "loans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    borrower_id: Mapped[int] = mapped_column(ForeignKey("borrowers.id"))
    amount_cents: Mapped[int] = mapped_column(Integer)
    link_token: Mapped[str] = mapped_column(String(32))
    link_expires_at: Mapped[float] = mapped_column(Float)

    def row(self, borrower: str | None = None) -> dict[str, Any]:
        """The loan as the pages and the JSON API show it (cacheable: plain values)."""
        out = {c.name: getattr(self, c.name) for c in Loan.__table__.columns}
        if borrower is not None:
            out["borrower"] = borrower
        return out


# After a loan is inserted, updated or deleted *and the transaction commits*, these tags are
# invalidated: the cached "my loan" of its borrower (old and new, if it changed hands).
fsa.invalidate_on(Loan, tags=["loan:{id}", "borrower:{borrower_id}"])
# ... and the cached index page, which lists the borrowers.
fsa.invalidate_on(Borrower, tags=["borrowers"])


def init(database: str, cache: Cache) -> sessionmaker:  # type: ignore[type-arg]
    """The app's session factory for ``database`` (a SQLite file path or a database URL),
    its commits invalidating in ``cache`` through the outbox; creates the tables (the outbox
    too) and the demo rows. Idempotent: several server processes may run it."""
    url = database if "://" in database else f"sqlite:///{database}"
    # timeout: two server processes may write the same SQLite file; wait for the lock.
    engine = create_engine(url, connect_args={"timeout": 10} if url.startswith("sqlite") else {})
    sessions = sessionmaker(engine, expire_on_commit=False)
    # On this app's sessions only (tests and the app factory make several apps per process);
    # outbox=True adds the freshlink_outbox table to the metadata that create_all creates.
    fsa.install(cache, outbox=True, metadata=Base.metadata, target=sessions)
    for attempt in range(3):
        try:
            _create(sessions)
            break
        except (IntegrityError, OperationalError):
            # Another server process created the same tables or rows at the same moment.
            if attempt == 2:
                raise
    # Pooled connections must not cross a fork (gunicorn --preload): start with none open.
    engine.dispose()
    return sessions


def _create(sessions: sessionmaker) -> None:  # type: ignore[type-arg]
    Base.metadata.create_all(sessions.kw["bind"])
    now = time.time()
    with sessions.begin() as s:
        if s.get(Borrower, 1) is not None:
            return
        s.add_all([Borrower(id=1, name="Ada Lovelace"), Borrower(id=2, name="Grace Hopper")])
        s.flush()
        s.add_all(
            [  # Ada's link has already expired
                Loan(
                    id=1,
                    borrower_id=1,
                    amount_cents=250_000,
                    link_token="ada-0",
                    link_expires_at=now - 60,
                ),
                Loan(
                    id=2,
                    borrower_id=2,
                    amount_cents=120_000,
                    link_token="grace-0",
                    link_expires_at=now + 900,
                ),
            ]
        )


def borrowers(sessions: sessionmaker) -> list[dict[str, Any]]:  # type: ignore[type-arg]
    """Every borrower."""
    with sessions() as s:
        return [{"id": b.id, "name": b.name} for b in s.scalars(select(Borrower).order_by("id"))]


def loans(sessions: sessionmaker) -> list[dict[str, Any]]:  # type: ignore[type-arg]
    """Every loan with its borrower's name (the back-office list)."""
    with sessions() as s:
        rows = s.execute(select(Loan, Borrower.name).join(Borrower).order_by(Loan.id)).all()
        return [loan.row(name) for loan, name in rows]


def loan(sessions: sessionmaker, loan_id: int) -> dict[str, Any] | None:  # type: ignore[type-arg]
    """One loan."""
    with sessions() as s:
        found = s.get(Loan, loan_id)
        return found.row() if found else None


def loan_of(sessions: sessionmaker, borrower_id: int) -> dict[str, Any] | None:  # type: ignore[type-arg]
    """The borrower's current loan, with their name."""
    with sessions() as s:
        found = s.execute(
            select(Loan, Borrower.name)
            .join(Borrower)
            .where(Loan.borrower_id == borrower_id)
            .order_by(Loan.id.desc())
            .limit(1)
        ).first()
        return found[0].row(found[1]) if found else None


def set_link(sessions: sessionmaker, loan_id: int, *, lifetime: float) -> dict[str, Any]:  # type: ignore[type-arg]
    """Give a loan a new payment link valid for ``lifetime`` seconds (<= 0: expire it now).

    The commit writes the loan and its outbox row together; the tags are invalidated right
    after it, before this returns (or, if the process dies first, by the relay).
    """
    token = secrets.token_urlsafe(8)
    expires = time.time() + lifetime
    with sessions.begin() as s:
        found = s.get(Loan, loan_id)
        if found is None:
            raise LookupError(f"no loan {loan_id}")
        found.link_token, found.link_expires_at = token, expires
    return {"loan_id": loan_id, "token": token, "expires_at": expires}
