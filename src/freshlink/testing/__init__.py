"""Testing kit: a throwaway redis-server and the backend conformance suite."""

from __future__ import annotations

from .server import RedisServer, free_port

__all__ = ["RedisServer", "free_port"]
