"""``/whoami`` (anyone), ``/private`` (``login_required``), ``/admin-report`` (a role)."""

from __future__ import annotations

from django.urls import path

from . import views

urlpatterns = [
    path("whoami", views.whoami),
    path("private", views.private),
    path("admin-report", views.admin_report),
]
