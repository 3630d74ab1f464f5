"""The outbox table (created by ``migrate``; used only with ``FRESHLINK['OUTBOX'] = True``)."""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):  # type: ignore[misc]
    """Create ``freshlink_outbox``."""

    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.CreateModel(
            name="OutboxRow",
            fields=[
                ("id", models.BigAutoField(primary_key=True, serialize=False)),
                ("namespace", models.CharField(max_length=200)),
                ("tags", models.TextField()),
                ("created", models.FloatField(db_index=True)),
                ("claim", models.CharField(max_length=32, null=True)),
                ("claimed_until", models.FloatField(null=True)),
            ],
            options={"db_table": "freshlink_outbox"},
        ),
    ]
