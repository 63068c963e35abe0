"""Any other path under /api/: a 404 problem for every method, to anyone (it tells nothing, so it needs no
authentication: a script with a mistyped path learns that the path is wrong, not that its token is). A path that
only lacks its trailing slash says so, instead of Django's redirect, which would drop a POST's body."""
from __future__ import annotations

from typing import Any

from django.urls import Resolver404, re_path, resolve
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from luci_web.api.base import ApiView
from luci_web.api.problems import not_found


def missing_slash(path: str) -> bool:
    """Whether `path` is an API route but for its trailing slash."""
    if path.endswith("/"):
        return False
    try:
        match = resolve(path + "/")
    except Resolver404:
        return False
    return match.namespace == "api" and match.url_name != "unknown"


@extend_schema(exclude=True)
class UnknownPath(ApiView):
    authentication_classes = ()  # a bad token must not turn "no such path" into 401

    def answer(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if missing_slash(request.path):
            raise not_found(f"no such API path: every API path ends with '/' ({request.path}/)")
        raise not_found("no such API path (the OpenAPI document at /api/schema/ lists them)")

    get = post = put = patch = delete = head = options = trace = answer


urlpatterns = [re_path(r"^[\s\S]*$", UnknownPath.as_view(), name="unknown")]  # [\s\S]: newlines too
