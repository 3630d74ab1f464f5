"""SQLAlchemy: invalidations bound to the transaction, optionally through an outbox.

``install(cache)`` registers session hooks; ``invalidate_on_commit(session, *tags)`` then
invalidates ``tags`` after the session's transaction commits, and never if it (or the
savepoint the call was made in) rolls back; ``invalidate_on(Model, tags=[...])`` does it for
every change of a model, bulk statements included. With ``outbox=True`` the tags are also
written to the ``freshlink_outbox`` table in that transaction: a process that dies between
the commit and the invalidation, or a cache that cannot confirm it, leaves the row, and
``freshlink relay`` (:func:`relay_once`) applies it (docs/sqlalchemy.md).

Requires SQLAlchemy 2 (``pip install 'freshlink[sqlalchemy]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, MetaData, Table
from sqlalchemy.orm import Session

from ...cache import Cache
from ...errors import ConfigurationError
from ._metrics import RelayMetrics
from ._models import TRACKED
from ._outbox import TABLE, Pending, RelayPass, outbox_table
from ._outbox import relay_once as _relay_once
from ._session import Hooks

if TYPE_CHECKING:  # sqlalchemy.ext.asyncio needs greenlet: only an async app imports it
    from sqlalchemy.ext.asyncio import AsyncSession

__all__ = [
    "TABLE",
    "Pending",
    "RelayMetrics",
    "RelayPass",
    "install",
    "installed",
    "invalidate_on",
    "invalidate_on_commit",
    "outbox_table",
    "relay_once",
    "uninstall",
]

#: What install() registered, one per target (their sessions never overlap).
_installed: list[Hooks] = []


def install(
    cache: Cache, *, outbox: bool = False, metadata: MetaData | None = None, target: Any = Session
) -> Hooks:
    """Register the session hooks on ``target`` (every Session by default, or one
    ``sessionmaker``). With ``outbox=True`` the outbox table is added to ``metadata`` (so
    ``metadata.create_all`` or an Alembic migration creates it)."""
    if outbox and metadata is None:
        raise ConfigurationError("install(outbox=True) needs the metadata to add the table to")
    cls = _session_class(target)
    for hooks in _installed:
        other = _session_class(hooks.target)
        if issubclass(cls, other) or issubclass(other, cls):
            # Two hooks on one session would invalidate its tags twice, in two caches.
            raise ConfigurationError(
                f"freshlink.contrib.sqlalchemy is already installed on {hooks.target!r}, "
                f"whose sessions overlap {target!r}'s; uninstall() it first"
            )
    table = outbox_table(metadata) if outbox and metadata is not None else None
    hooks = Hooks(cache, target, table)
    _installed.append(hooks)
    return hooks


def uninstall(target: Any = None) -> None:
    """Unregister the hooks :func:`install` registered on ``target`` (all of them when it is
    None): tests, app reloads."""
    for hooks in list(_installed):
        if target is None or hooks.target is target:
            hooks.remove()
            _installed.remove(hooks)


def installed(session: Any = None) -> Hooks | None:
    """The hooks that handle ``session`` (a Session, AsyncSession or sessionmaker), or the
    last installed ones when it is None; None if there are none."""
    if session is None:
        return _installed[-1] if _installed else None
    if not isinstance(session, Session) and hasattr(session, "sync_session"):
        session = session.sync_session  # an AsyncSession
    cls = type(session) if isinstance(session, Session) else _session_class(session)
    return next((h for h in _installed if issubclass(cls, _session_class(h.target))), None)


def invalidate_on_commit(session: Session | AsyncSession, *tags: str) -> None:
    """Invalidate ``tags`` after ``session``'s transaction commits (through the outbox when
    it is on); nothing if it, or the savepoint this is called in, rolls back. Takes a
    ``Session`` or an ``AsyncSession`` (no I/O here: a plain call in async code too)."""
    sync: Session = session if isinstance(session, Session) else session.sync_session
    hooks = installed(sync)
    if hooks is None:
        raise ConfigurationError(
            "invalidate_on_commit() needs freshlink.contrib.sqlalchemy.install(cache) first "
            f"(none covers {type(sync).__name__} sessions)"
        )
    hooks.add(sync, tags)


def _session_class(target: Any) -> type[Session]:
    """The Session class whose instances ``target``'s hooks see: a ``sessionmaker`` makes
    its own subclass, which is what its event listeners are registered on."""
    cls = target if isinstance(target, type) else getattr(target, "class_", None)
    if not (isinstance(cls, type) and issubclass(cls, Session)):
        raise ConfigurationError(
            f"install(target=...) takes a Session class or a sessionmaker, got {target!r}"
        )
    return cls


def invalidate_on(model: type, *, tags: Sequence[str]) -> None:
    """Invalidate ``tags`` (templates of ``model``'s columns, e.g. ``"loan:{id}"``) after a
    transaction that inserts, updates or deletes a ``model`` commits: through the session's
    unit of work, and for bulk ``update()`` / ``delete()`` statements. A changed templated
    column invalidates the tags of its old value too."""
    TRACKED.register(model, tags)


def relay_once(
    engine: Engine,
    cache_for: Callable[[str], Cache],
    *,
    metadata: MetaData | None = None,
    grace: float = 5.0,
    batch: int = 500,
) -> RelayPass:
    """Apply the outbox rows older than ``grace`` seconds; ``cache_for(namespace)`` is the
    cache of a row's namespace. Safe with several relays at once."""
    table: Table = outbox_table(metadata if metadata is not None else MetaData())

    def invalidate(namespace: str, tags: Sequence[str]) -> None:
        cache_for(namespace).invalidate(*tags)

    return _relay_once(engine, table, invalidate, grace=grace, batch=batch)
