"""``path("freshlink/", include("freshlink.contrib.django.urls"))`` enables both views."""

from __future__ import annotations

from django.urls import path

from .views import metrics_view, report_stale_view

app_name = "freshlink"
urlpatterns = [
    path("metrics", metrics_view, name="metrics"),
    path("report-stale", report_stale_view, name="report-stale"),
]
