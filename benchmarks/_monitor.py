"""Count the Redis commands a piece of code sends, with ``MONITOR`` on a loopback server.

MONITOR streams every command the server executes, in execution order, with the client that
sent it, and marks the commands run inside Lua scripts as coming from ``lua``. A window is
opened and closed by ``ECHO`` markers sent from a separate connection, so the count is exact
(no sampling, no guessing from the code) and can tell the commands a client sent (its round
trips, pipelines aside) from the ones its scripts ran on the server.
"""

from __future__ import annotations

import collections
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

#: Commands that are never a cache's work: markers, and the liveness PINGs of a subscribed
#: channel (freshlink's bounded L1 pings every 20 ms whatever the traffic; reported apart).
_IGNORED = frozenset({"ECHO", "MONITOR"})


@dataclass
class Window:
    """What the server ran between two markers."""

    match: str | None = None  # count only commands whose text contains this
    client: collections.Counter[str] = field(default_factory=collections.Counter)
    lua: collections.Counter[str] = field(default_factory=collections.Counter)
    pings: int = 0

    def per(self, n: int) -> tuple[float, float]:
        """(client commands, commands inside scripts) per operation, over ``n`` operations."""
        return sum(self.client.values()) / n, sum(self.lua.values()) / n

    def breakdown(self, n: int) -> str:
        """Client commands per operation by name, e.g. ``EVALSHA 1`` or ``GET 1, SET 0.5``."""
        if not self.client:
            return "none"
        ranked = sorted(self.client.items(), key=lambda x: -x[1])
        return ", ".join(f"{cmd} {count / n:g}" for cmd, count in ranked)


class Monitor:
    """A MONITOR connection read by a thread; :meth:`window` counts what a callable sends."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._marks = redis.Redis.from_url(url)
        self._conn: Any = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._open: dict[str, Window] = {}
        self._done: dict[str, threading.Event] = {}
        self._matches: dict[str, str | None] = {}
        self._stop = "bench-monitor-stop-" + uuid.uuid4().hex

    def __enter__(self) -> Monitor:
        # No read timeout: the stream may be quiet for a while between windows.
        # Keep the client referenced: redis-py closes its pool when it is collected.
        self._client = redis.Redis.from_url(self._url, socket_timeout=None)
        self._mon = self._client.monitor()
        self._mon.__enter__()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._marks.echo(self._stop)
        if self._thread is not None:
            self._thread.join(10)
        self._mon.__exit__()
        self._client.close()
        self._marks.close()

    def _run(self) -> None:
        while True:
            try:
                cmd = self._mon.next_command()
            except Exception:
                return  # the connection was closed (at exit)
            text: str = cmd["command"]
            verb, _, rest = text.partition(" ")
            verb = verb.upper()
            if verb == "ECHO":
                if rest == self._stop:
                    return
                if rest.startswith("bench-begin:"):
                    tag = rest[12:]
                    with self._lock:
                        self._open[tag] = Window(match=self._matches.get(tag))
                elif rest.startswith("bench-end:"):
                    tag = rest[10:]
                    with self._lock:
                        self._done[tag].set()
                continue
            if verb in _IGNORED or not self._open:
                continue
            with self._lock:
                for w in self._open.values():
                    if w.match is not None and w.match not in text:
                        continue
                    if verb == "PING" and cmd["client_type"] != "lua":
                        w.pings += 1
                    elif cmd["client_type"] == "lua":
                        w.lua[verb] += 1
                    else:
                        w.client[verb] += 1

    def window(self, fn: Callable[[], Any], match: str | None = None) -> Window:
        """Run ``fn`` between two markers; return what the server ran meanwhile.

        With ``match``, only commands whose text contains it are counted (a key, say).
        """
        tag = uuid.uuid4().hex
        done = self._done[tag] = threading.Event()
        self._matches[tag] = match
        self._marks.echo("bench-begin:" + tag)
        try:
            fn()
        finally:
            self._marks.echo("bench-end:" + tag)
        if not done.wait(30):
            raise RuntimeError("MONITOR did not see the end marker")
        with self._lock:
            del self._done[tag]
            del self._matches[tag]
            return self._open.pop(tag)
