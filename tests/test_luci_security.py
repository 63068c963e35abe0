"""The luci console's security baseline (field-anchors §4.3, pcsd's): headers on pages, the login page and static
files; HSTS and Secure cookies only under TLS; HttpOnly/SameSite session cookies; CSRF on every form; login
throttling; logout by POST only; the console's own 403/404/500 pages."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import include, path, reverse
from django.views.static import serve

from luci_web.access.rights import URL_RIGHTS, set_cluster_rights, url_right
from luci_web.audit.models import AuditEntry
from luci_web.clusters import gateway
from luci_web.clusters.models import Cluster, Node, Operation
from tests.test_luci_access import FAST_HASHERS, HAND_STATUS, closed_port, console_routes, route_kwargs

REPO = Path(__file__).resolve().parents[1]
STATIC_DIR = REPO / "luci_web" / "console" / "static"
User = get_user_model()


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


# this module is also a URLconf for the tests below: the console, a static file served through the middleware
# stack (as a production front end would have to), and a view that fails
urlpatterns = [
    path("static/<path:path>", serve, {"document_root": STATIC_DIR}),
    path("boom/", boom),
    path("", include("luci_web.console.urls")),
]


@pytest.fixture
def env(db, settings, tmp_path) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    settings.LUCI_HOME = tmp_path
    settings.PASSWORD_HASHERS = FAST_HASHERS
    gateway.reset()
    cache.clear()
    cluster = Cluster.objects.create(name="alpha", status=HAND_STATUS)
    admin = User.objects.create_superuser("root", password="root-pass-123")
    viewer = User.objects.create_user("watcher", password="watch-pass-123")
    set_cluster_rights(viewer, cluster, {"view"})
    yield {"cluster": cluster, "admin": admin, "viewer": viewer}
    cache.clear()
    gateway.reset()


def assert_baseline_headers(response: Any, *, page: bool) -> None:
    csp = response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "'unsafe-inline'" not in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "Strict-Transport-Security" not in response, "HSTS over plain HTTP"
    assert "Server" not in response
    if page:
        assert "no-store" in response["Cache-Control"]
    else:
        assert "no-store" not in response.get("Cache-Control", "")


# -- headers -------------------------------------------------------------------------------------------------------
def test_headers_on_a_page_the_login_page_and_errors(env: dict[str, Any]) -> None:
    client = Client()
    login = client.get(reverse("console:login"))
    assert login.status_code == 200
    assert_baseline_headers(login, page=True)
    client.force_login(env["viewer"])
    page = client.get(reverse("console:nodes", args=[env["cluster"].pk]))
    assert page.status_code == 200
    assert_baseline_headers(page, page=True)
    refused = client.get(reverse("console:users"))
    assert refused.status_code == 403
    assert_baseline_headers(refused, page=True)


@override_settings(ROOT_URLCONF=__name__)
def test_headers_on_a_static_file(env: dict[str, Any]) -> None:
    response = Client().get("/static/console/luci.css")
    assert response.status_code == 200
    assert_baseline_headers(response, page=False)


def test_hsts_only_over_tls(env: dict[str, Any]) -> None:
    with override_settings(SECURE_HSTS_SECONDS=63072000, SECURE_SSL_REDIRECT=False):
        secure = Client().get(reverse("console:login"), secure=True)
        assert secure["Strict-Transport-Security"].startswith("max-age=63072000")
        plain = Client().get(reverse("console:login"))
        assert "Strict-Transport-Security" not in plain


def _settings_under(env_vars: dict[str, str]) -> dict[str, str]:
    code = ("import django; django.setup(); from django.conf import settings as s; "
            "print(s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT)")
    environ = {k: v for k, v in os.environ.items() if k not in ("LUCI_TLS", "LUCI_SSL_REDIRECT")}
    environ.update({"DJANGO_SETTINGS_MODULE": "luci_web.settings", "SECRET_KEY": "test-only", **env_vars})
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environ, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    return dict(zip(("hsts", "session_secure", "csrf_secure", "redirect"), out, strict=True))


def test_luci_tls_turns_on_hsts_and_secure_cookies() -> None:
    assert _settings_under({}) == {"hsts": "0", "session_secure": "False", "csrf_secure": "False",
                                   "redirect": "False"}
    tls = _settings_under({"LUCI_TLS": "1"})
    assert int(tls["hsts"]) >= 365 * 24 * 3600
    assert tls["session_secure"] == tls["csrf_secure"] == tls["redirect"] == "True"


# -- cookies, CSRF -------------------------------------------------------------------------------------------------
def _session_cookie(response: Any) -> Any:
    return response.cookies[django_settings.SESSION_COOKIE_NAME]


def test_session_cookie_is_httponly_and_samesite(env: dict[str, Any]) -> None:
    response = Client().post(reverse("console:login"), {"username": "watcher", "password": "watch-pass-123"})
    assert response.status_code == 302
    cookie = _session_cookie(response)
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and not cookie["secure"]
    with override_settings(SESSION_COOKIE_SECURE=True):
        cache.clear()
        response = Client().post(reverse("console:login"), {"username": "watcher", "password": "watch-pass-123"})
        assert _session_cookie(response)["secure"]


def test_csrf_is_enforced(env: dict[str, Any]) -> None:
    client = Client(enforce_csrf_checks=True)
    refused = client.post(reverse("console:login"), {"username": "watcher", "password": "watch-pass-123"})
    assert refused.status_code == 403
    client.force_login(env["admin"])
    refused = client.post(reverse("console:user_add"), {"username": "eve", "password1": "eve-pass-123",
                                                        "password2": "eve-pass-123"})
    assert refused.status_code == 403 and not User.objects.filter(username="eve").exists()
    page = client.get(reverse("console:user_add"))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    accepted = client.post(reverse("console:user_add"), {"username": "eve", "password1": "eve-pass-123",
                                                         "password2": "eve-pass-123", "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302 and User.objects.filter(username="eve").exists()


FORM = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.I | re.S)


def test_every_post_form_of_every_page_carries_the_csrf_token(env: dict[str, Any]) -> None:
    """Render every console page an administrator can GET and look at each POST form."""
    cluster = env["cluster"]
    world = {"cluster": cluster, "victim": env["viewer"],
             "node": Node.objects.create(cluster=cluster, name="n1", address="127.0.0.1", port=closed_port(),
                                         host_key="ssh-ed25519 AAAAnot-a-key", fingerprint="x"),
             "operation": Operation.objects.create(cluster=cluster, cluster_name="alpha", kind="x")}
    client = Client(raise_request_exception=False)
    client.force_login(env["admin"])
    missing, pages = [], 0
    for name, pattern in console_routes():
        if name not in URL_RIGHTS or (url_right(name, "GET") == "public" and name != "login"):
            continue
        url = reverse(f"console:{name}", kwargs=route_kwargs(pattern, world))
        response = client.get(url)
        if response.status_code != 200:
            continue
        pages += 1
        for attrs, body in FORM.findall(response.content.decode()):
            if re.search(r"""method\s*=\s*["']post["']""", attrs, re.I) and "csrfmiddlewaretoken" not in body:
                missing.append(f"{url}: <form{attrs}>")
    assert pages >= 10
    assert not missing, "POST forms without {% csrf_token %}:\n" + "\n".join(missing)


# -- login throttling, logout --------------------------------------------------------------------------------------
def test_login_throttling(env: dict[str, Any], settings) -> None:  # type: ignore[no-untyped-def]
    settings.LOGIN_ATTEMPTS = 5
    settings.LOGIN_WINDOW = 2
    client = Client()
    url = reverse("console:login")
    for _ in range(5):
        assert client.post(url, {"username": "watcher", "password": "wrong"}).status_code == 200
    refused = client.post(url, {"username": "watcher", "password": "watch-pass-123"})
    assert refused.status_code == 429
    assert "Too many failed logins" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    # the address is throttled too: another name from the same client is refused
    assert client.post(url, {"username": "root", "password": "root-pass-123"}).status_code == 429
    results = list(AuditEntry.objects.filter(action="login").order_by("id").values_list("result", flat=True))
    assert results == ["failed"] * 5 + ["refused"] * 2
    time.sleep(settings.LOGIN_WINDOW + 0.3)
    assert client.post(url, {"username": "watcher", "password": "watch-pass-123"}).status_code == 302
    assert AuditEntry.objects.filter(action="login", result="ok", username="watcher").exists()


def test_logout_by_post_only(env: dict[str, Any]) -> None:
    client = Client()
    client.force_login(env["viewer"])
    assert client.get(reverse("console:logout")).status_code == 405
    assert "_auth_user_id" in client.session
    response = client.post(reverse("console:logout"))
    assert response.status_code == 302 and response["Location"] == reverse("console:login")
    assert client.get(reverse("console:overview")).status_code == 302


# -- error pages ---------------------------------------------------------------------------------------------------
@override_settings(ROOT_URLCONF=__name__, DEBUG=False)
def test_error_pages_in_the_console_look(env: dict[str, Any]) -> None:
    other = Cluster.objects.create(name="beta")
    client = Client(raise_request_exception=False)
    client.force_login(env["viewer"])
    forbidden = client.get(reverse("console:nodes", args=[other.pk]))
    assert forbidden.status_code == 403
    html = forbidden.content.decode()
    assert "Not allowed" in html and "you may not view this cluster" in html.lower() and 'class="top"' in html
    missing = client.get("/clusters/999999/nodes/")
    assert missing.status_code == 404
    assert "Not found" in missing.content.decode() and "luci.css" in missing.content.decode()
    failed = client.get("/boom/")
    assert failed.status_code == 500
    html = failed.content.decode()
    assert "Server error" in html and "luci.css" in html and "a bug in a view" not in html
    assert_baseline_headers(failed, page=True)
