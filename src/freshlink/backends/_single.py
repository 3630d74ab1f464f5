"""What each operation of the single-server Redis backend asks of its server.

:class:`SingleServer` turns the Backend calls into the Lua scripts of ``_scripts`` (their
arguments, and their replies back into reads), for :class:`~freshlink.backends.redis.RedisBackend`
(and Sentinel, which is one server at a time). Connections, script loading and the channel
are the backend's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from . import _lean, _scripts
from ._identity import server_identity
from ._redis_base import RedisBase, _redis
from ._wire import (
    Call,
    Commands,
    Steps,
    decode_stored,
    encode_meta,
    read_reply,
    retain_ms,
    took_lease,
)
from .base import Entry, Read

__all__ = ["BUMPS", "SHA", "SOURCE", "SingleServer"]

#: The source and SHA1 (as EVALSHA names it) of each script.
SOURCE: dict[str, str] = {name: getattr(_scripts, name) for name in _scripts.__all__}
SHA = {
    name: hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    for name, source in SOURCE.items()
}
#: The scripts that increment generations: confirmed by replicas (``WAIT``) when asked to.
BUMPS = frozenset({"INVALIDATE", "WRITE_THROUGH"})
READ_SHA = SHA["READ"]


class SingleServer(RedisBase):
    """The operations of a backend on one Redis server (its subclass connects to it)."""

    _run_id: str | None
    _lanes: _lean.Lanes
    _lease_ttl = -1.0
    _lease_ms_str = ""
    _keep = -1.0
    _keep_ms = ""

    def _identity(self) -> Steps[str]:
        # Asked for only when no connection has told it yet (a client made before the hook).
        if self._run_id is None:
            (info,) = yield Commands((("INFO",),))
            self._run_id = server_identity(info)
        return self._run_id

    def run_id(self) -> str:
        """The run id of the server we are connected to (fetched if not known yet)."""
        return self._drive(self._identity())

    async def arun_id(self) -> str:
        """Async :meth:`run_id`."""
        return await self._adrive(self._identity())

    # ------------------------------------------------------------------ operations

    def _read(
        self,
        key: str,
        names: Sequence[str],
        lease_ms: str = "",
        token: str = "",
        held: bool = False,
        keep: float = 0.0,
    ) -> Steps[Read]:
        """One EVALSHA (which also takes the lease on a miss when ``lease_ms`` is given).

        A read asked again (below, or after the direct read) keeps its lease token: the first
        try may have taken the lease (``held``), and a new token would then wait for its own
        fill; if the read it is asked again for is a hit, that lease is given back.
        """
        while True:
            run_id = self._run_id or (yield from self._identity())
            args = self._direct(key, names, run_id, lease_ms, keep, token)
            token = args[-1]
            reply = yield Call("READ", list(args[3 : len(names) + 4]), list(args[len(names) + 4 :]))
            # If the connection was re-made during the call (a retry after a restart), the
            # script ran on a new server with the old run id, which an entry restored from an
            # old snapshot also carries: ask again with the run id just learned.
            if self._run_id == run_id:
                read = self._answer(reply, names, args)
                if held and read.token is None:
                    yield from self._release(key, token, "")
                return read
            held = held or took_lease(reply)

    # The warm read is the hot path: when the run id is known and does not change during the
    # call, its one script answers it as _read would, so neither the generator nor a request
    # object is made (together about 0.5 µs of a hit's CPU). Anything else (an unknown run id,
    # NOSCRIPT, a backend that checks something before each request) is left to _read.
    _direct_reads = True

    def read(self, key: str, names: Sequence[str]) -> Read:
        """See :meth:`Backend.read` (one EVALSHA)."""
        return self._fetch(key, names, "")

    async def aread(self, key: str, names: Sequence[str]) -> Read:
        """See :meth:`Backend.read` (one EVALSHA)."""
        return await self._afetch(key, names, "")

    def read_lease(self, key: str, names: Sequence[str], ttl: float, keep: float = 0.0) -> Read:
        """See :meth:`Backend.read_lease`: the same one EVALSHA as :meth:`read`."""
        return self._fetch(key, names, self._lease_ms(ttl), keep)

    async def aread_lease(
        self, key: str, names: Sequence[str], ttl: float, keep: float = 0.0
    ) -> Read:
        """See :meth:`Backend.read_lease`."""
        return await self._afetch(key, names, self._lease_ms(ttl), keep)

    def _lease_ms(self, ttl: float) -> str:
        # Called on every read of the hot path with the cache's one lease ttl: remember it.
        if ttl != self._lease_ttl:
            self._lease_ttl, self._lease_ms_str = ttl, str(max(int(ttl * 1000), 1))
        return self._lease_ms_str

    def _fetch(self, key: str, names: Sequence[str], lease_ms: str, keep: float = 0.0) -> Read:
        run_id = self._run_id
        if run_id is not None and self._direct_reads:
            args = self._direct(key, names, run_id, lease_ms, keep)
            try:
                reply = self._lanes.sync(self.client).call(args)
            except Exception as exc:
                self._direct_failed(exc)
            else:
                if self._run_id == run_id:
                    return self._answer(reply, names, args)
                held = took_lease(reply)
                return self._drive(self._read(key, names, lease_ms, args[-1], held, keep))
            return self._drive(self._read(key, names, lease_ms, args[-1], False, keep))
        return self._drive(self._read(key, names, lease_ms, keep=keep))

    async def _afetch(
        self, key: str, names: Sequence[str], lease_ms: str, keep: float = 0.0
    ) -> Read:
        run_id = self._run_id
        if run_id is None or not self._direct_reads:
            return await self._adrive(self._read(key, names, lease_ms, keep=keep))
        args = self._direct(key, names, run_id, lease_ms, keep)
        try:
            reply = await self._lanes.asyncio(self.aclient).call(args)
        except Exception as exc:
            self._direct_failed(exc)
            reply = None
        if reply is None or self._run_id != run_id:
            held = reply is not None and took_lease(reply)
            return await self._adrive(self._read(key, names, lease_ms, args[-1], held, keep))
        return self._answer(reply, names, args)

    def _direct(
        self,
        key: str,
        names: Sequence[str],
        run_id: str,
        lease_ms: str,
        keep: float = 0.0,
        token: str = "",
    ) -> tuple[Any, ...]:
        """The READ script's EVALSHA; the last argument is the lease token (the seed if new:
        both are random per call, and one random draw is cheaper than two). Generations it
        creates live ``gen_ttl`` past the entry's ``keep`` (when known), so a fill need not
        extend them."""
        seed = self._seed()
        gen_ms = self._gen_ttl_ms if not keep else self._gen_ms(keep)
        return (
            "EVALSHA", READ_SHA, len(names) + 1, key, *names,
            run_id, gen_ms, seed, lease_ms, token or seed,
        )  # fmt: skip

    def _gen_ms(self, keep: float) -> str:
        # The same few policies come back on every miss: remember the last one.
        if keep != self._keep:
            self._keep, self._keep_ms = keep, str(int((keep + self.kept.gen_ttl) * 1000))
        return self._keep_ms

    def _answer(self, reply: Any, names: Sequence[str], args: tuple[Any, ...]) -> Read:
        """The Read of a READ reply to ``args``; a miss tells :attr:`kept` the generations it
        created (their value is the seed plus their position: see _scripts)."""
        read = read_reply(reply, names, args[-1])
        if read.entry is None and args[-4] != self._gen_ttl_ms:
            seed = int(args[-3])
            self.kept.created(names, read.current, seed, int(args[-4]) / 1000, args[-5])
        return read

    def _direct_failed(self, exc: Exception) -> None:
        """NOSCRIPT is left to _read (which loads the script); anything else is the backend's."""
        if not isinstance(exc, _redis().exceptions.NoScriptError):
            raise self._error(exc) from exc

    def _write(self, key: str, entry: Entry, retain: float | None, token: str) -> Steps[bool]:
        run_id = self._run_id or (yield from self._identity())
        plan = self.kept.plan(entry.names, retain, run_id)  # which generations to extend
        args = [
            run_id,
            "\n".join(entry.names),
            ",".join(map(str, entry.stamps)),
            encode_meta(entry),
            entry.payload,
            retain_ms(retain),
            self.lease_key(key),
            token,
            self.keyspace.fills,
            *plan[:2],
        ]
        return plan[2](bool((yield Call("WRITE", [key, *entry.names], args))))

    def _write_through(
        self, key: str, entry: Entry, expected: Sequence[int], retain: float | None
    ) -> Steps[bool]:
        run_id = self._run_id or (yield from self._identity())
        args = [
            run_id,
            "\n".join(entry.names),
            ",".join(map(str, expected)),
            encode_meta(entry),
            entry.payload,
            retain_ms(retain),
            self.keyspace.invalidations,
            self._gen_ttl_ms,
            self._seed(),
            self.keyspace.fills,
        ]
        return bool((yield Call("WRITE_THROUGH", [key, *entry.names], args)))

    def _invalidate(self, names: Sequence[str]) -> Steps[tuple[int, ...]]:
        """One EVALSHA: INCR each, then PUBLISH."""
        args = [self.keyspace.invalidations, self._gen_ttl_ms, self._seed()]
        reply = yield Call("INVALIDATE", list(names), args)
        return tuple(int(v) for v in reply)

    def _current(self, names: Sequence[str]) -> Steps[tuple[int, ...]]:
        reply = yield Call("CURRENT", list(names), [self._gen_ttl_ms, self._seed()])
        return tuple(int(v) for v in reply)

    def _stored(self, key: str) -> str:
        return key

    def _get_entry(self, key: str) -> Steps[Entry | None]:
        # MGET, not GET: a key of another type (garbage, an old layout) reads as nothing
        ((v,),) = yield Commands((("MGET", key),))
        return decode_stored(v) if v is not None and v[:1] == b"E" else None

    def _leases(self, key: str) -> list[str]:
        # A miss's lease is held in the entry key itself (see _scripts), a refresh's in its own.
        return [self.lease_key(key), key]

    def lease_key(self, key: str) -> str:
        """The single-flight lease key of an entry key."""
        return self.keyspace.lease(key)
