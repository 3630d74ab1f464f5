"""Pages: borrowers, "my loan", and the back office that renews payment links."""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from freshlink.contrib.django import cached_view

from .models import Borrower, Loan
from .services import current_borrower, my_loan


@require_GET
@cached_view(ttl=300, tags=["borrowers"])  # the whole page; a borrower's save drops it
def index(request: Any) -> HttpResponse:
    return render(request, "loans/index.html", {"borrowers": Borrower.objects.order_by("pk")})


@require_GET
def login(request: Any, borrower_id: int) -> HttpResponse:
    response = redirect("my-loan")
    response.set_cookie("borrower", str(borrower_id), httponly=True, samesite="Lax")
    return response


@require_GET
def my_loan_page(request: Any) -> HttpResponse:
    borrower = current_borrower(request)
    if borrower is None:
        return redirect("index")
    loan = my_loan(borrower)  # cached; a committed renewal invalidates it in every process
    if loan is None:
        raise Http404("no loan")
    left = loan["link_expires_at"] - time.time()
    context = {"loan": loan, "valid": left > 0, "minutes": max(0, int(left // 60) + 1)}
    return render(request, "loans/my_loan.html", context)


@require_GET
def staff(request: Any) -> HttpResponse:
    # The back office reads the database directly: staff always see the truth.
    loans = Loan.objects.select_related("borrower").order_by("pk")
    return render(request, "loans/staff.html", {"loans": loans})


@require_POST
def staff_action(request: Any, loan_id: int, action: str) -> HttpResponse:
    if action not in ("renew", "expire"):
        raise Http404(action)
    with transaction.atomic():
        loan = get_object_or_404(Loan.objects.select_for_update(), pk=loan_id)
        loan.set_link(settings.LINK_LIFETIME if action == "renew" else -1)
        loan.save()  # the invalidation is queued; it runs when this block commits
    # Committed and invalidated: every process's next read loads the new link.
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse(
            {
                "loan_id": loan.pk,
                "token": loan.link_token,
                "expires_at": loan.link_expires_at.timestamp(),
            }
        )
    return redirect("staff")


def healthz(request: Any) -> HttpResponse:
    return HttpResponse("ok")
