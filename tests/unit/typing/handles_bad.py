"""Each marked line must be a mypy error (wrong arguments to a cached function's handles)."""

from __future__ import annotations

from freshlink import Cache

cache = Cache()


@cache.cached(ttl=60)
def get_loan(loan_id: int, user_id: int) -> dict[str, int]:
    return {"id": loan_id}


get_loan("seven", 42)  # E: arg-type
get_loan.invalidate(7)  # E: call-arg
wrong: str = get_loan.key(7, 42, 3)  # E: call-arg
text: str = get_loan(7, 42)  # E: assignment
