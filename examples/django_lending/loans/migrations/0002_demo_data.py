"""Demo rows: Ada's payment link has already expired, Grace's is valid for 15 minutes."""

from datetime import timedelta

from django.db import migrations
from django.utils import timezone


def create_demo_data(apps, schema_editor):
    Borrower = apps.get_model("loans", "Borrower")
    Loan = apps.get_model("loans", "Loan")
    now = timezone.now()
    ada = Borrower.objects.create(pk=1, name="Ada Lovelace")
    grace = Borrower.objects.create(pk=2, name="Grace Hopper")
    Loan.objects.create(
        pk=1,
        borrower=ada,
        amount_cents=250_000,
        link_token="ada-0",
        link_expires_at=now - timedelta(minutes=1),
    )
    Loan.objects.create(
        pk=2,
        borrower=grace,
        amount_cents=120_000,
        link_token="grace-0",
        link_expires_at=now + timedelta(minutes=15),
    )


class Migration(migrations.Migration):
    dependencies = [("loans", "0001_initial")]

    operations = [migrations.RunPython(create_demo_data, migrations.RunPython.noop)]
