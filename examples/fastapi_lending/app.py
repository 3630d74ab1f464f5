"""The lending app on FastAPI: borrowers see "my loan", back-office staff renew its link.

Run it with ``python -m uvicorn examples.fastapi_lending.app:app --port 8000`` from the
repository root. ``create_app()`` builds a fresh app (tests make several per process).

The database is SQLAlchemy 2 with ordinary (sync) sessions, exactly the Flask example's
``db.py``: the routes that touch it are plain ``def`` functions, which FastAPI runs in its
thread pool, so the event loop never waits on SQLite, and the outbox's after-commit
invalidation has finished (acknowledged by Redis) before the response is sent.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Cookie, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from freshlink import Cache
from freshlink.contrib import sqlalchemy as fsa
from freshlink.contrib.fastapi import cache_response, lifespan, shared_dependency

from . import db

HERE = Path(__file__).resolve().parent
# Next to the example (gitignored), not in the shared temp dir: each checkout has its own.
DEFAULT_DATABASE = str(HERE / "lending.sqlite3")
# Its own pages first, then the Flask example's (the same Jinja pages: base, index, staff).
templates = Jinja2Templates(
    directory=[HERE / "templates", HERE.parent / "flask_lending" / "templates"]
)


class LoanOut(BaseModel):
    """A loan as the JSON API shows it (cached as this model: it round-trips exactly)."""

    id: int
    borrower_id: int
    amount_cents: int
    link_token: str
    link_expires_at: float
    borrower: str | None = None


class Lending:
    """One app's sessions, cache and cached reads (built by :func:`create_app`)."""

    def __init__(self, cache: Cache, database: str, lifetime: float) -> None:
        self.cache = cache
        self.lifetime = lifetime
        # Commits of these sessions invalidate a loan's tags in `cache`, through the outbox.
        self.sessions = db.init(database, cache)
        self.my_loan = cache.cached(
            ttl=300, key="my-loan:{borrower_id}", tags=["borrower:{borrower_id}"]
        )(self._my_loan)

    def _my_loan(self, borrower_id: int) -> dict[str, Any] | None:
        # The borrower's loan and payment link, as the "my loan" page shows it.
        return db.loan_of(self.sessions, borrower_id)


@shared_dependency  # it reads only request.app: cache_response may use it without a key part
def lending(request: Request) -> Lending:
    """Dependency: this app's :class:`Lending`."""
    return request.app.state.lending  # type: ignore[no-any-return]


LendingDep = Annotated[Lending, Depends(lending)]


def _wants_json(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "application/json" in accept and "text/html" not in accept


def create_app(
    *, url: str | None = None, database: str | None = None, lifetime: float | None = None
) -> FastAPI:
    """Build the app; the arguments default to the FRESHLINK_URL, LENDING_DATABASE and
    LENDING_LINK_LIFETIME environment variables."""
    cache = Cache(
        url or os.environ.get("FRESHLINK_URL", "memory://"), namespace="lending", default_ttl=300
    )
    state = Lending(
        cache,
        database or os.environ.get("LENDING_DATABASE", DEFAULT_DATABASE),
        lifetime if lifetime is not None else float(os.environ.get("LENDING_LINK_LIFETIME", 900)),
    )

    @asynccontextmanager
    async def own_lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # This app's session hooks go with it (tests build several apps in one process).
        fsa.uninstall(state.sessions)

    # The lifespan keeps the Cache in app.state.freshlink (cache_response and get_cache find
    # it there), runs the app's own lifespan inside, and closes the Cache at shutdown.
    app = FastAPI(title="Lending (freshlink example)", lifespan=lifespan(cache, then=own_lifespan))
    app.state.lending = state
    _pages(app)
    _api(app)
    return app


def _pages(app: FastAPI) -> None:
    @app.get("/", response_class=HTMLResponse)
    def index(request: Request, lend: LendingDep) -> Any:
        return templates.TemplateResponse(
            request, "index.html", {"borrowers": db.borrowers(lend.sessions)}
        )

    @app.get("/login/{borrower_id}")
    def login(borrower_id: int) -> RedirectResponse:
        # A demo "login": the borrower id in a cookie. A real app uses its auth system.
        response = RedirectResponse("/my-loan", status_code=303)
        response.set_cookie("borrower", str(borrower_id), httponly=True, samesite="lax")
        return response

    @app.get("/my-loan", response_class=HTMLResponse)
    def show_my_loan(
        request: Request, lend: LendingDep, borrower: Annotated[str | None, Cookie()] = None
    ) -> Any:
        if borrower is None or not borrower.isdigit():
            return RedirectResponse("/", status_code=303)
        loan = lend.my_loan(int(borrower))  # cached; renewals invalidate it in every process
        if loan is None:
            raise HTTPException(404)
        # Rendered per request (not cached): "valid for N min" depends on the clock.
        left = loan["link_expires_at"] - time.time()
        context = {"loan": loan, "left": left, "valid": left > 0}
        return templates.TemplateResponse(request, "my_loan.html", context)

    @app.get("/staff", response_class=HTMLResponse)
    def staff(request: Request, lend: LendingDep) -> Any:
        # The back office reads the database directly: staff always see the truth.
        return templates.TemplateResponse(request, "staff.html", {"loans": db.loans(lend.sessions)})

    @app.post("/staff/loans/{loan_id}/renew")
    def renew(loan_id: int, request: Request, lend: LendingDep) -> Any:
        return _write(request, lend, loan_id, lend.lifetime)

    @app.post("/staff/loans/{loan_id}/expire")
    def expire(loan_id: int, request: Request, lend: LendingDep) -> Any:
        return _write(request, lend, loan_id, -1)

    @app.get("/healthz", response_class=HTMLResponse)
    def healthz() -> str:
        return "ok"


def _write(request: Request, lend: Lending, loan_id: int, lifetime: float) -> Any:
    if db.loan(lend.sessions, loan_id) is None:
        raise HTTPException(404)
    # When set_link returns, its commit's tags have been invalidated (acknowledged): every
    # process's next read of this loan loads the new link. (If the cache could not confirm
    # it, the outbox row stays and `freshlink relay` applies it: README.)
    result = db.set_link(lend.sessions, loan_id, lifetime=lifetime)
    if _wants_json(request):
        return JSONResponse(result)
    return RedirectResponse("/staff", status_code=303)


def _api(app: FastAPI) -> None:
    @app.get("/api/loans/{loan_id}")
    @cache_response(ttl=300, key="api-loan:{loan_id}", tags=["loan:{loan_id}"])
    def api_loan(loan_id: int, lend: LendingDep) -> LoanOut:
        # Cached with an ETag; the commit of a renewal invalidates "loan:{id}" (db.py).
        found = db.loan(lend.sessions, loan_id)
        if found is None:
            raise HTTPException(404)
        return LoanOut(**found)

    @app.get("/api/my-loan")
    @cache_response(ttl=300, key="api-my-loan:{borrower}", tags=["borrower:{borrower}"])
    def api_my_loan(lend: LendingDep, borrower: Annotated[str, Cookie()]) -> LoanOut:
        # The cookie identifies the borrower, so the key must contain it: cache_response
        # refuses this route at import without "{borrower}" in key=.
        found = db.loan_of(lend.sessions, int(borrower)) if borrower.isdigit() else None
        if found is None:
            raise HTTPException(404)
        return LoanOut(**found)


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    # `app` is built on first access (uvicorn's "examples.fastapi_lending.app:app"), so that
    # importing this module for create_app() creates no database file.
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
