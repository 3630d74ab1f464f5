"""``cached``, ``invalidates`` and ``updates``, built on wrapt.

wrapt keeps the signature, docstring and ``inspect`` behaviour, and binds correctly on methods,
classmethods and staticmethods. Its generic call path costs ~0.45 µs, more than a whole L1 hit,
so :class:`CachedFunction` overrides ``__call__`` for the common unbound case and serves L1
hits inline; bound calls (methods) go through wrapt's normal wrapper protocol.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from typing import Any

import wrapt

from ._engine import Engine
from ._writes import acurrent_or_none, check_tags, current_or_none
from .errors import ConfigurationError, KeyTemplateError
from .events import Event
from .keys import KeySpec
from .policy import Freshness
from .readpath import ReadPath
from .tracing import aloader, loader

__all__ = ["CachedFunction", "FunctionSpec", "make_cached", "make_invalidates", "make_updates"]


def _is_async(func: Any) -> bool:
    target = func.__func__ if isinstance(func, classmethod | staticmethod) else func
    return inspect.iscoroutinefunction(inspect.unwrap(target))


class FunctionSpec:
    """Everything a decorated function needs per call, resolved once at decoration."""

    __slots__ = (
        "_memo",
        "engine",
        "fast",
        "fname",
        "is_async",
        "keys",
        "l1_hits",
        "memo_ok",
        "near",
        "path",
        "policy",
        "token",
    )

    #: How many calls' resolved keys a function remembers (the memo is wiped when full).
    MEMO_SIZE = 4096

    def __init__(self, path: ReadPath, func: Any, keys: KeySpec, policy: Freshness) -> None:
        self.path = path
        self.engine = engine = path.engine
        self.keys = keys
        self.policy = policy
        self.fname = keys.name
        self.is_async = _is_async(func)
        self.near = engine.near
        # Raw keys may stand for a call only if no template reads the instance.
        self.memo_ok = not keys.uses_self
        self.fast = self.near is not None and self.memo_ok
        self.token = keys.func_id
        self.l1_hits = 0  # hot-path hits, counted here instead of by an event (see stats)
        # raw key -> (entry key, tags, generation names): binding arguments and rendering
        # templates cost microseconds, so a repeated call does it once.
        self._memo: dict[Any, tuple[str, tuple[str, ...], tuple[str, ...]]] = {}

    def resolve(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[str, tuple[str, ...]]:
        """The entry key and rendered tags of a call."""
        key, tags, _names = self.locate(instance, args, kwargs, self.raw(args, kwargs))
        return key, tags

    def locate(
        self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any], rk: Any
    ) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """Entry key, tags and generation names of a call (memoized by raw key)."""
        if rk is not None:
            hit = self._memo.get(rk)
            if hit is not None:
                return hit
        bound = self.keys.bind(instance, args, kwargs)
        key = self.keys.key_for(bound)
        tags = self.keys.tags_for(bound)
        found = (key, tags, self.engine.keyspace.names(key, tags))
        if rk is not None:
            if len(self._memo) >= self.MEMO_SIZE:
                self._memo.clear()
            self._memo[rk] = found
        return found

    def raw(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The raw key of a call (a cheap stand-in for its key), or None."""
        return self.keys.raw_key(self.token, args, kwargs) if self.memo_ok else None

    def call(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """The wrapt wrapper: serve a call from the cache (sync, or a coroutine if async)."""
        if self.is_async:
            return self.acall(wrapped, instance, args, kwargs)
        rk = self.raw(args, kwargs)
        key, _tags, names = self.locate(instance, args, kwargs, rk)
        load = lambda: wrapped(*args, **kwargs)  # noqa: E731
        tracer = self.engine.tracer
        if tracer is not None:
            with tracer.span("get", self.fname):
                load = loader(tracer, self.fname, load)
                return self.path.fetch(self.fname, key, names, load, self.policy, rk)
        return self.path.fetch(self.fname, key, names, load, self.policy, rk)

    async def acall(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Async call path (L1 hits included: afetch asks the freshness policy)."""
        rk = self.raw(args, kwargs)
        key, _tags, names = self.locate(instance, args, kwargs, rk)
        load = lambda: wrapped(*args, **kwargs)  # noqa: E731
        tracer = self.engine.tracer
        if tracer is not None:
            with tracer.span("get", self.fname):
                load = aloader(tracer, self.fname, load)
                return await self.path.afetch(self.fname, key, names, load, self.policy, rk)
        return await self.path.afetch(self.fname, key, names, load, self.policy, rk)

    # handles -------------------------------------------------------------------------

    def invalidate(self, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Handle: invalidate one call's entry."""
        key, _ = self.resolve(instance, args, kwargs)
        writes = self.engine.writes
        if self.is_async:
            return writes.arun(writes.invalidate_key(key))
        writes.run(writes.invalidate_key(key))
        return None

    def refresh(
        self, wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Handle: make every process drop this call's entry, then load and store it anew."""
        tracer = self.engine.tracer
        # Not on the hot path: a refresh is an invalidation and a load anyway.
        span = nullcontext() if tracer is None else tracer.span("refresh", self.fname)
        key, _ = self.resolve(instance, args, kwargs)
        writes = self.engine.writes
        if self.is_async:

            async def arefresh() -> Any:
                with span:
                    await writes.arun(writes.invalidate_key(key))
                    return await self.acall(wrapped, instance, args, kwargs)

            return arefresh()
        with span:
            writes.run(writes.invalidate_key(key))
            return self.call(wrapped, instance, args, kwargs)


class _Handles:
    """The handle methods shared by the unbound and the bound wrapper."""

    _self_spec: FunctionSpec
    __wrapped__: Any

    def _self_target(self) -> tuple[Any, Any, tuple[Any, ...]]:
        return None, self.__wrapped__, ()

    def _self_split(self, args: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        instance, _wrapped, _ = self._self_target()
        return instance, args

    def invalidate(self, *args: Any, **kwargs: Any) -> Any:
        """Invalidate the entry of this call, in every process."""
        instance, args = self._self_split(args)
        return self._self_spec.invalidate(instance, args, kwargs)

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        """Run the original now and store its result as the entry of this call."""
        instance, args = self._self_split(args)
        _i, wrapped, _ = self._self_target()
        return self._self_spec.refresh(wrapped, instance, args, kwargs)

    def key(self, *args: Any, **kwargs: Any) -> str:
        """The entry key this call uses (usable with ``cache.get``)."""
        instance, args = self._self_split(args)
        return self._self_spec.resolve(instance, args, kwargs)[0]

    def tags(self, *args: Any, **kwargs: Any) -> tuple[str, ...]:
        """The rendered tags of this call."""
        instance, args = self._self_split(args)
        return self._self_spec.resolve(instance, args, kwargs)[1]

    @property
    def uncached(self) -> Any:
        """The original function (bound, for methods)."""
        return self._self_target()[1]


class BoundCachedFunction(_Handles, wrapt.BoundFunctionWrapper):  # type: ignore[type-arg]
    """A cached method bound to an instance or class; calls go through wrapt's wrapper."""

    @property
    def _self_spec(self) -> FunctionSpec:  # type: ignore[override]
        return self._self_parent._self_spec  # type: ignore[no-any-return]

    def _self_target(self) -> tuple[Any, Any, tuple[Any, ...]]:
        if self._self_binding in ("function", "callable"):
            return self._self_instance, self.__wrapped__, ()
        return getattr(self.__wrapped__, "__self__", None), self.__wrapped__, ()

    def _self_split(self, args: tuple[Any, ...]) -> tuple[Any, tuple[Any, ...]]:
        instance, _w, _ = self._self_target()
        if instance is None and self._self_binding == "function" and args:
            return args[0], args[1:]  # Class.method(obj, ...)
        return instance, args


class CachedFunction(_Handles, wrapt.FunctionWrapper):  # type: ignore[type-arg]
    """A function decorated with ``cache.cached``: call it as before; it carries handles."""

    __bound_function_wrapper__ = BoundCachedFunction

    def __init__(self, wrapped: Any, spec: FunctionSpec) -> None:
        super().__init__(wrapped, spec.call)
        self._self_spec = spec

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the function through the cache."""
        # The hot path of an unbound call, inlined: an L1 entry validated in the current
        # epoch and within its TTL is returned with no further work. Anything else takes
        # the full path (FunctionSpec.call), which re-validates stamps and reads the backend.
        spec = self._self_spec
        near = spec.near
        if near is not None and spec.fast:
            rk = spec.keys.raw_key(spec.token, args, kwargs)
            if rk is not None:
                try:
                    e = near.data[rk]
                except KeyError:
                    pass
                else:
                    now = spec.engine.monotonic()
                    # Past trusted_until a hit may only need a poll of the channel (every
                    # POLL_EVERY, see local.py): repoll does it here, not on the slow path.
                    if (
                        e.epoch == near.epoch
                        and now < e.fresh
                        and (now < near.trusted_until or near.repoll(now, e))
                    ):
                        spec.l1_hits += 1
                        if spec.engine.events.hit:
                            spec.engine.events.emit(Event("hit", spec.fname, None, "l1"))
                        return _ready(e.value) if spec.is_async else e.value
        return spec.call(self.__wrapped__, None, args, kwargs)


async def _ready(value: Any) -> Any:
    """An awaitable of a value already at hand (an async L1 hit)."""
    return value


def make_cached(
    path: ReadPath,
    func: Any,
    *,
    policy: Freshness,
    key: str | None,
    tags: Iterable[str],
    version: str | int | None,
    code_identity: bool,
) -> Any:
    """Build the cached wrapper of ``func`` (see :meth:`Cache.cached`)."""
    if not callable(func) and not isinstance(func, classmethod | staticmethod):
        raise ConfigurationError(f"@cached must decorate a function, got {func!r}")
    keys = KeySpec(func, key=key, tags=tags, version=version, use_code_identity=code_identity)
    return CachedFunction(func, FunctionSpec(path, func, keys, policy))


def make_invalidates(engine: Engine, tags: Sequence[str]) -> Callable[[Any], Any]:
    """Build the ``invalidates`` decorator (see :meth:`Cache.invalidates`)."""
    if not tags:
        raise KeyTemplateError("@invalidates needs at least one tag template")

    def decorate(func: Any) -> Any:
        spec = KeySpec(func, key=None, tags=tags, version=None, use_code_identity=False)
        writes = engine.writes

        def rendered(instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            # Rendered and checked before the write runs: bad arguments fail before it.
            return writes.invalidate_tags(
                check_tags(spec.tags_for(spec.bind(instance, args, kwargs)))
            )

        if _is_async(func):

            async def awrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                steps = rendered(instance, args, kwargs)
                result = await wrapped(*args, **kwargs)
                await writes.arun(steps)
                return result

            return wrapt.FunctionWrapper(func, awrapper)

        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            steps = rendered(instance, args, kwargs)
            result = wrapped(*args, **kwargs)
            writes.run(steps)
            return result

        return wrapt.FunctionWrapper(func, wrapper)

    return decorate


def make_updates(engine: Engine, reader: Any) -> Callable[[Any], Any]:
    """Build the write-through ``updates`` decorator (see :meth:`Cache.updates`)."""
    rspec: FunctionSpec | None = getattr(reader, "_self_spec", None)
    if rspec is None or not isinstance(rspec, FunctionSpec):
        raise ConfigurationError(
            f"@updates needs a function decorated with @cache.cached, got {reader!r}"
        )
    if rspec.engine is not engine:
        raise ConfigurationError("@updates: the reader is cached by a different Cache")
    reader_params = rspec.keys.sig.parameters

    def decorate(func: Any) -> Any:
        wsig = inspect.signature(
            func.__func__ if isinstance(func, classmethod | staticmethod) else func
        )
        required = [
            n
            for i, (n, p) in enumerate(reader_params.items())
            if not (i == 0 and rspec.keys.first_is_self)
            and p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        missing = [n for n in required if n not in wsig.parameters]
        if missing:
            raise KeyTemplateError(
                f"@updates({rspec.fname}): the writer {getattr(func, '__qualname__', func)} has "
                f"no parameter {', '.join(map(repr, missing))} to fill the reader's arguments"
            )
        wkeys = KeySpec(func, key=None, tags=(), version=None, use_code_identity=False)

        def reader_call(instance: Any, args: Any, kwargs: Any) -> tuple[str, tuple[str, ...]]:
            bound = wkeys.bind(instance, args, kwargs)
            rargs = {n: bound[n] for n in reader_params if n in bound}
            if rspec.keys.first_is_self:
                first = next(iter(reader_params))
                rargs.pop(first, None)
                return rspec.resolve(instance, (), rargs)
            return rspec.resolve(None, (), rargs)

        if _is_async(func):

            async def awrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
                key, tags = reader_call(instance, args, kwargs)
                names = engine.keyspace.names(key, tags)
                expected = await acurrent_or_none(engine.backend, names)  # BEFORE the write
                result = await wrapped(*args, **kwargs)
                steps = engine.writes.store(rspec.fname, key, names, expected, result, rspec.policy)
                await engine.writes.arun(steps)
                return result

            return wrapt.FunctionWrapper(func, awrapper)

        def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
            key, tags = reader_call(instance, args, kwargs)
            names = engine.keyspace.names(key, tags)
            expected = current_or_none(engine.backend, names)  # read BEFORE the write runs
            result = wrapped(*args, **kwargs)
            engine.writes.run(
                engine.writes.store(rspec.fname, key, names, expected, result, rspec.policy)
            )
            return result

        return wrapt.FunctionWrapper(func, wrapper)

    return decorate
