"""The FastAPI example as a real uvicorn with two worker processes on one Redis.

Back-office renewals and the borrower's reads go to the same port; the kernel hands each new
connection to either worker, so writes and reads cross processes. Once a renewal has been
acknowledged, no later read (page or JSON API, with or without an ETag) may show the old
token or "expired".
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from test_examples_e2e import Client, Server, clean_env, renew_and_read

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def api(base: str, path: str, etag: str | None = None) -> tuple[int, str | None, dict[str, Any]]:
    """GET a JSON API route: status, ETag, body ({} for a 304)."""
    req = urllib.request.Request(base + path, headers={"If-None-Match": etag} if etag else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.headers["ETag"], json.loads(r.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 304:
            return 304, exc.headers["ETag"], {}
        raise


def test_fastapi_example_two_workers_share_renewals(redis_url: str, tmp_path: Path) -> None:
    env = clean_env(
        FRESHLINK_URL=redis_url,
        LENDING_DATABASE=str(tmp_path / "lending.sqlite3"),
        PYTHONUNBUFFERED="1",
    )
    args = ["-m", "uvicorn", "examples.fastapi_lending.app:app", "--port", "{port}",
            "--workers", "2", "--no-access-log"]  # fmt: skip
    server = Server(args, env, tmp_path / "uvicorn.log")
    try:
        server.wait_ready("/healthz")
        # Both workers started (each logs its pid once its app is up).
        assert _wait_two_workers(server), server.log.read_text()
        office, borrower = Client(server.base), Client(server.base)
        borrower.get("/login/1")
        assert borrower.link()[0] == "expired"  # seeded: Ada's link has expired (now cached)

        status, etag, body = api(server.base, "/api/loans/1")
        assert status == 200
        assert etag is not None
        old_token = body["link_token"]
        # Cached now: the same ETag gives 304 in whichever worker answers.
        for _ in range(4):
            assert api(server.base, "/api/loans/1", etag)[0] == 304

        renew_and_read(office, borrower, cycles=5)

        reply = json.loads(office.post_json("/staff/loans/1/renew"))
        for _ in range(6):  # every read after the acknowledgement, from either worker
            status, new_etag, body = api(server.base, "/api/loans/1", etag)
            assert status == 200
            assert new_etag != etag
            assert body["link_token"] == reply["token"] != old_token
            assert borrower.link() == ("valid", reply["token"])
    finally:
        server.stop()


def _wait_two_workers(server: Server) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = server.log.read_text()
        if len(set(re.findall(r"Started server process \[(\d+)\]", text))) >= 2:
            return True  # the supervisor logs "Started parent process" instead
        time.sleep(0.2)
    return False
