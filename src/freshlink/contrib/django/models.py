"""The outbox table (``FRESHLINK['OUTBOX'] = True``): the same layout the SQLAlchemy
integration writes (:mod:`freshlink.contrib.outbox`), so either relay can read it."""

from __future__ import annotations

from django.db import models


class OutboxRow(models.Model):  # type: ignore[misc]
    """The tags one committed transaction invalidates, until they are applied."""

    # Declared, not left to DEFAULT_AUTO_FIELD: the migration is the same in every project.
    id = models.BigAutoField(primary_key=True)
    namespace = models.CharField(max_length=200)
    tags = models.TextField()  # newline-separated
    created = models.FloatField(db_index=True)  # time.time() of the writing transaction
    # A relay's claim (databases without FOR UPDATE SKIP LOCKED): who, and until when.
    claim = models.CharField(max_length=32, null=True)
    claimed_until = models.FloatField(null=True)

    class Meta:
        """The table name both integrations use."""

        db_table = "freshlink_outbox"
        app_label = "freshlink"
