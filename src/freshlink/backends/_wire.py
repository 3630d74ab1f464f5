"""What the Redis backends' operations ask of Redis, and how an entry is written there.

An operation yields a :class:`Call` (one Lua script), a list of them (a cluster's round, one
script per slot, sent together) or :class:`Commands` (plain commands), and receives the reply.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, NamedTuple, TypeVar

from .base import Entry, Read

__all__ = [
    "Call",
    "Commands",
    "Op",
    "Steps",
    "decode_entry",
    "encode_meta",
    "notice_read",
    "pipelined",
    "read_reply",
    "release_message",
    "retain_ms",
    "took_lease",
]

R = TypeVar("R")


class Call(NamedTuple):
    """One Lua script to run: its name in the backend's script module, its keys and args."""

    name: str
    keys: list[str]
    args: list[Any]


class Commands(NamedTuple):
    """Plain commands sent in one round trip (a pipeline when several); answered by a list."""

    commands: tuple[tuple[Any, ...], ...]


#: What an operation yields: a script, a round of scripts (a cluster's), or plain commands.
Op = Call | list[Call] | Commands
#: An operation: yields requests, receives their replies, returns its result.
Steps = Generator[Op, Any, R]


def decode_entry(
    names: tuple[str, ...] | bytes, stamps_b: bytes, meta_b: bytes, payload: bytes
) -> Entry:
    created, ttl, load_time = meta_b.split(b",")
    return Entry(
        payload,
        names if isinstance(names, tuple) else tuple(names.decode().split("\n")),
        tuple(map(int, stamps_b.split(b","))),
        float(created),
        float(ttl) if ttl else None,
        float(load_time),
    )


def notice_read(body: str) -> Read | None:
    """The entry a fill notice carried (see ``WRITE``), as the read a waiter would have made;
    None if it carried none that parses (a waiter then re-reads)."""
    # The channel decodes with surrogateescape, so the payload's bytes come back exactly.
    raw = body.encode("utf-8", "surrogateescape")
    try:
        stamps, meta, size, rest = raw.split(b"\n", 3)
        cut = int(size)
        entry = decode_entry(rest[:cut], stamps, meta, rest[cut:])
    except ValueError:
        return None
    return Read(entry, entry.stamps)


def encode_meta(entry: Entry) -> str:
    ttl = "" if entry.ttl is None else repr(entry.ttl)
    return f"{entry.created!r},{ttl},{entry.load_time!r}"


def retain_ms(retain: float | None) -> int:
    return -1 if retain is None else max(int(retain * 1000), 1)


def release_message(key: str, error: str) -> str:
    # "err": the loader raised, waiters raise RemoteLoaderError; "skip": nothing was stored
    # (the value was not cacheable, or the refresh gave up), waiters read and lease again.
    return f"err\n{key}\n{error}" if error else f"skip\n{key}\n"


def pipelined(client: Any, commands: Sequence[tuple[Any, ...]]) -> Any:
    """A pipeline (sync or asyncio, single server or cluster) with ``commands`` queued."""
    p = client.pipeline(transaction=False)
    for command in commands:
        p.execute_command(*command)
    return p


def read_reply(reply: Any, names: Sequence[str], token: str) -> Read:
    """The Read a single server's READ script replied (see its reply shapes in _scripts)."""
    kind = reply[0]
    if kind == 0:
        return Read(None, tuple(map(int, reply[1:])))
    if kind == 3:  # a miss, with the outcome of taking its lease
        current = tuple(map(int, reply[2:]))
        if reply[1] == -1:
            return Read(None, current, token)
        return Read(None, current, None, reply[1] / 1000)
    try:
        entry = decode_entry(tuple(names) if kind == 1 else reply[4], *reply[1:4])
    except (ValueError, TypeError, UnicodeDecodeError):
        # Garbage someone wrote into the entry: a miss. (On a kind-1 reply the script
        # checked that the stamps are exactly the current generations.)
        current = reply[1].split(b",") if kind == 1 else reply[5:]
        return Read(None, tuple(map(int, current)))
    # On a hit the entry's stamps are the current generations of its names; when those
    # are the names asked for, they are also the generations asked for.
    if kind == 1:
        return Read(entry, entry.stamps)
    return Read(entry, tuple(map(int, reply[5:])))


def took_lease(reply: Any) -> bool:
    """Whether a READ reply says the read took the fill's lease."""
    return bool(reply[0] == 3 and reply[1] == -1)
