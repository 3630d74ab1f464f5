"""A tiny RESP client for the local test setups: one command (or a pipeline) per connection.

Enough to start, inspect and fail over local Redis nodes without redis-py.
"""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["HOST", "ReplyError", "info", "redis_command", "redis_commands", "role"]

HOST = "127.0.0.1"


class ReplyError(Exception):
    """An error reply (``-ERR ...``) from a Redis node."""


def _encode(args: tuple[str | int, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read(f: Any) -> Any:
    line: bytes = f.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by the server")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return ReplyError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data: bytes = f.read(n + 2)
        if len(data) != n + 2:
            raise ConnectionError("connection closed by the server")
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read(f) for _ in range(n)]
    raise ConnectionError(f"unexpected reply {line!r}")


def redis_commands(port: int, *commands: tuple[str | int, ...], timeout: float = 2.0) -> list[Any]:
    """Send commands on one new connection to 127.0.0.1:port; replies (errors as ReplyError)."""
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(b"".join(_encode(c) for c in commands))
        with s.makefile("rb") as f:
            return [_read(f) for _ in commands]


def redis_command(port: int, *args: str | int, timeout: float = 2.0) -> Any:
    """Send one command to 127.0.0.1:port and return its reply; raise ReplyError on an error."""
    reply = redis_commands(port, args, timeout=timeout)[0]
    if isinstance(reply, ReplyError):
        raise reply
    return reply


def info(port: int, section: str = "replication") -> dict[str, str]:
    """One section of ``INFO`` as a dict of strings."""
    out: dict[str, str] = {}
    for line in str(redis_command(port, "INFO", section)).splitlines():
        if ":" in line and not line.startswith("#"):
            name, _, value = line.partition(":")
            out[name] = value.strip()
    return out


def role(port: int) -> tuple[str, int | None, bool]:
    """``(role, master port or None, link up)`` from ``ROLE`` (a master's link counts as up)."""
    reply = redis_command(port, "ROLE")
    if reply[0] == "slave":
        return "slave", int(reply[2]), reply[3] == "connected"
    return str(reply[0]), None, True
