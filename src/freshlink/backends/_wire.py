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
    "decode_stored",
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


def decode_stored(v: bytes, names: tuple[str, ...] | None = None) -> Entry:
    """The entry a single server stores as one string (see ``_scripts``); ``names`` when the
    caller knows them (the read checked they are the stored ones). Raises ValueError."""
    if v[:1] != b"E":
        raise ValueError("not an entry")
    b, c, d = _head(v)
    e = v.index(b"\n", d + 1)
    return decode_entry(v[b + 1 : c] if names is None else names, v[c:d], v[d + 1 : e], v[e + 1 :])


def _head(v: bytes) -> tuple[int, int, int]:
    """Where a stored entry's names start (after this newline), and its stamps start and end."""
    a = v.index(b"\n")
    b = v.index(b"\n", a + 1)
    c = b + 1 + int(v[a + 1 : b])
    return b, c, v.index(b"\n", c)


def notice_read(body: str) -> Read | None:
    """The entry a fill notice carried (see ``WRITE``), as the read a waiter would have made;
    None if it carried none that parses (a waiter then re-reads)."""
    # The channel decodes with surrogateescape, so the payload's bytes come back exactly.
    try:
        entry = decode_stored(body.encode("utf-8", "surrogateescape"))
    except (ValueError, UnicodeDecodeError):
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
    if type(reply) is bytes:  # the usual hit: the stored entry, for the names asked
        try:
            entry = decode_stored(reply, tuple(names))
        except (ValueError, TypeError, UnicodeDecodeError):
            # Garbage after a head the script found current (run id, names, stamps): a miss,
            # stamped with those stamps (the generations are what the head says).
            return Read(None, _stamps_of(reply))
        # Its stamps are the current generations of the names asked for.
        return Read(entry, entry.stamps)
    kind = reply[0]
    if kind == 0:
        return Read(None, tuple(map(int, reply[1:])))
    if kind == 3:  # a miss, with the outcome of taking its lease
        current = tuple(map(int, reply[2:]))
        if reply[1] == -1:
            return Read(None, current, token)
        return Read(None, current, None, reply[1] / 1000)
    current = tuple(map(int, reply[2:]))
    try:
        return Read(decode_stored(reply[1]), current)
    except (ValueError, TypeError, UnicodeDecodeError):
        return Read(None, current)


def _stamps_of(v: bytes) -> tuple[int, ...]:
    """The stamps in the head of a stored entry (the part a READ script checked)."""
    _, c, d = _head(v)
    stamps = v[c:d]
    return tuple(map(int, stamps.split(b","))) if stamps else ()


def took_lease(reply: Any) -> bool:
    """Whether a READ reply says the read took the fill's lease."""
    return bool(reply[0] == 3 and reply[1] == -1)
