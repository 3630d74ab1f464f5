"""The expired-loan-link story, told with freshlink.

A borrower's "my loans" page reads a loan through a cached ``get_loan``. A back-office job
renews the loan's payment link. The very next read must show the renewed link, not the one
cached before the renewal.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import sys
import time

from freshlink import Cache, Local

cache = Cache(namespace="lending", local=Local(maxsize=10_000))

# A stand-in for the database, and a counter of how often the loader really reads it.
DATABASE = {7: {"loan_id": 7, "user_id": 42, "link": "https://pay.example/loan/7?token=aaa"}}
loader_calls = 0


@cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}", "user:{user_id}"])
def get_loan(loan_id: int, user_id: int) -> dict[str, object]:
    """Read a loan (a simulated database round trip)."""
    global loader_calls
    loader_calls += 1
    time.sleep(0.02)
    return dict(DATABASE[loan_id])


@cache.invalidates("loan:{loan_id}")
def renew_link(loan_id: int) -> None:
    """Back office: issue a fresh payment link (the cache is invalidated after it returns)."""
    DATABASE[loan_id]["link"] = f"https://pay.example/loan/{loan_id}?token=bbb"


def show(step: str, loan: dict[str, object]) -> None:
    """Print one line of the story."""
    print(f"{step:<34} link={loan['link']}  (loader calls: {loader_calls})")


def check(ok: bool, what: str) -> None:
    """Stop with exit status 1 if the story went wrong."""
    if not ok:
        sys.exit(f"FAILED: {what}")


def main() -> None:
    """Tell the story; exit 0 only if every read saw what it should."""
    first = get_loan(7, 42)
    show("1. borrower opens 'my loans'", first)
    check(loader_calls == 1, "the first read should load")

    second = get_loan(7, 42)
    show("2. borrower reloads (cache hit)", second)
    check(loader_calls == 1, "the second read should be a hit")

    renew_link(7)
    print("3. back office renews the link")

    third = get_loan(7, 42)
    show("4. borrower reloads", third)
    check(third["link"] != first["link"], "served the link cached before the renewal")
    check(loader_calls == 2, "the read after the renewal should load once")

    fourth = get_loan(7, 42)
    show("5. borrower reloads (cache hit)", fourth)
    check(fourth == third and loader_calls == 2, "the renewed link should now be a hit")

    print(f"loader calls: {loader_calls} for 4 reads; the renewed link was served at once.")


if __name__ == "__main__":
    main()
