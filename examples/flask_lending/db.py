"""The example's database: SQLite through the standard library's ``sqlite3``."""

from __future__ import annotations

import secrets
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS borrowers (
    id   INTEGER PRIMARY KEY,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS loans (
    id              INTEGER PRIMARY KEY,
    borrower_id     INTEGER NOT NULL REFERENCES borrowers (id),
    amount_cents    INTEGER NOT NULL,
    link_token      TEXT NOT NULL,
    link_expires_at REAL NOT NULL
);
"""


@contextmanager
def connect(path: str) -> Iterator[sqlite3.Connection]:
    """A connection whose ``with`` block is one transaction (committed on success)."""
    # timeout: two server processes may write the same file; wait for the lock, don't fail.
    with closing(sqlite3.connect(path, timeout=10)) as conn:
        conn.row_factory = sqlite3.Row
        with conn:
            yield conn


def init(path: str) -> None:
    """Create the tables and the demo rows (idempotent: several processes may run it)."""
    now = time.time()
    with connect(path) as conn:
        conn.executescript(SCHEMA)
        conn.executemany(
            "INSERT OR IGNORE INTO borrowers (id, name) VALUES (?, ?)",
            [(1, "Ada Lovelace"), (2, "Grace Hopper")],
        )
        conn.executemany(
            "INSERT OR IGNORE INTO loans VALUES (?, ?, ?, ?, ?)",
            [
                (1, 1, 250_000, "ada-0", now - 60),  # Ada's link has already expired
                (2, 2, 120_000, "grace-0", now + 900),
            ],
        )


def borrowers(path: str) -> list[dict[str, Any]]:
    """Every borrower."""
    with connect(path) as conn:
        return [dict(r) for r in conn.execute("SELECT id, name FROM borrowers ORDER BY id")]


def loans(path: str) -> list[dict[str, Any]]:
    """Every loan with its borrower's name (the back-office list)."""
    with connect(path) as conn:
        rows = conn.execute(
            "SELECT loans.*, borrowers.name AS borrower FROM loans "
            "JOIN borrowers ON borrowers.id = loans.borrower_id ORDER BY loans.id"
        )
        return [dict(r) for r in rows]


def loan(path: str, loan_id: int) -> dict[str, Any] | None:
    """One loan."""
    with connect(path) as conn:
        row = conn.execute("SELECT * FROM loans WHERE id = ?", (loan_id,)).fetchone()
        return dict(row) if row else None


def loan_of(path: str, borrower_id: int) -> dict[str, Any] | None:
    """The borrower's current loan, with their name."""
    with connect(path) as conn:
        row = conn.execute(
            "SELECT loans.*, borrowers.name AS borrower FROM loans "
            "JOIN borrowers ON borrowers.id = loans.borrower_id "
            "WHERE borrower_id = ? ORDER BY loans.id DESC LIMIT 1",
            (borrower_id,),
        ).fetchone()
        return dict(row) if row else None


def set_link(path: str, loan_id: int, *, lifetime: float) -> dict[str, Any]:
    """Give a loan a new payment link valid for ``lifetime`` seconds (<= 0: expire it now)."""
    token = secrets.token_urlsafe(8)
    expires = time.time() + lifetime
    with connect(path) as conn:
        conn.execute(
            "UPDATE loans SET link_token = ?, link_expires_at = ? WHERE id = ?",
            (token, expires, loan_id),
        )
    return {"loan_id": loan_id, "token": token, "expires_at": expires}
