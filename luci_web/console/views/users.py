"""Users and permissions (administrators only), and the audit log."""
from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path


@staff_member_required
def users(request: HttpRequest) -> HttpResponse:
    return render(request, "console/base.html")


@staff_member_required
def audit(request: HttpRequest) -> HttpResponse:
    return render(request, "console/base.html")


urlpatterns = [
    path("users/", users, name="users"),
    path("audit/", audit, name="audit"),
]
