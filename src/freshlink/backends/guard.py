"""GuardedBackend: circuit breaking and invalidation retries, wrapped around any backend.

Cross-cutting behaviour lives here rather than in the I/O code (compare dogpile's
``ProxyBackend``): the Redis backend only talks to Redis; this wrapper decides when not to.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from ..breaker import CircuitBreaker
from ..errors import BackendError, CircuitOpenError, InvalidationError
from ..policy import backoff
from .base import Backend, Entry, InvalidationListener, Notice, Read

__all__ = ["GuardedBackend"]

T = TypeVar("T")


class GuardedBackend(Backend):
    """Delegates to ``inner``; fails fast while the breaker is open; retries invalidations."""

    def __init__(
        self,
        inner: Backend,
        breaker: CircuitBreaker,
        *,
        invalidation_attempts: int = 3,
        retry_base: float = 0.02,
        retry_cap: float = 0.2,
        rng: Callable[[], float] = random.random,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self.breaker = breaker
        self.synchronous = inner.synchronous
        self.supports_leases = inner.supports_leases
        self._attempts = max(invalidation_attempts, 1)
        self._base = retry_base
        self._cap = retry_cap
        self._rng = rng
        self._sleep = sleep

    def __getattr__(self, name: str) -> Any:
        # Backend-specific extras (listener, client, run_id, lease_key...) pass through.
        return getattr(self.inner, name)

    # The guard itself ------------------------------------------------------------------

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if not self.breaker.allow():
            raise CircuitOpenError("backend circuit is open (recent failures); not calling it")
        try:
            result = fn(*args)
        except BackendError:
            self.breaker.failure()
            raise
        except BaseException:
            self.breaker.abandon()  # not a backend verdict; never leave a probe slot taken
            raise
        self.breaker.success()
        return result

    async def _acall(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if not self.breaker.allow():
            raise CircuitOpenError("backend circuit is open (recent failures); not calling it")
        try:
            result = await fn(*args)
        except BackendError:
            self.breaker.failure()
            raise
        except BaseException:
            # A cancelled probe (a request timeout) must free the half-open slot, or the
            # breaker would refuse every later call and never heal.
            self.breaker.abandon()
            raise
        self.breaker.success()
        return result

    def _confirm(self, fn: Callable[..., T], *args: Any) -> T:
        # Invalidations are retried (an extra increment is just one more invalidation, so a
        # retry after an unknown outcome is safe), then reported: never dropped silently.
        for attempt in range(1, self._attempts + 1):
            try:
                return self._call(fn, *args)
            except BackendError as exc:
                if attempt == self._attempts:
                    raise InvalidationError(
                        f"invalidation not confirmed after {attempt} attempts: {exc}"
                    ) from exc
                self._sleep(backoff(attempt, self._base, self._cap, self._rng))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _aconfirm(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        import asyncio  # here: already loaded in async code, and `import freshlink` stays light

        for attempt in range(1, self._attempts + 1):
            try:
                return await self._acall(fn, *args)
            except BackendError as exc:
                if attempt == self._attempts:
                    raise InvalidationError(
                        f"invalidation not confirmed after {attempt} attempts: {exc}"
                    ) from exc
                await asyncio.sleep(backoff(attempt, self._base, self._cap, self._rng))
        raise AssertionError("unreachable")  # pragma: no cover

    # Backend API -----------------------------------------------------------------------

    def read(self, key: str, names: Sequence[str]) -> Read:
        """Guarded :meth:`Backend.read`."""
        return self._call(self.inner.read, key, names)

    async def aread(self, key: str, names: Sequence[str]) -> Read:
        """Guarded :meth:`Backend.aread`."""
        return await self._acall(self.inner.aread, key, names)

    def write(self, key: str, entry: Entry, retain: float | None, token: str = "") -> bool:
        """Guarded :meth:`Backend.write`."""
        return self._call(self.inner.write, key, entry, retain, token)

    async def awrite(self, key: str, entry: Entry, retain: float | None, token: str = "") -> bool:
        """Guarded :meth:`Backend.awrite`."""
        return await self._acall(self.inner.awrite, key, entry, retain, token)

    def write_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> bool:
        """Guarded, retried :meth:`Backend.write_through`."""
        return self._confirm(self.inner.write_through, key, entry, expected, retain)

    async def awrite_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> bool:
        """Guarded, retried :meth:`Backend.awrite_through`."""
        return await self._aconfirm(self.inner.awrite_through, key, entry, expected, retain)

    def invalidate(self, names: Sequence[str]) -> tuple[int, ...]:
        """Guarded, retried :meth:`Backend.invalidate`."""
        return self._confirm(self.inner.invalidate, names)

    async def ainvalidate(self, names: Sequence[str]) -> tuple[int, ...]:
        """Guarded, retried :meth:`Backend.ainvalidate`."""
        return await self._aconfirm(self.inner.ainvalidate, names)

    def current(self, names: Sequence[str]) -> tuple[int, ...]:
        """Guarded :meth:`Backend.current`."""
        return self._call(self.inner.current, names)

    async def acurrent(self, names: Sequence[str]) -> tuple[int, ...]:
        """Guarded :meth:`Backend.acurrent`."""
        return await self._acall(self.inner.acurrent, names)

    def get_entry(self, key: str) -> Entry | None:
        """Guarded :meth:`Backend.get_entry`."""
        return self._call(self.inner.get_entry, key)

    def delete(self, key: str) -> bool:
        """Guarded :meth:`Backend.delete`."""
        return self._call(self.inner.delete, key)

    async def adelete(self, key: str) -> bool:
        """Guarded :meth:`Backend.adelete`."""
        return await self._acall(self.inner.adelete, key)

    def read_lease(self, key: str, names: Sequence[str], ttl: float, keep: float = 0.0) -> Read:
        """Guarded :meth:`Backend.read_lease`."""
        return self._call(self.inner.read_lease, key, names, ttl, keep)

    async def aread_lease(
        self, key: str, names: Sequence[str], ttl: float, keep: float = 0.0
    ) -> Read:
        """Guarded :meth:`Backend.aread_lease`."""
        return await self._acall(self.inner.aread_lease, key, names, ttl, keep)

    def lease(self, key: str, ttl: float) -> tuple[str | None, float]:
        """Guarded :meth:`Backend.lease`."""
        return self._call(self.inner.lease, key, ttl)

    async def alease(self, key: str, ttl: float) -> tuple[str | None, float]:
        """Guarded :meth:`Backend.alease`."""
        return await self._acall(self.inner.alease, key, ttl)

    def release(self, key: str, token: str, error: str) -> None:
        """Guarded :meth:`Backend.release`."""
        self._call(self.inner.release, key, token, error)

    async def arelease(self, key: str, token: str, error: str) -> None:
        """Guarded :meth:`Backend.arelease`."""
        await self._acall(self.inner.arelease, key, token, error)

    def wait_fill(self, key: str, timeout: float, recheck: Callable[[], bool]) -> Notice | None:
        """:meth:`Backend.wait_fill` (waiting is not a call that can fail fast)."""
        return self.inner.wait_fill(key, timeout, recheck)

    async def await_fill(
        self, key: str, timeout: float, recheck: Callable[[], Awaitable[bool]]
    ) -> Notice | None:
        """:meth:`Backend.await_fill`."""
        return await self.inner.await_fill(key, timeout, recheck)

    def subscribe(self, listener: InvalidationListener) -> None:
        """:meth:`Backend.subscribe`."""
        self.inner.subscribe(listener)

    def on_channel(self, *, alive: Callable[[float], None], reset: Callable[[], None]) -> None:
        """:meth:`Backend.on_channel`."""
        self.inner.on_channel(alive=alive, reset=reset)

    def after_fork(self) -> None:
        """:meth:`Backend.after_fork`."""
        self.inner.after_fork()

    def observe_commands(self, on: bool) -> None:
        """:meth:`Backend.observe_commands`."""
        self.inner.observe_commands(on)

    def close(self) -> None:
        """:meth:`Backend.close`."""
        self.inner.close()

    async def aclose(self) -> None:
        """:meth:`Backend.aclose`."""
        await self.inner.aclose()
