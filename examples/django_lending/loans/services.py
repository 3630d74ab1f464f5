"""Cached reads, declared at import time with the plugin's lazy ``cache`` proxy."""

from __future__ import annotations

from typing import Any

from freshlink.contrib.django import cache, stale_reporter

from .models import Loan


@cache.cached(ttl=300, key="my-loan:{borrower_id}", tags=["borrower:{borrower_id}"])
def my_loan(borrower_id: int) -> dict[str, Any] | None:
    """The borrower's loan as the "my loan" page shows it (JSON-serialisable)."""
    loan = Loan.objects.select_related("borrower").filter(borrower_id=borrower_id).last()
    if loan is None:
        return None
    return {
        "id": loan.pk,
        "borrower": loan.borrower.name,
        "amount_cents": loan.amount_cents,
        "link_token": loan.link_token,
        "link_expires_at": loan.link_expires_at.timestamp(),
    }


def current_borrower(request: Any) -> int | None:
    """The demo "login": a borrower id in a cookie (a real site uses request.user)."""
    raw = request.COOKIES.get("borrower", "")
    return int(raw) if raw.isdigit() else None


@stale_reporter("my_loan")
def report_my_loan(request: Any) -> None:
    """ "This page looks out of date": reload the reporting borrower's loan everywhere."""
    borrower = current_borrower(request)
    if borrower is not None:
        my_loan.refresh(borrower)
