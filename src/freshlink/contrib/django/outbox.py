"""The Django outbox: rows written in the data's transaction, applied after its commit, and
relayed (``manage.py freshlink relay``) when the writer could not apply them.

Enabled by ``FRESHLINK['OUTBOX'] = True`` (the table comes with ``migrate``). A relay takes
its rows with ``select_for_update(skip_locked=True)`` on PostgreSQL, or claims them for a
while with one ``UPDATE`` elsewhere (SQLite), so several relays can run at once; a row applied
twice costs one extra miss.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence

from django.db import connections, transaction
from django.db.models import Min, Q

from ...cache import Cache
from ..outbox import Pending, RelayPass, apply_rows

__all__ = ["relay_once"]


def relay_once(
    cache_for: Callable[[str], Cache],
    *,
    using: str = "default",
    grace: float = 5.0,
    batch: int = 500,
    lease: float = 30.0,
    clock: Callable[[], float] = time.time,
) -> RelayPass:
    """Apply the rows older than ``grace`` seconds, up to ``batch`` of them;
    ``cache_for(namespace)`` is the cache of a row's namespace."""
    from .models import OutboxRow

    def invalidate(namespace: str, tags: Sequence[str]) -> None:
        cache_for(namespace).invalidate(*tags)

    rows = OutboxRow.objects.using(using)
    now = clock()
    old = Q(created__lte=now - grace)
    if connections[using].vendor == "postgresql":
        with transaction.atomic(using=using):
            taken = rows.select_for_update(skip_locked=True).filter(old).order_by("id")[:batch]
            done, failed = apply_rows(taken.values_list("id", "namespace", "tags"), invalidate)
            rows.filter(id__in=done).delete()
    else:
        token = secrets.token_hex(8)
        free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
        # One UPDATE (with its SELECT as a subquery), not a SELECT then an UPDATE in one
        # transaction: SQLite cannot upgrade a read transaction to a write while another
        # relay writes, and fails with "database is locked" instead of waiting.
        ids = rows.filter(old & free).order_by("id").values("id")[:batch]
        rows.filter(free, id__in=ids).update(claim=token, claimed_until=now + lease)
        claimed = rows.filter(claim=token).values_list("id", "namespace", "tags")
        done, failed = apply_rows(list(claimed), invalidate)
        rows.filter(id__in=done).delete()
        rows.filter(claim=token).update(claim=None, claimed_until=None)
    left = rows.aggregate(n=Min("created"))["n"]
    count = rows.count()
    return RelayPass(
        len(done), failed, Pending(count, max(clock() - left, 0.0) if left is not None else 0.0)
    )
