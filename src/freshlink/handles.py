"""Typed handles carried by decorated functions (checked with mypy in tests/typing)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

__all__ = ["AsyncCached", "Cached", "CachedDecorator"]

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
