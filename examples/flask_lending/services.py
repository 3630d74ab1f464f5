"""Cached reads and invalidating writes, declared once at import time.

``fl`` is the freshlink extension. Its decorators bind, at each call, to the Cache of the
current Flask app, so they work with the app factory and with several apps in one process.
"""

from __future__ import annotations

from typing import Any

from flask import current_app, request

from freshlink.contrib.flask import Freshlink

from . import db

fl = Freshlink()


def _sessions() -> Any:
    return current_app.extensions["lending"]


def current_borrower() -> int | None:
    """The logged-in borrower's id (from the demo cookie), or None."""
    raw = request.cookies.get("borrower", "")
    return int(raw) if raw.isdigit() else None


@fl.cached(ttl=300, key="my-loan:{borrower_id}", tags=["borrower:{borrower_id}"])
def my_loan(borrower_id: int) -> dict[str, Any] | None:
    """The borrower's loan and payment link, as the "my loan" page shows it."""
    return db.loan_of(_sessions(), borrower_id)


# The writes need no decorator: db.invalidate_on(Loan, ...) invalidates the loan's tags after
# the commit, through the outbox (so a crash right after the commit cannot lose it).
def renew_link(loan_id: int) -> dict[str, Any]:
    """Back office: issue a new payment link."""
    lifetime = current_app.config["LENDING_LINK_LIFETIME"]
    return db.set_link(_sessions(), loan_id, lifetime=lifetime)


def expire_link(loan_id: int) -> dict[str, Any]:
    """Back office: revoke the payment link now."""
    return db.set_link(_sessions(), loan_id, lifetime=-1)


@fl.stale_reporter("my_loan")
def _report_my_loan() -> None:
    # "This page looks wrong": reload the reporting borrower's loan for everyone.
    borrower = current_borrower()
    if borrower is not None:
        my_loan.refresh(borrower)
