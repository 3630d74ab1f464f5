"""Decorators usable at import time, before any app or settings exist.

:class:`CacheProxy` resolves the current :class:`~freshlink.Cache` on every call (the Flask
app's, or the one built from Django settings) and runs the wrapper bound to it; the wrappers
are kept per Cache in its :class:`Bindings`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

from ..cache import Cache
from ..errors import ConfigurationError
from ..handles import CachedFactory, Unset

__all__ = ["Bindings", "CacheProxy"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class Bindings:
    """A Cache plus the wrappers that functions decorated through a :class:`CacheProxy` bound to it.

    The wrappers live here, with the Cache, rather than on the module-level decorated
    function, so that they are dropped together with the app (or settings) that owns the Cache.
    """

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self._bound: dict[object, Any] = {}
        self._lock = threading.Lock()

    def bind(self, lazy: object, build: Callable[[Bindings], T]) -> T:
        """The wrapper of ``lazy`` for this Cache, built on first use."""
        try:
            return self._bound[lazy]  # type: ignore[no-any-return]
        except KeyError:
            pass
        # Built outside the lock: building may bind other functions (an @updates reader).
        made = build(self)
        with self._lock:
            return self._bound.setdefault(lazy, made)  # type: ignore[no-any-return]


_validator_cache: Cache | None = None


def _validator() -> Cache:
    # An unused in-process Cache that decorators are applied to once at import time, so a bad
    # template or option fails there (like a plain @cache.cached) and not on the first request.
    global _validator_cache
    if _validator_cache is None:
        _validator_cache = Cache("memory://", namespace="freshlink-validate", local=None)
    return _validator_cache


class _Lazy:
    """A function decorated through a proxy: each call runs the current Cache's wrapper."""

    def __init__(
        self, proxy: CacheProxy, func: Any, build: Callable[[Bindings], Any], checked: Any
    ) -> None:
        self._proxy = proxy
        self._build = build
        self._checked = checked  # the validator Cache's wrapper: key/tags need no app
        functools.update_wrapper(self, func)

    def _target(self) -> Any:
        return self._proxy.bindings().bind(self, self._build)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapper bound to the current Cache."""
        return self._target()(*args, **kwargs)

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        return _LazyBound(self, instance, owner)

    def __repr__(self) -> str:
        return f"<freshlink lazy {self._checked!r}>"


class _LazyCached(_Lazy):
    """A cached function decorated through a proxy; the handles act on the current Cache."""

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Invalidate the entry of this call, in every process."""
        return self._target().invalidate(*args, **kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Run the original now and store its result as the entry of this call."""
        return self._target().refresh(*args, **kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The entry key this call uses (the same for every Cache)."""
        return self._checked.key(*args, **kwargs)  # type: ignore[no-any-return]

    def tags(self, *args: Any, **kwargs: Any) -> tuple[str, ...]:
        """The rendered tags of this call."""
        return self._checked.tags(*args, **kwargs)  # type: ignore[no-any-return]

    @property
    def uncached(self) -> Any:
        """The original function."""
        return self.__wrapped__  # type: ignore[attr-defined]


class _LazyBound:
    """A lazily bound method: binds the current Cache's wrapper to the instance on each use."""

    def __init__(self, lazy: _Lazy, instance: Any, owner: Any) -> None:
        self._lazy = lazy
        self._instance = instance
        self._owner = owner

    def _target(self) -> Any:
        return self._lazy._target().__get__(self._instance, self._owner)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the bound method through the current Cache."""
        return self._target()(*args, **kwargs)

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Invalidate the entry of this call, in every process."""
        return self._target().invalidate(*args, **kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Run the original now and store its result as the entry of this call."""
        return self._target().refresh(*args, **kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The entry key this call uses."""
        checked = self._lazy._checked.__get__(self._instance, self._owner)
        return checked.key(*args, **kwargs)  # type: ignore[no-any-return]

    def tags(self, *args: Any, **kwargs: Any) -> tuple[str, ...]:
        """The rendered tags of this call."""
        checked = self._lazy._checked.__get__(self._instance, self._owner)
        return checked.tags(*args, **kwargs)  # type: ignore[no-any-return]

    @property
    def uncached(self) -> Any:
        """The original function, bound."""
        return self._lazy.__wrapped__.__get__(self._instance, self._owner)  # type: ignore[attr-defined]


class CacheProxy(CachedFactory):
    """Decorators usable at import time; every call resolves the Cache through ``bindings``.

    ``bindings`` returns the current :class:`Bindings` (the Flask app's, or the one built from
    Django settings). A decorated function's wrapper for that Cache is built on first use and
    kept with it, so the cost per call is one lookup.
    """

    def __init__(self, bindings: Callable[[], Bindings]) -> None:
        self.bindings = bindings

    @property
    def cache(self) -> Cache:
        """The Cache of the current app or settings."""
        return self.bindings().cache

    def _decorator(self, ttl: Any, options: dict[str, Any]) -> Callable[[Any], Any]:
        # Checked against a throwaway Cache now; the wrapper is built per Cache when first called.
        args = () if isinstance(ttl, Unset) else (ttl,)

        def decorate(func: Any) -> Any:
            return self._lazy_cached(func, args, options)

        return decorate

    def _lazy_cached(self, func: Any, args: tuple[Any, ...], options: dict[str, Any]) -> Any:
        checked = _validator().cached(*args, **options)(func)

        def build(bindings: Bindings) -> Any:
            return bindings.cache.cached(*args, **options)(func)

        return _LazyCached(self, func, build, checked)

    def invalidates(self, *tags: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Like :meth:`Cache.invalidates`: invalidate the current Cache's tags after the write."""

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            checked = _validator().invalidates(*tags)(func)

            def build(bindings: Bindings) -> Any:
                return bindings.cache.invalidates(*tags)(func)

            return _Lazy(self, func, build, checked)

        return decorate

    def updates(self, reader: Any) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """Like :meth:`Cache.updates`, for a reader decorated through this proxy."""
        if not isinstance(reader, _LazyCached) or reader._proxy is not self:
            raise ConfigurationError(
                f"updates() needs a function decorated with this proxy's cached(), got {reader!r}"
            )

        def decorate(func: Callable[P, R]) -> Callable[P, R]:
            checked = _validator().updates(reader._checked)(func)

            def build(bindings: Bindings) -> Any:
                real_reader = bindings.bind(reader, reader._build)
                return bindings.cache.updates(real_reader)(func)

            return _Lazy(self, func, build, checked)

        return decorate

    def invalidate(self, *tags: str) -> None:
        """Invalidate ``tags`` in the current Cache (see :meth:`Cache.invalidate`)."""
        self.cache.invalidate(*tags)

    async def ainvalidate(self, *tags: str) -> None:
        """Async :meth:`invalidate`."""
        await self.cache.ainvalidate(*tags)
