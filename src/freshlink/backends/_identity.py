"""How a Redis backend learns which server (and which history of it) it talks to.

Entries carry the identity of the server they were written under: after a restart, or a
failover to a replica that missed writes, nothing written before is valid again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..errors import BackendError

__all__ = ["hook_identity", "server_identity"]


def server_identity(info: Any) -> str:
    """The server's identity from INFO: its run id (new on every restart) and replication id
    (new on every promotion), so a failover, or a failback to a master that lost writes while
    it was cut off, changes it as surely as a restart does."""
    if isinstance(info, dict):
        fields = {k: str(v) for k, v in info.items() if k in ("run_id", "master_replid")}
    else:
        text = info.decode() if isinstance(info, bytes) else str(info)
        fields = dict(
            line.strip().split(":", 1)
            for line in text.splitlines()
            if line.startswith(("run_id:", "master_replid:"))
        )
    if "run_id" not in fields:
        raise BackendError("INFO did not report a run_id")
    return fields["run_id"][:16] + ":" + fields.get("master_replid", "")[:16]


def hook_identity(client: Any, hook: Callable[..., Any], learn: Callable[[Any], None]) -> None:
    """Make the future connections of a client passed in by the user learn the server's
    identity too (``learn`` gets their ``INFO``), after the user's own connect hook if it has
    one (that hook runs ``on_connect`` itself)."""
    kwargs = client.connection_pool.connection_kwargs
    theirs = kwargs.get("redis_connect_func")
    if theirs is None:
        kwargs["redis_connect_func"] = hook
        return
    if theirs == hook or getattr(theirs, "_freshlink", False):
        return
    if asyncio.iscoroutinefunction(theirs):

        async def acomposed(conn: Any) -> None:
            await theirs(conn)
            await conn.send_command("INFO")
            learn(await conn.read_response())

        acomposed._freshlink = True  # type: ignore[attr-defined]
        kwargs["redis_connect_func"] = acomposed
        return

    def composed(conn: Any) -> None:
        theirs(conn)
        conn.send_command("INFO")
        learn(conn.read_response())

    composed._freshlink = True  # type: ignore[attr-defined]
    kwargs["redis_connect_func"] = composed
