"""Tags bound to a session's transaction: invalidated after it commits, never if it rolls back.

Each transaction of a session (the root one and every savepoint) keeps the tags asked for
inside it. A rolled-back savepoint drops its own and its savepoints' tags; the root's commit
gathers what is left and invalidates it once. SQLAlchemy ends a savepoint before it reports
its rollback (``after_transaction_end``, then ``after_soft_rollback``), so nothing is merged
upwards early: whether a transaction's tags count is decided at the root's commit, from the
rolled-back marks of it and its ancestors.

With the outbox, the tags are also written to the outbox table inside the transaction, so
the database itself drops the rows of whatever rolls back, and a commit the process does not
survive leaves them for the relay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, delete, event, insert
from sqlalchemy.orm import Session, SessionTransaction

from ...cache import Cache
from ...errors import ConfigurationError, FreshlinkError
from ._models import TRACKED

__all__ = ["Hooks"]

logger = logging.getLogger("freshlink")

#: The key of a session's pending invalidations in ``session.info``.
INFO_KEY = "freshlink_on_commit"


@dataclass
class _Pending:
    """One session's tags and outbox rows per transaction, and its rolled-back ones."""

    # None: tags asked for before the session began a transaction (they belong to its next).
    tags: dict[SessionTransaction | None, set[str]] = field(default_factory=dict)
    rows: dict[SessionTransaction | None, list[Any]] = field(default_factory=dict)
    dead: set[SessionTransaction] = field(default_factory=set)
    # Outbox rows not inserted yet: written at the next flush or commit of a transaction that
    # contains theirs (see Hooks._write), so no SQL runs where the caller may be async.
    unwritten: dict[SessionTransaction | None, set[str]] = field(default_factory=dict)

    def alive(self, trans: SessionTransaction | None) -> bool:
        t = trans
        while t is not None:
            if t in self.dead:
                return False
            t = t.parent
        return True

    def committed(self) -> tuple[set[str], list[Any]]:
        tags: set[str] = set()
        rows: list[Any] = []
        for trans, names in self.tags.items():
            if self.alive(trans):
                tags |= names
                rows += self.rows.get(trans, [])
        return tags, rows


class Hooks:
    """The session hooks of one :func:`~freshlink.contrib.sqlalchemy.install`."""

    def __init__(self, cache: Cache, target: Any, table: Table | None) -> None:
        self.cache = cache
        self.target = target
        self.table = table
        self._listeners: list[tuple[str, Callable[..., Any]]] = [
            ("after_soft_rollback", self._rolled_back),
            ("after_commit", self._committed),
            ("after_flush", self._flushed),
            ("before_commit", self._write),
            ("after_transaction_end", self._ended),
            ("do_orm_execute", lambda state: TRACKED.do_orm_execute(state, self.add)),
        ]
        for name, fn in self._listeners:
            event.listen(target, name, fn)

    def remove(self) -> None:
        """Unregister the hooks."""
        for name, fn in self._listeners:
            if event.contains(self.target, name, fn):
                event.remove(self.target, name, fn)

    def add(self, session: Session, tags: Sequence[str]) -> None:
        """Invalidate ``tags`` once the transaction ``session`` is in commits."""
        for tag in tags:
            if not isinstance(tag, str) or not tag:
                raise ConfigurationError(f"a tag must be a non-empty string, got {tag!r}")
        trans = session.get_nested_transaction() or session.get_transaction()
        pending = session.info.setdefault(INFO_KEY, _Pending())
        pending.tags.setdefault(trans, set()).update(tags)
        if self.table is not None:
            pending.unwritten.setdefault(trans, set()).update(tags)

    def _flushed(self, session: Session, _context: Any) -> None:
        TRACKED.after_flush(session, self.add)
        self._write(session)

    def _write(self, session: Session) -> None:
        """Insert the outbox rows of the tags asked for so far, in the transaction itself.

        A transaction's tags are written only while it, or a savepoint it was released
        into, is the current one: written inside a deeper savepoint, a row would vanish if
        that savepoint rolled back while the tags it carried still count.
        """
        pending: _Pending | None = session.info.get(INFO_KEY)
        if self.table is None or pending is None or not pending.unwritten:
            return
        current = session.get_nested_transaction() or session.get_transaction()
        if current is None:
            return
        for trans in list(pending.unwritten):
            if not pending.alive(trans):
                del pending.unwritten[trans]
            elif _within(trans, current):
                tags = pending.unwritten.pop(trans)
                row = insert(self.table).values(
                    namespace=self.cache.namespace,
                    tags="\n".join(sorted(tags)),
                    created=time.time(),
                )
                # On the session's connection, not through the ORM: this runs inside a flush.
                result: Any = session.connection().execute(row)
                pending.rows.setdefault(trans, []).append(result.inserted_primary_key[0])

    def _rolled_back(self, session: Session, previous: SessionTransaction) -> None:
        pending: _Pending | None = session.info.get(INFO_KEY)
        if pending is None:
            return
        if previous.parent is None:
            del session.info[INFO_KEY]  # the whole transaction is gone: nothing changed
        else:
            pending.dead.add(previous)

    def _ended(self, session: Session, trans: SessionTransaction) -> None:
        # A root transaction ends after its commit was handled (after_commit comes first), so
        # anything left is from one that rolled back or was closed: it changed nothing.
        if trans.parent is None and not trans.nested:
            session.info.pop(INFO_KEY, None)

    def _committed(self, session: Session) -> None:
        if session.in_nested_transaction():
            return  # a savepoint released: its tags wait for the root's commit
        pending: _Pending | None = session.info.pop(INFO_KEY, None)
        if pending is None:
            return
        tags, rows = pending.committed()
        if not tags:
            return
        if self.table is None:
            # No outbox: a failure comes out of commit() (the data is committed; the caller
            # must retry the invalidation).
            self.cache.invalidate(*sorted(tags))
            return
        try:
            self.cache.invalidate(*sorted(tags))
        except FreshlinkError as exc:
            # Committed, and in the outbox: the relay applies it. Raising here would only
            # stop the hooks after this one.
            logger.warning(
                "freshlink: invalidation after commit failed (%s); left in the outbox for the "
                "relay",
                exc,
                extra={"freshlink_event": "outbox_apply_failed", "rows": len(rows)},
            )
            return
        try:
            bind: Any = session.get_bind()
            # One statement, committed on its own (no BEGIN/COMMIT round trips around it).
            with bind.connect() as conn:
                autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
                autocommit.execute(delete(self.table).where(self.table.c.id.in_(rows)))
        except Exception as exc:  # the relay applies them again: one extra miss each
            logger.warning(
                "freshlink: applied outbox rows not deleted (%s); the relay applies them again",
                exc,
                extra={"freshlink_event": "outbox_delete_failed", "rows": len(rows)},
            )


def _within(trans: SessionTransaction | None, current: SessionTransaction) -> bool:
    """Whether ``trans``'s fate is decided with ``current``'s: it is ``current`` or was
    released into it (None: the root, before it began)."""
    if trans is None:
        return current.parent is None
    t: SessionTransaction | None = trans
    while t is not None:
        if t is current:
            return True
        t = t.parent
    return False
