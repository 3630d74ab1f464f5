"""A throwaway PostgreSQL server for the database tests (as redis-server is for the others).

``initdb`` and ``pg_ctl`` come from Debian's ``postgresql`` package (``.ci/run`` installs it;
its binaries live in ``/usr/lib/postgresql/<version>/bin``). PostgreSQL refuses to run as
root, so as root the server runs as the ``postgres`` user the package creates. Without the
binaries the PostgreSQL tests are skipped, unless ``REQUIRE_REDIS_SERVER=1`` (CI), where that
is an error: CI never passes by skipping them.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The SQLAlchemy URL of a PostgreSQL server started for this test session."""
    bindir = _pg_bin()
    if bindir is None:
        if os.environ.get("REQUIRE_REDIS_SERVER", "") not in ("", "0"):
            pytest.fail("PostgreSQL's initdb/pg_ctl not found (apt-get install postgresql)")
        pytest.skip("PostgreSQL not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg")
    root = Path(tempfile.mkdtemp(prefix="freshlink-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run(
        [*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log")]
    subprocess.run([*as_user, *start, "-w", "-t", "60", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        stop = [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
        subprocess.run([*as_user, *stop], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
