"""What the local Redis Cluster and Sentinel setups share: polling for health, reviving nodes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Self

from .resp import ReplyError
from .server import RedisServer


def alive(server: RedisServer) -> bool:
    """True while the server's process runs (paused counts as running)."""
    return server.proc is not None and server.proc.poll() is None


def wait_until(check: Callable[[], str | None], timeout: float, what: str) -> None:
    """Poll ``check`` (None means done, a string says what is still wrong) until done."""
    deadline = time.monotonic() + timeout
    problem: str | None = "not checked yet"
    while time.monotonic() < deadline:
        try:
            problem = check()
        except (OSError, ReplyError, ValueError, IndexError, KeyError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if problem is None:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what}: still not ready after {timeout:g}s ({problem})")


def revive(server: RedisServer) -> bool:
    """Start a dead node again, or SIGCONT a paused one; True if something was done."""
    if not alive(server):
        server.stop()
        server.start()
        return True
    if not server.ping():
        server.resume()
        return True
    return False


class LocalSetup:
    """What both local setups share: repair, reset to health, use as a context manager."""

    nodes: Any

    def start(self, timeout: float = 30.0) -> Self:
        """Start every process and wait until the setup is healthy."""
        raise NotImplementedError

    def healthy(self) -> bool:
        """True if every process is up and the setup agrees with itself."""
        raise NotImplementedError

    def _wait_repaired(self, timeout: float) -> None:
        """After the processes were revived, wait until healthy (TimeoutError if not)."""
        raise NotImplementedError

    def repair(self, timeout: float = 20.0) -> bool:
        """Restart dead (or resume paused) processes, wait for health; True if healthy after."""
        if self.healthy():
            return True
        try:
            for n in self.nodes:
                revive(n)
            self._wait_repaired(timeout)
        except (OSError, RuntimeError, TimeoutError):
            return False
        return True

    def close(self) -> None:
        """Stop every process and remove its directory."""
        raise NotImplementedError

    def reset(self, timeout: float = 30.0) -> None:
        """Make the setup healthy: repair it, or throw it away and create a fresh one."""
        if self.nodes and self.repair(15.0):
            return
        self.close()
        self.start(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
