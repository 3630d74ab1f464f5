from __future__ import annotations

from django.db import models

from freshlink.contrib.django import invalidate_on


class Borrower(models.Model):
    name = models.CharField(max_length=100)

    class Meta:
        app_label = "lending"


class Loan(models.Model):
    borrower = models.ForeignKey(Borrower, on_delete=models.CASCADE, related_name="loans")
    link = models.CharField(max_length=200, default="")
    amount = models.IntegerField(default=0)

    class Meta:
        app_label = "lending"


invalidate_on(Loan, tags=["loan:{pk}", "user:{borrower_id}"])
