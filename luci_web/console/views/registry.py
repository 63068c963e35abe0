"""Create a cluster, add an existing one, remove one from luci."""
from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import path


@login_required
def cluster_add(request: HttpRequest) -> HttpResponse:
    return render(request, "console/base.html")


@login_required
def cluster_create(request: HttpRequest) -> HttpResponse:
    return render(request, "console/base.html")


@login_required
def cluster_remove(request: HttpRequest, pk: int) -> HttpResponse:
    return render(request, "console/base.html")


urlpatterns = [
    path("clusters/add/", cluster_add, name="cluster_add"),
    path("clusters/create/", cluster_create, name="cluster_create"),
    path("clusters/<int:pk>/remove/", cluster_remove, name="cluster_remove"),
]
