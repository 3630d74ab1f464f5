"""URLs of the example site."""

from django.urls import include, path

from .loans import views

urlpatterns = [
    path("", views.index, name="index"),
    path("login/<int:borrower_id>", views.login, name="login"),
    path("my-loan", views.my_loan_page, name="my-loan"),
    path("staff", views.staff, name="staff"),
    path("staff/loans/<int:loan_id>/<str:action>", views.staff_action, name="staff-action"),
    path("healthz", views.healthz),
    # Opt-in: the "report stale" view (and /freshlink/metrics when FRESHLINK["METRICS"] is set).
    path("freshlink/", include("freshlink.contrib.django.urls")),
]
