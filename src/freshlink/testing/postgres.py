"""A throwaway PostgreSQL server, for tests and benchmarks (as :class:`RedisServer` is).

``initdb`` and ``pg_ctl`` come from the ``postgresql`` package (Debian keeps them in
``/usr/lib/postgresql/<version>/bin``, off ``PATH``). PostgreSQL refuses to run as root, so
as root the server runs as the ``postgres`` user that package creates. The data directory is
a temporary one, ``fsync`` is off, and only loopback and a socket in that directory listen.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from .server import free_port

__all__ = ["PostgresServer", "postgres_bindir"]


def postgres_bindir() -> Path | None:
    """Where ``pg_ctl`` and ``initdb`` are, or None if PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


class PostgresServer:
    """``with PostgresServer() as pg: pg.url`` (a SQLAlchemy URL for psycopg 3)."""

    def __init__(self) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL not found (apt-get install postgresql)")
        self.bindir = bindir
        self.port = free_port()
        self.root: Path | None = None
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> None:
        as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_user, *args], check=check, capture_output=True)

    def start(self) -> PostgresServer:
        """Create the cluster and start the server (waits until it accepts connections)."""
        root = self.root = Path(tempfile.mkdtemp(prefix="freshlink-pg-"))
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        data = str(root / "data")
        self._run(str(self.bindir / "initdb"), "-D", data, "-U", "postgres", "--auth=trust")
        options = f"-p {self.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        pg_ctl = str(self.bindir / "pg_ctl")
        self._run(pg_ctl, "-D", data, "-o", options, "-l", str(root / "log"), "-w", "start")
        return self

    def stop(self) -> None:
        """Stop the server and remove its files."""
        if self.root is None:
            return
        data = str(self.root / "data")
        self._run(str(self.bindir / "pg_ctl"), "-D", data, "-m", "immediate", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
