"""The example apps in real server processes sharing one Redis: a renewal is seen at once.

Back-office writes go through one server, the borrower's page is read through another. Once a
renewal has been acknowledged, no read that starts afterwards may show the link as expired or
show an older token.
"""

from __future__ import annotations

import http.cookiejar
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from example_servers import ROOT, STATE, Server, clean_env, manage
from freshlink.testing import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@dataclass
class Read:
    start: float
    end: float
    state: str
    token: str


class Client:
    """urllib with a cookie jar (CSRF cookies for Django, the demo login cookie for both)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=10) as r:
            return str(r.read().decode())

    def post_json(self, path: str, data: dict[str, str] | None = None) -> str:
        headers = {"Accept": "application/json"}
        token = next((c.value for c in self.jar if c.name == "csrftoken"), None)
        if token:
            headers["X-CSRFToken"] = token
        body = urllib.parse.urlencode(data or {}).encode()
        req = urllib.request.Request(self.base + path, data=body, headers=headers)
        with self.opener.open(req, timeout=10) as r:
            return str(r.read().decode())

    def link(self) -> tuple[str, str]:
        page = self.get("/my-loan")
        m = STATE.search(page)
        assert m is not None, page
        return m[1], m[2]


def renew_and_read(office: Client, borrower: Client, cycles: int) -> None:
    """Alternate expire / renew through ``office``; check ``borrower``'s reads against them."""
    writes: list[tuple[float, float, str, str]] = []  # (sent, acknowledged, state, token)
    reads: list[Read] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            state, token = borrower.link()
            reads.append(Read(t0, time.monotonic(), state, token))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for _ in range(cycles):
            for action in ("expire", "renew"):
                sent = time.monotonic()
                reply = office.post_json(f"/staff/loans/1/{action}")
                acked = time.monotonic()
                token = re.search(r'"token":\s*"([^"]+)"', reply)
                assert token is not None, reply
                state = "valid" if action == "renew" else "expired"
                writes.append((sent, acked, state, token[1]))
                # The very next request, from the other process, sees the write.
                assert borrower.link() == (state, token[1])
                time.sleep(0.05)
    finally:
        stop.set()
        thread.join(10)
    checked = 0
    for i, (_sent, acked, state, token) in enumerate(writes):
        next_sent = writes[i + 1][0] if i + 1 < len(writes) else float("inf")
        for r in reads:
            if acked < r.start and r.end < next_sent:
                assert (r.state, r.token) == (state, token), f"read {r} after write {i}"
                checked += 1
    assert checked > 0


def index_sees_a_new_borrower(
    office: Client, borrower: Client, add: list[str], env: dict[str, str]
) -> None:
    """The index page is a cached view: a borrower added by another process shows at once."""
    for client in (office, borrower):  # cached in both servers now
        assert "Ada Lovelace" in client.get("/")
        assert "Mary Somerville" not in client.get("/")
    done = subprocess.run(
        add, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for client in (office, borrower):  # the commit invalidated "borrowers" everywhere
        assert "Mary Somerville" in client.get("/")


def test_flask_example_two_processes_share_renewals(redis: RedisServer, tmp_path: Path) -> None:
    env = clean_env(
        FRESHLINK_URL=redis.url,
        LENDING_DATABASE=str(tmp_path / "lending.sqlite3"),
        PYTHONUNBUFFERED="1",
    )
    args = ["-m", "flask", "--app", "examples.flask_lending.app", "run", "--port", "{port}"]
    servers = [Server(args, env, tmp_path / f"flask{i}.log") for i in range(2)]
    try:
        for s in servers:
            s.wait_ready("/healthz")
        office, borrower = (Client(s.base) for s in servers)
        borrower.get("/login/1")
        assert borrower.link()[0] == "expired"  # seeded: Ada's link has expired (now cached)
        renew_and_read(office, borrower, cycles=5)
        add_borrower = (
            "from examples.flask_lending.app import create_app\n"
            "from examples.flask_lending.db import Borrower\n"
            "with create_app().extensions['lending']() as s:\n"
            "    s.add(Borrower(name='Mary Somerville'))\n"
            "    s.commit()\n"
        )
        index_sees_a_new_borrower(office, borrower, [sys.executable, "-c", add_borrower], env)
    finally:
        for s in servers:
            s.stop()
    # Every renewal went through the outbox and was applied at once: nothing for the relay.
    relay = subprocess.run(
        [sys.executable, "-m", "freshlink", "relay", "--once", "--url", redis.url,
         "--db", f"sqlite:///{tmp_path / 'lending.sqlite3'}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert relay.returncode == 0, relay.stdout + relay.stderr
    assert "applied=0 failed=0 pending=0" in relay.stdout


def test_django_example_two_processes_share_renewals(redis: RedisServer, tmp_path: Path) -> None:
    env = clean_env(
        FRESHLINK_URL=redis.url,
        LENDING_DATABASE=str(tmp_path / "lending.sqlite3"),
        PYTHONUNBUFFERED="1",
    )

    manage(env, "migrate", "--no-input", "-v", "0")
    args = ["-m", "examples.django_lending", "runserver", "--noreload", "127.0.0.1:{port}"]
    servers = [Server(args, env, tmp_path / f"django{i}.log") for i in range(2)]
    try:
        for s in servers:
            s.wait_ready("/healthz")
        office, borrower = (Client(s.base) for s in servers)
        office.get("/staff")  # the CSRF cookie for the back-office POSTs
        borrower.get("/login/1")
        assert borrower.link()[0] == "expired"
        renew_and_read(office, borrower, cycles=5)
        add_borrower = (
            "from examples.django_lending.loans.models import Borrower; "
            "Borrower.objects.create(name='Mary Somerville')"
        )
        index_sees_a_new_borrower(
            office,
            borrower,
            [sys.executable, "-m", "examples.django_lending", "shell", "-c", add_borrower],
            env,
        )
    finally:
        for s in servers:
            s.stop()
    # Every renewal went through the outbox and was applied at once: nothing for the relay.
    assert "applied=0 failed=0 pending=0" in manage(env, "freshlink", "relay", "--once")
