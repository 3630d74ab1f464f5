"""Every decorator on sync, async, method, classmethod and staticmethod callables."""

from __future__ import annotations

import asyncio
import inspect
from decimal import Decimal
from typing import Any

import pytest

from freshlink import Cache, ConfigurationError, KeyTemplateError, Local
from freshlink.backends.memory import MemoryBackend


class Source:
    """A tiny source of truth that counts loads."""

    def __init__(self) -> None:
        self.data: dict[int, dict[str, Any]] = {}
        self.loads = 0

    def read(self, loan_id: int) -> dict[str, Any]:
        self.loads += 1
        return dict(self.data.get(loan_id, {"id": loan_id, "link": "none"}))


@pytest.fixture
def src() -> Source:
    return Source()


def test_function_hits_after_first_call(cache: Cache, src: Source) -> None:
    @cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}", "user:{user_id}"])
    def get_loan(loan_id: int, user_id: int) -> dict[str, Any]:
        """Load a loan."""
        return src.read(loan_id)

    assert get_loan(7, 42) == {"id": 7, "link": "none"}
    assert get_loan(7, 42) == {"id": 7, "link": "none"}
    assert get_loan(loan_id=7, user_id=42)["id"] == 7
    assert src.loads == 1
    assert get_loan(8, 42)["id"] == 8
    assert src.loads == 2


def test_signature_docstring_and_uncached_are_kept(cache: Cache) -> None:
    def get_loan(loan_id: int, user_id: int = 0) -> dict[str, int]:
        """Load a loan."""
        return {"id": loan_id}

    wrapped = cache.cached(ttl=5)(get_loan)
    assert inspect.signature(wrapped) == inspect.signature(get_loan)
    assert wrapped.__doc__ == "Load a loan."
    assert wrapped.__name__ == "get_loan"
    assert wrapped.uncached is get_loan


def test_bare_decorator_uses_default_ttl(cache: Cache, src: Source) -> None:
    @cache.cached
    def get_loan(loan_id: int) -> dict[str, Any]:
        return src.read(loan_id)

    get_loan(1)
    get_loan(1)
    assert src.loads == 1


def test_handles_invalidate_refresh_key(cache: Cache, src: Source) -> None:
    @cache.cached(ttl=60, key="loan:{loan_id}", tags=["user:{user_id}"])
    def get_loan(loan_id: int, user_id: int) -> dict[str, Any]:
        return src.read(loan_id)

    get_loan(7, 42)
    src.data[7] = {"id": 7, "link": "renewed"}
    assert get_loan(7, 42)["link"] == "none"  # cached
    get_loan.invalidate(7, 42)
    assert get_loan(7, 42)["link"] == "renewed"
    src.data[7] = {"id": 7, "link": "again"}
    assert get_loan.refresh(7, user_id=42)["link"] == "again"
    loads = src.loads
    assert get_loan(7, 42)["link"] == "again"
    assert src.loads == loads
    key = get_loan.key(7, 42)
    assert key.endswith(":loan:7")
    assert key == get_loan.key(loan_id=7, user_id=42)
    assert cache.get(key) == {"id": 7, "link": "again"}
    assert get_loan.tags(7, 42) == ("user:42",)


def test_tag_invalidation_kills_dependents_only(cache: Cache, src: Source) -> None:
    @cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}", "user:{user_id}"])
    def get_loan(loan_id: int, user_id: int) -> dict[str, Any]:
        return src.read(loan_id)

    get_loan(1, 42)
    get_loan(2, 42)
    get_loan(3, 7)
    assert src.loads == 3
    cache.invalidate("user:42")
    get_loan(1, 42)
    get_loan(2, 42)
    get_loan(3, 7)
    assert src.loads == 5  # 1 and 2 reloaded, 3 still cached
    cache.invalidate("loan:3")
    get_loan(1, 42)
    get_loan(3, 7)
    assert src.loads == 6


def test_invalidates_runs_after_successful_write_only(cache: Cache, src: Source) -> None:
    @cache.cached(ttl=60, tags=["loan:{loan_id}"])
    def get_loan(loan_id: int) -> dict[str, Any]:
        return src.read(loan_id)

    @cache.invalidates("loan:{loan_id}")
    def renew_link(loan_id: int, fail: bool = False) -> str:
        src.data[loan_id] = {"id": loan_id, "link": "renewed"}
        if fail:
            raise RuntimeError("db down")
        return "ok"

    get_loan(7)
    with pytest.raises(RuntimeError):
        renew_link(7, fail=True)
    assert get_loan(7)["link"] == "none"  # write raised: nothing invalidated
    assert renew_link(7) == "ok"
    assert get_loan(7)["link"] == "renewed"


def test_invalidates_checks_templates_at_decoration(cache: Cache) -> None:
    with pytest.raises(KeyTemplateError, match="'loan'"):

        @cache.invalidates("loan:{loan}")
        def renew_link(loan_id: int) -> None: ...


def test_updates_writes_through(cache: Cache, src: Source) -> None:
    @cache.cached(ttl=60, key="loan:{loan_id}", tags=["user:{user_id}"])
    def get_loan(loan_id: int, user_id: int) -> dict[str, Any]:
        return src.read(loan_id)

    @cache.cached(ttl=60, tags=["user:{user_id}"])
    def list_loans(user_id: int) -> list[int]:
        src.loads += 1
        return [7]

    @cache.updates(get_loan)
    def renew_link(loan_id: int, user_id: int) -> dict[str, Any]:
        src.data[loan_id] = {"id": loan_id, "link": "renewed"}
        return src.data[loan_id]

    get_loan(7, 42)
    list_loans(42)
    loads = src.loads
    renew_link(7, 42)
    assert get_loan(7, 42)["link"] == "renewed"
    assert src.loads == loads  # served from the written-through entry
    list_loans(42)
    assert src.loads == loads + 1  # the user's tag was invalidated


def test_updates_requires_matching_parameters(cache: Cache) -> None:
    @cache.cached(ttl=60)
    def get_loan(loan_id: int, user_id: int) -> int:
        return loan_id

    with pytest.raises(KeyTemplateError, match="user_id"):

        @cache.updates(get_loan)
        def renew(loan_id: int) -> int:
            return loan_id

    with pytest.raises(ConfigurationError):
        cache.updates(lambda x: x)


class Repo:
    def __init__(self, src: Source, cache: Cache) -> None:
        self.src = src
        self.cache = cache


def make_repo_class(cache: Cache) -> type[Any]:
    class LoanRepo:
        def __init__(self, src: Source, tenant: str = "a") -> None:
            self.src = src
            self.tenant = tenant

        @cache.cached(ttl=60, tags=["loan:{loan_id}"])
        def get(self, loan_id: int) -> dict[str, Any]:
            return self.src.read(loan_id)

        @cache.cached(ttl=60, key="{self.tenant}:loan:{loan_id}")
        def get_for_tenant(self, loan_id: int) -> dict[str, Any]:
            return {"tenant": self.tenant, **self.src.read(loan_id)}

        @cache.cached(ttl=60)
        @classmethod
        def kind(cls, n: int) -> str:
            return f"{cls.__name__}:{n}"

        @classmethod
        @cache.cached(ttl=60)
        def kind_inner(cls, n: int) -> str:
            return f"inner:{cls.__name__}:{n}"

        @cache.cached(ttl=60)
        @staticmethod
        def rate(n: int) -> Decimal:
            return Decimal("0.05") * n

    return LoanRepo


def test_methods_classmethods_staticmethods(cache: Cache, src: Source) -> None:
    repo_cls = make_repo_class(cache)
    repo = repo_cls(src)
    assert repo.get(1)["id"] == 1
    assert repo.get(1)["id"] == 1
    assert repo_cls.get(repo, 1)["id"] == 1  # via the class, instance passed explicitly
    assert src.loads == 1
    repo.get.invalidate(1)
    repo.get(1)
    assert src.loads == 2
    cache.invalidate("loan:1")
    repo.get(1)
    assert src.loads == 3

    assert repo.kind(3) == "LoanRepo:3"
    assert repo_cls.kind(3) == "LoanRepo:3"
    assert repo_cls.kind_inner(4) == "inner:LoanRepo:4"
    assert repo.kind_inner(4) == "inner:LoanRepo:4"
    assert repo.rate(2) == Decimal("0.10")
    assert repo_cls.rate(2) == Decimal("0.10")
    assert repo_cls.rate.key(2) == repo.rate.key(2)


def test_templates_can_read_self(cache: Cache, src: Source) -> None:
    repo_cls = make_repo_class(cache)
    a, b = repo_cls(src, "a"), repo_cls(src, "b")
    assert a.get_for_tenant(1)["tenant"] == "a"
    assert b.get_for_tenant(1)["tenant"] == "b"
    assert a.get_for_tenant.key(1).endswith(":a:loan:1")
    assert a.get_for_tenant(1)["tenant"] == "a"
    assert src.loads == 2


async def test_async_function_and_handles(cache: Cache, src: Source) -> None:
    @cache.cached(ttl=60, key="loan:{loan_id}", tags=["loan:{loan_id}"])
    async def get_loan(loan_id: int) -> dict[str, Any]:
        await asyncio.sleep(0)
        return src.read(loan_id)

    assert inspect.iscoroutinefunction(get_loan)
    assert (await get_loan(7))["link"] == "none"
    assert (await get_loan(7))["link"] == "none"
    assert src.loads == 1
    src.data[7] = {"id": 7, "link": "renewed"}
    await get_loan.invalidate(7)
    assert (await get_loan(7))["link"] == "renewed"
    src.data[7] = {"id": 7, "link": "r2"}
    assert (await get_loan.refresh(7))["link"] == "r2"
    await cache.ainvalidate("loan:7")
    src.data[7] = {"id": 7, "link": "r3"}
    assert (await get_loan(7))["link"] == "r3"


async def test_async_invalidates_and_updates(cache: Cache, src: Source) -> None:
    @cache.cached(ttl=60, tags=["loan:{loan_id}"])
    async def get_loan(loan_id: int) -> dict[str, Any]:
        return src.read(loan_id)

    @cache.invalidates("loan:{loan_id}")
    async def renew(loan_id: int) -> None:
        src.data[loan_id] = {"id": loan_id, "link": "renewed"}

    @cache.updates(get_loan)
    async def renew2(loan_id: int) -> dict[str, Any]:
        src.data[loan_id] = {"id": loan_id, "link": "r2"}
        return src.data[loan_id]

    await get_loan(7)
    await renew(7)
    assert (await get_loan(7))["link"] == "renewed"
    await renew2(7)
    loads = src.loads
    assert (await get_loan(7))["link"] == "r2"
    assert src.loads == loads


async def test_async_methods(cache: Cache, src: Source) -> None:
    class Repo:
        @cache.cached(ttl=60)
        async def get(self, loan_id: int) -> dict[str, Any]:
            return src.read(loan_id)

        @cache.cached(ttl=60)
        @classmethod
        async def kind(cls, n: int) -> str:
            return f"{cls.__name__}:{n}"

    r = Repo()
    await r.get(1)
    await r.get(1)
    assert src.loads == 1
    await r.get.invalidate(1)
    await r.get(1)
    assert src.loads == 2
    assert await Repo.kind(2) == "Repo:2"


def test_version_bump_makes_old_entries_unreachable(cache: Cache, src: Source) -> None:
    def make(version: int) -> Any:
        def get_loan(loan_id: int) -> dict[str, Any]:
            return src.read(loan_id)

        return cache.cached(ttl=60, version=version)(get_loan)

    v1 = make(1)
    v1(1)
    assert make(1).key(1) == v1.key(1)
    v2 = make(2)
    assert v2.key(1) != v1.key(1)
    v2(1)
    assert src.loads == 2


def test_no_local_reads_through_backend(src: Source) -> None:
    cache = Cache(local=None)

    @cache.cached(ttl=60, tags=["t"])
    def f(x: int) -> dict[str, Any]:
        return src.read(x)

    assert f(1) == f(1)
    assert src.loads == 1
    cache.invalidate("t")
    f(1)
    assert src.loads == 2
    assert cache.near is None


def test_ttl_expiry_with_injected_clock(src: Source) -> None:
    now = [1000.0]
    clock = lambda: now[0]  # noqa: E731
    cache = Cache(
        clock=clock,
        monotonic=clock,
        backend=MemoryBackend(clock=clock),
        local=Local(maxsize=10, mode="strict"),
    )

    @cache.cached(ttl=10)
    def f(x: int) -> dict[str, Any]:
        return src.read(x)

    f(1)
    now[0] += 9
    f(1)
    assert src.loads == 1
    now[0] += 2
    f(1)
    assert src.loads == 2
