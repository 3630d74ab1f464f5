"""The lending app: borrowers see "my loan", back-office staff renew its payment link.

Run it with ``flask --app examples.flask_lending.app run`` (or ``python -m
examples.flask_lending``) from the repository root. ``create_app`` is the factory Flask finds.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

from flask import Flask, abort, jsonify, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from . import db
from .services import current_borrower, expire_link, fl, my_loan, renew_link

# Next to the example (gitignored), not in the shared temp dir: each checkout has its own.
DEFAULT_DATABASE = os.path.join(os.path.dirname(__file__), "lending.sqlite3")


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then FRESHLINK_* / LENDING_* env vars, then ``config``."""
    app = Flask(__name__)
    app.config.update(
        LENDING_DATABASE=DEFAULT_DATABASE,
        LENDING_LINK_LIFETIME=15 * 60,  # seconds a renewed payment link stays valid
        FRESHLINK_NAMESPACE="lending",
        FRESHLINK_DEFAULT_TTL=300,
        FRESHLINK_REPORT_STALE=True,
    )
    # FRESHLINK_URL=redis://... in the environment makes every process share one cache.
    for name, value in os.environ.items():
        if name.startswith(("FRESHLINK_", "LENDING_")):
            app.config[name] = value
    app.config.update(config or {})
    app.config["LENDING_LINK_LIFETIME"] = float(app.config["LENDING_LINK_LIFETIME"])
    fl.init_app(app)
    # This app's sessions, whose commits invalidate through the outbox in this app's cache.
    app.extensions["lending"] = db.init(app.config["LENDING_DATABASE"], fl.get_cache(app))
    _routes(app)
    return app


def _wants_json() -> bool:
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "application/json"


def _routes(app: Flask) -> None:
    @app.get("/")
    @fl.cached_view(ttl=300, tags=["borrowers"])  # the whole page; a borrower's write drops it
    def index() -> str:
        return render_template("index.html", borrowers=db.borrowers(app.extensions["lending"]))

    @app.get("/login/<int:borrower_id>")
    def login(borrower_id: int) -> Response:
        # A demo "login": the borrower id in a cookie. A real app uses its auth system.
        response = redirect(url_for("show_my_loan"))
        response.set_cookie("borrower", str(borrower_id), httponly=True, samesite="Lax")
        return response

    @app.get("/my-loan")
    def show_my_loan() -> Any:
        borrower = current_borrower()
        if borrower is None:
            return redirect(url_for("index"))
        loan = my_loan(borrower)  # cached; renewals invalidate it in every process
        if loan is None:
            abort(404)
        left = loan["link_expires_at"] - time.time()
        return render_template("my_loan.html", loan=loan, left=left, valid=left > 0)

    @app.get("/staff")
    def staff() -> str:
        # The back office reads the database directly: staff always see the truth.
        return render_template("staff.html", loans=db.loans(app.extensions["lending"]))

    @app.post("/staff/loans/<int:loan_id>/renew")
    def renew(loan_id: int) -> Any:
        return _write(loan_id, renew_link)

    @app.post("/staff/loans/<int:loan_id>/expire")
    def expire(loan_id: int) -> Any:
        return _write(loan_id, expire_link)

    def _write(loan_id: int, action: Any) -> Any:
        if db.loan(app.extensions["lending"], loan_id) is None:
            abort(404)
        # The invalidation has been acknowledged when this returns: every process's next
        # read of this borrower's loan loads the new link. (If the cache could not confirm
        # it, the outbox row stays and `freshlink relay` applies it: README.)
        result = action(loan_id)
        if _wants_json():
            return jsonify(result)
        return redirect(url_for("staff"), code=303)

    @app.get("/healthz")
    def healthz() -> str:
        return "ok"
