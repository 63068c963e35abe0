"""Security headers on every response (field-anchors §4.3, the pcsd baseline): a content security policy with
frame-ancestors, and no-store on every page of the console (pages may carry fence settings); Django's own
middleware adds X-Frame-Options, nosniff, Referrer-Policy, COOP and, under TLS, HSTS."""
from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", settings.LUCI_CSP)
        if not request.path.startswith(settings.STATIC_URL if settings.STATIC_URL.startswith("/")
                                       else "/" + settings.STATIC_URL):
            response.headers["Cache-Control"] = "no-store"
        response.headers.pop("Server", None)
        return response
