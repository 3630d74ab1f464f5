"""What the Redis backends' operations ask of Redis, and how an entry is written there.

An operation yields a :class:`Call` (one Lua script), a list of them (a cluster's round, one
script per slot, sent together) or :class:`Commands` (plain commands), and receives the reply.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any, NamedTuple, TypeVar

from .base import Entry

__all__ = [
    "Call",
    "Commands",
    "Op",
    "Steps",
    "decode_entry",
    "encode_meta",
    "pipelined",
    "release_message",
    "retain_ms",
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
