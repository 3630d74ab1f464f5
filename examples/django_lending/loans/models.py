"""Borrowers and loans. ``invalidate_on`` ties every saved or deleted loan to its tags."""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.db import models
from django.utils import timezone

from freshlink.contrib.django import invalidate_on


class Borrower(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name


class Loan(models.Model):
    borrower = models.ForeignKey(Borrower, on_delete=models.CASCADE, related_name="loans")
    amount_cents = models.IntegerField()
    link_token = models.CharField(max_length=32)
    link_expires_at = models.DateTimeField()

    def set_link(self, lifetime: float) -> None:
        """A new payment link valid for ``lifetime`` seconds (<= 0: expired now)."""
        self.link_token = secrets.token_urlsafe(8)
        self.link_expires_at = timezone.now() + timedelta(seconds=lifetime)


# After a loan is saved or deleted *and the transaction commits*, these tags are invalidated:
# the cached "my loan" of its borrower (old and new, if the loan changed hands) is reloaded.
invalidate_on(Loan, tags=["loan:{pk}", "borrower:{borrower_id}"])
# ... and the cached index page, which lists the borrowers.
invalidate_on(Borrower, tags=["borrowers"])
