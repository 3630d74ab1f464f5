"""Signal receivers: model writes -> tag invalidations, and ``FRESHLINK`` changes -> a new Cache.

An invalidation must not run before the write is visible: a reader that misses in between
would load the old row and store it stamped with the *new* generations, valid until the next
write. So every invalidation here goes through ``transaction.on_commit``: it runs once the
surrounding transaction commits (at once in autocommit) and never for a rolled-back one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, router, transaction
from django.db.models.signals import (
    post_delete,
    post_init,
    post_save,
)

from ...cache import Cache
from ...errors import FreshlinkError, KeyTemplateError
from ...events import logger
from ...keys import Template, check_tag
from .conf import get_cache, outbox_enabled, reset

__all__ = [
    "invalidate_objects",
    "invalidate_on",
    "invalidate_on_commit",
    "invalidate_queryset",
    "on_setting_changed",
]


def on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    """``setting_changed`` receiver: a new ``FRESHLINK`` value means a new Cache."""
    if setting == "FRESHLINK":
        reset()


# Where a tracked instance keeps the tags rendered from the values it was loaded with, so a
# save that moves a loan to another borrower also invalidates the old borrower's tags.
_LOADED_ATTR = "_freshlink_loaded_tags"


def invalidate_on_commit(*tags: str, using: str | None = None, cache: Cache | None = None) -> None:
    """Invalidate ``tags`` once the current transaction on ``using`` commits (never on rollback).

    With ``FRESHLINK['OUTBOX'] = True`` the tags are also written to the outbox table in that
    transaction; the row is deleted once the invalidation is confirmed, and otherwise left for
    ``manage.py freshlink relay``.
    """
    checked = sorted({check_tag(t) for t in tags})
    if not checked:
        return
    row = None
    if outbox_enabled():
        from .models import OutboxRow

        namespace = (cache if cache is not None else get_cache()).namespace
        row = OutboxRow.objects.using(using or DEFAULT_DB_ALIAS).create(
            namespace=namespace, tags="\n".join(checked), created=time.time()
        )

    # robust: a failed invalidation (logged and counted by the cache, and by Django) must
    # not stop the hooks queued after it, which may be other invalidations. A function,
    # not a functools.partial: Django's robust path logs the hook's __qualname__.
    def invalidate_now() -> None:
        _invalidate_now(checked, cache, row, using)

    transaction.on_commit(invalidate_now, using=using, robust=True)


def _invalidate_now(tags: Sequence[str], cache: Cache | None, row: Any, using: str | None) -> None:
    # Resolved at commit time, so a settings change between write and commit is honoured.
    target = cache if cache is not None else get_cache()
    if row is None:
        target.invalidate(*tags)
        return
    try:
        target.invalidate(*tags)
    except FreshlinkError as exc:
        logger.warning(
            "freshlink: invalidation after commit failed (%s); left in the outbox for the relay",
            exc,
            extra={"freshlink_event": "outbox_apply_failed", "rows": 1},
        )
        return
    type(row).objects.using(using or DEFAULT_DB_ALIAS).filter(pk=row.pk).delete()


class _Registration:
    """The tag templates of one ``invalidate_on`` call and how to render them for a model."""

    def __init__(
        self, model: Any, tags: Sequence[str], cache: Cache | None, track: bool = False
    ) -> None:
        self.model = model
        self.cache = cache
        self.track = track
        self.templates = tuple(Template(t) for t in tags)
        for template in self.templates:
            for name in template.fields:
                if not hasattr(model, name):
                    raise KeyTemplateError(
                        f"invalidate_on({model.__name__}): tag template {template.text!r} uses "
                        f"{{{name}}}, which is not an attribute of {model.__name__}"
                    )
        self._columns: dict[str, str] | None = None

    def columns(self) -> dict[str, str]:
        """Template field name -> column attname, for fields that are plain columns."""
        if self._columns is None:
            meta = self.model._meta
            columns = {"pk": meta.pk.attname}
            for f in meta.concrete_fields:
                columns[f.attname] = f.attname
                if not f.is_relation:
                    columns[f.name] = f.attname
            self._columns = columns
        return self._columns

    def render(self, instance: Any) -> set[str]:
        """Tags for an instance's current attribute values."""
        return {
            check_tag(t.render({n: getattr(instance, n) for n in t.fields})) for t in self.templates
        }

    def render_loaded(self, instance: Any) -> set[str]:
        """Tags for the values an instance holds without a query (deferred fields skipped)."""
        columns, loaded = self.columns(), instance.__dict__
        tags = set()
        for t in self.templates:
            # A template reading a deferred column or an unfetched relation would cost a query
            # per loaded row; such tags are rendered from current values at save time only.
            if all(n in columns and columns[n] in loaded for n in t.fields):
                tags.add(check_tag(t.render({n: loaded[columns[n]] for n in t.fields})))
        return tags

    def row_templates(self, templates: Sequence[Template]) -> list[str]:
        """The columns ``values()`` must fetch to render ``templates`` from rows."""
        columns = self.columns()
        needed = {columns["pk"]}
        for t in templates:
            for n in t.fields:
                if n not in columns:
                    raise KeyTemplateError(
                        f"{self.model.__name__}: tag template {t.text!r} uses {{{n}}}, which is "
                        "not a column; bulk helpers render tags from column values (use e.g. "
                        "{borrower_id} rather than {borrower.id})"
                    )
                needed.add(columns[n])
        return sorted(needed)

    def render_row(self, templates: Sequence[Template], row: Mapping[str, Any]) -> set[str]:
        """Tags for one ``values()`` row."""
        columns = self.columns()
        return {check_tag(t.render({n: row[columns[n]] for n in t.fields})) for t in templates}

    # signal receivers ---------------------------------------------------------------

    def on_init(self, sender: Any, instance: Any, **kwargs: Any) -> None:
        if instance.pk is None:
            return  # a new, unsaved object: nothing cached can depend on it yet
        instance.__dict__.setdefault(_LOADED_ATTR, {})[id(self)] = self.render_loaded(instance)

    def on_save(self, sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
        self._changed(instance, using)

    def on_delete(self, sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
        self._changed(instance, using)

    def _changed(self, instance: Any, using: str) -> None:
        current = self.render(instance)
        tags = set(current)
        if self.track:
            loaded = instance.__dict__.setdefault(_LOADED_ATTR, {})
            tags |= loaded.get(id(self), set())
            loaded[id(self)] = current  # the row now holds these values
        invalidate_on_commit(*tags, using=using, cache=self.cache)


_registry: dict[Any, list[_Registration]] = {}


def invalidate_on(
    model: Any,
    tags: Iterable[str],
    *,
    track_changes: bool = True,
    cache: Cache | None = None,
) -> Any:
    """After a save or delete of ``model`` commits, invalidate ``tags`` rendered from the instance.

    Templates name the instance's attributes: ``["loan:{pk}", "user:{borrower_id}"]``. With
    ``track_changes`` the tags of the values an instance was *loaded* with are invalidated too,
    so moving a loan to another borrower invalidates both borrowers. ``update()`` and bulk
    operations send no signals: use :func:`invalidate_queryset` / :func:`invalidate_objects`.
    Returns ``model``, so it also works as a class decorator via ``functools.partial``.
    """
    if isinstance(tags, str):
        tags = [tags]
    reg = _Registration(model, list(tags), cache, track_changes)
    if not reg.templates:
        raise KeyTemplateError(f"invalidate_on({model.__name__}) needs at least one tag")
    _registry.setdefault(model, []).append(reg)
    uid = f"freshlink:{model._meta.label}:{id(reg)}"
    post_save.connect(reg.on_save, sender=model, weak=False, dispatch_uid=uid)
    post_delete.connect(reg.on_delete, sender=model, weak=False, dispatch_uid=uid)
    if track_changes:
        post_init.connect(reg.on_init, sender=model, weak=False, dispatch_uid=uid)
    return model


def _templates_for(model: Any, tags: Iterable[str] | None) -> tuple[_Registration, list[Template]]:
    if tags is not None:
        if isinstance(tags, str):
            tags = [tags]
        reg = _Registration(model, list(tags), None)
        return reg, list(reg.templates)
    regs = _registry.get(model)
    if not regs:
        raise KeyTemplateError(
            f"no tags given and {model.__name__} has no invalidate_on() registration"
        )
    return regs[0], [t for r in regs for t in r.templates]


@contextlib.contextmanager
def invalidate_queryset(
    queryset: Any, tags: Iterable[str] | None = None, *, cache: Cache | None = None
) -> Iterator[Any]:
    """Around a ``queryset.update()``: invalidate the rows' tags from before *and* after it.

    ``with invalidate_queryset(Loan.objects.filter(borrower_id=3)) as loans: loans.update(...)``
    reads the matching rows' columns first, then the same rows (by primary key) afterwards, and
    defers the invalidation of both sets of tags to the commit. ``tags`` defaults to the
    model's :func:`invalidate_on` templates; they may only name columns.
    """
    reg, templates = _templates_for(queryset.model, tags)
    fields = reg.row_templates(templates)
    using = queryset.db
    pk = reg.columns()["pk"]
    before = list(queryset.values(*fields))
    found: set[str] = set()
    for row in before:
        found |= reg.render_row(templates, row)

    def collect_after() -> None:
        rows = queryset.model._base_manager.using(using).filter(pk__in=[r[pk] for r in before])
        for row in rows.values(*fields):
            found.update(reg.render_row(templates, row))

    try:
        yield queryset
    except BaseException:
        # The block failed. In a transaction it rolls back (and the deferred invalidation with
        # it); in autocommit part of the write may have landed, so invalidate what we can. A
        # broken transaction refuses the second read: the old rows' tags still go out.
        with contextlib.suppress(DatabaseError):
            collect_after()
        invalidate_on_commit(*found, using=using, cache=cache)
        raise
    collect_after()
    invalidate_on_commit(*found, using=using, cache=cache)


def invalidate_objects(
    objects: Iterable[Any],
    tags: Iterable[str] | None = None,
    *,
    using: str | None = None,
    cache: Cache | None = None,
) -> None:
    """After ``bulk_create`` / ``bulk_update``: invalidate the objects' tags on commit."""
    objs = list(objects)
    if not objs:
        return
    model = type(objs[0])
    _reg, templates = _templates_for(model, tags)
    found: set[str] = set()
    for obj in objs:
        found |= {check_tag(t.render({n: getattr(obj, n) for n in t.fields})) for t in templates}
        loaded = obj.__dict__.get(_LOADED_ATTR)
        if tags is None and loaded:
            for old in loaded.values():
                found |= old  # values the object was loaded with (bulk_update moved it)
    db = using if using is not None else router.db_for_write(model)
    invalidate_on_commit(*found, using=db, cache=cache)
