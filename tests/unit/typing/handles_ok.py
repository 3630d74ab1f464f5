"""Type-checked by tests/unit/test_typing.py with mypy --strict: the handles keep the signature."""

from __future__ import annotations

from freshlink import Cache

cache = Cache()


@cache.cached(ttl=60, key="loan:{loan_id}", tags=["user:{user_id}"])
def get_loan(loan_id: int, user_id: int) -> dict[str, int]:
    return {"id": loan_id, "user": user_id}


@cache.cached(ttl=60)
async def aget_loan(loan_id: int) -> dict[str, int]:
    return {"id": loan_id}


loan: dict[str, int] = get_loan(7, 42)
get_loan.invalidate(7, 42)
fresh: dict[str, int] = get_loan.refresh(7, user_id=42)
key: str = get_loan.key(7, 42)
tags: tuple[str, ...] = get_loan.tags(7, 42)
original = get_loan.uncached
same: dict[str, int] = original(7, 42)


async def use_async() -> None:
    got: dict[str, int] = await aget_loan(7)
    await aget_loan.invalidate(7)
    again: dict[str, int] = await aget_loan.refresh(7)
    print(got, again)
