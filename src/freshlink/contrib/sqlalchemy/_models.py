"""Tags from model changes: the unit of work (``after_flush``) and bulk statements.

``invalidate_on(Loan, tags=["loan:{id}", "user:{user_id}"])`` renders the templates for
every ``Loan`` a flush inserts, updates or deletes, from its current values and, when a
templated column changed, from the values it had (a loan that moves to another user
invalidates both users' tags). A bulk ``update(Loan)`` or ``delete(Loan)`` executed through
the session does not go through the unit of work: its rows' tags are read with a ``SELECT``
of the same ``WHERE`` before it runs (and, for an update, again by primary key after it), in
the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import ORMExecuteState, Session

from ...errors import KeyTemplateError
from ...keys import Template, check_tag

__all__ = ["TRACKED", "Add", "Tracked"]

#: What receives a change's tags: the installed hooks' ``add`` (bound to the transaction).
Add = Callable[[Session, Sequence[str]], None]


class Tracked:
    """The tag templates registered per mapped class (before or after ``install``)."""

    def __init__(self) -> None:
        self.templates: dict[type, tuple[Template, ...]] = {}

    def register(self, model: type, tags: Iterable[str]) -> None:
        """Track ``model``: its changes invalidate ``tags`` (templates of its attributes)."""
        templates = tuple(Template(t) for t in tags)
        if not templates:
            raise KeyTemplateError(f"invalidate_on({model.__name__}): no tag templates given")
        mapper: Any = inspect(model)
        for t in templates:
            for name in t.fields:
                if name not in mapper.column_attrs:
                    raise KeyTemplateError(
                        f"invalidate_on({model.__name__}): tag template {t.text!r} uses "
                        f"{{{name}}}, which is not a column attribute of {model.__name__}"
                    )
        self.templates[model] = self.templates.get(model, ()) + templates

    def _for(self, cls: type) -> tuple[Template, ...]:
        found: tuple[Template, ...] = ()
        for base in cls.__mro__:
            found += self.templates.get(base, ())
        return found

    # ---------------------------------------------------------------- the unit of work

    def after_flush(self, session: Session, add: Add) -> None:
        """Tags of the objects this flush wrote (their history is still intact here)."""
        tags: set[str] = set()
        for obj in (*session.new, *session.dirty, *session.deleted):
            templates = self._for(type(obj))
            if templates:
                tags |= _object_tags(obj, templates)
        if tags:
            add(session, sorted(tags))

    # ---------------------------------------------------------------- bulk statements

    def do_orm_execute(self, state: ORMExecuteState, add: Add) -> Any:
        """A bulk update or delete of a tracked model: the tags of the rows it touches."""
        if not (state.is_update or state.is_delete) or state.bind_mapper is None:
            return None
        mapper = state.bind_mapper
        templates = self._for(mapper.class_)
        if not templates:
            return None
        fields = sorted({n for t in templates for n in t.fields})
        pk = mapper.primary_key
        columns = [*pk, *(mapper.column_attrs[n].columns[0] for n in fields)]
        where = state.statement.whereclause  # type: ignore[attr-defined]
        query = select(*columns)
        if where is not None:
            query = query.where(where)
        session = state.session
        rows = session.execute(query).all()
        tags = {_render(templates, dict(zip(fields, r[len(pk) :], strict=True))) for r in rows}
        result = state.invoke_statement()
        if state.is_update and rows:
            keys = [tuple(r[: len(pk)]) for r in rows]
            after = select(*columns[len(pk) :]).where(_pk_in(pk, keys))
            for r in session.execute(after):
                tags.add(_render(templates, dict(zip(fields, r, strict=True))))
        flat = sorted({t for group in tags for t in group})
        if flat:
            add(session, flat)
        return result


#: Every ``invalidate_on`` registration of the process.
TRACKED = Tracked()


def _render(templates: Sequence[Template], values: Mapping[str, Any]) -> frozenset[str]:
    return frozenset(check_tag(t.render(values)) for t in templates)


def _object_tags(obj: Any, templates: Sequence[Template]) -> set[str]:
    """Tags of ``obj`` from its current values, and from its values before this flush."""
    attrs = inspect(obj).attrs
    now = {n: getattr(obj, n) for t in templates for n in t.fields}
    before = dict(now)
    for name in now:
        deleted = attrs[name].history.deleted
        if deleted:
            before[name] = deleted[0]
    return set(_render(templates, now)) | set(_render(templates, before))


def _pk_in(pk: Sequence[Any], keys: Sequence[tuple[Any, ...]]) -> Any:
    from sqlalchemy import tuple_

    if len(pk) == 1:
        return pk[0].in_([k[0] for k in keys])
    return tuple_(*pk).in_(keys)
