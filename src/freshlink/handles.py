"""What ``cache.cached`` returns and takes: typed handles (checked with mypy in tests/unit/typing),
the one overloaded ``cached`` factory shared by Cache and the plugins' proxies, and UNSET."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Final, Generic, ParamSpec, Protocol, TypeVar, overload

__all__ = ["UNSET", "AsyncCached", "Cached", "CachedDecorator", "CachedFactory", "Unset"]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Cached(Protocol, Generic[P, R_co]):
    """A cached sync function: call it like the original, plus handles."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Return the cached value, loading it on a miss."""

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Invalidate the entry of this call, in every process."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        """Run the original now and store its result as the entry of this call."""

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The entry key this call uses (usable with ``cache.get``)."""

    def tags(self, *args: P.args, **kwargs: P.kwargs) -> tuple[str, ...]:
        """The rendered tags of this call."""

    @property
    def uncached(self) -> Callable[P, R_co]:
        """The original function."""

    def __get__(self, instance: Any, owner: Any = None) -> Any: ...


class AsyncCached(Protocol, Generic[P, R_co]):
    """A cached ``async def`` function: awaitable, with awaitable handles."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]:
        """Return the cached value, loading it on a miss."""

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, None]:
        """Invalidate the entry of this call, in every process."""

    def refresh(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]:
        """Run the original now and store its result as the entry of this call."""

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The entry key this call uses (usable with ``cache.get``)."""

    def tags(self, *args: P.args, **kwargs: P.kwargs) -> tuple[str, ...]:
        """The rendered tags of this call."""

    @property
    def uncached(self) -> Callable[P, Coroutine[Any, Any, R_co]]:
        """The original function."""

    def __get__(self, instance: Any, owner: Any = None) -> Any: ...


class CachedDecorator(Protocol):
    """What ``cache.cached(...)`` returns."""

    @overload
    def __call__(  # type: ignore[overload-overlap]
        self, func: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncCached[P, R]: ...
    @overload
    def __call__(self, func: Callable[P, R]) -> Cached[P, R]: ...


class Unset:
    """The type of :data:`UNSET`: "not given", where ``None`` means something (no expiry)."""

    def __repr__(self) -> str:
        return "<default>"


#: An option not given (its default applies).
UNSET: Final = Unset()


class CachedFactory:
    """The ``cached`` decorator of :class:`~freshlink.Cache` and of the plugins' proxies."""

    @overload
    def cached(
        self,
        ttl: float | Unset | None = ...,
        *,
        key: str | None = ...,
        tags: Iterable[str] = ...,
        version: str | int | None = ...,
        code_identity: bool = ...,
        jitter: float | Unset = ...,
        ahead: float | Unset | None = ...,
        beta: float | Unset = ...,
        stale_while_revalidate: float | Unset = ...,
        stale_if_error: float | Unset = ...,
        none_ttl: float | Unset | None = ...,
        cache_none: bool | Unset = ...,
        should_cache: Callable[[Any], bool] | None = ...,
        expiring_within: float | Unset | None = ...,
    ) -> CachedDecorator: ...
    @overload
    def cached(  # type: ignore[overload-overlap]
        self, ttl: Callable[P, Coroutine[Any, Any, R]]
    ) -> AsyncCached[P, R]: ...
    @overload
    def cached(self, ttl: Callable[P, R]) -> Cached[P, R]: ...
    def cached(self, ttl: Any = UNSET, **options: Any) -> Any:
        """Decorate a function (sync or async, method, classmethod, staticmethod) to cache it.

        ``key`` is a template such as ``"loan:{loan_id}"`` (default: a hash of all arguments);
        ``tags`` are templates whose invalidation kills the entry; ``version`` is part of
        every key, so bumping it makes old entries unreachable. The freshness options
        (``ahead``, ``beta``, ``stale_while_revalidate``, ``stale_if_error``, ``none_ttl``,
        ``cache_none``, ``should_cache``, ``jitter``, ``expiring_within``) default to the
        cache's own; see :class:`~freshlink.policy.Freshness`.
        """
        if callable(ttl) and not isinstance(ttl, Unset):
            return self._decorator(UNSET, {})(ttl)  # bare ``@cache.cached``
        return self._decorator(ttl, options)

    def _decorator(self, ttl: Any, options: dict[str, Any]) -> Callable[[Any], Any]:
        """The decorator for these options, checked before any function is decorated."""
        raise NotImplementedError
