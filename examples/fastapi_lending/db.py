"""The example's database: the Flask example's data layer (``examples/flask_lending/db.py``).

The same SQLAlchemy models, demo rows and outbox: every committed change of a ``Loan``
invalidates ``loan:{id}`` and ``borrower:{borrower_id}`` through ``freshlink_outbox``, so a
process that dies right after its commit leaves the invalidation for ``freshlink relay``.
"""

from __future__ import annotations

from ..flask_lending.db import Base, Borrower, Loan, borrowers, init, loan, loan_of, loans, set_link

__all__ = ["Base", "Borrower", "Loan", "borrowers", "init", "loan", "loan_of", "loans", "set_link"]
