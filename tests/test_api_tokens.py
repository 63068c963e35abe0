"""API tokens and how the REST API authenticates: a token is made (API, console page, `manage.py apitoken`), used,
refused once expired or revoked, kept only as a hash and compared in constant time; another user's token is 404;
the console's session works on the API with Django's CSRF check enforced on writes; any unknown path under /api/
is a 404 problem; the Swagger UI renders under the console's content security policy (Chromium, when present)."""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from datetime import datetime, timedelta
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from luci_web.api import tokens
from luci_web.api.models import ApiToken
from luci_web.audit.models import AuditEntry
from tests.luci_fixtures import token_client, user_with

FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # tests only: a PBKDF2 user costs ~1 s here
PROBLEM = "application/problem+json"
TOKENS = "/api/v1/tokens/"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def alice(db, settings) -> Any:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = FAST_HASHERS
    return user_with("alice")


@pytest.fixture
def bob(alice) -> Any:  # type: ignore[no-untyped-def]
    return user_with("bob")


def bearer(token: str) -> APIClient:
    client = APIClient(HTTP_HOST="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith(PROBLEM)
    body = json.loads(response.content)
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code, body
    return body


def make_over_api(client: APIClient, **body: Any) -> dict[str, Any]:
    response = client.post(TOKENS, body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


# -- the token flow over the API ------------------------------------------------------------------------------------
def test_token_made_over_the_api_is_shown_once_and_works(alice) -> None:  # type: ignore[no-untyped-def]
    client = token_client(alice)
    made = make_over_api(client, name="backup script", expires_in_days=30)
    text = made["token"]
    assert re.fullmatch(r"luci_[a-z2-9]{8}_[A-Za-z0-9_-]{40,}", text)
    assert made["prefix"] == text.split("_")[1] and made["active"] is True
    assert timedelta(days=29) < datetime.fromisoformat(made["expires_at"]) - timezone.now() <= timedelta(
        days=30)
    # the new token authenticates as alice; neither the list nor the detail shows a token's text again
    fresh = bearer(text)
    listed = fresh.get(TOKENS)
    assert listed.status_code == 200
    assert {t["name"] for t in listed.json()} == {"test", "backup script"}
    assert text not in listed.content.decode() and client.token not in listed.content.decode()
    detail = fresh.get(made["url"])
    assert detail.status_code == 200 and "token" not in detail.json()
    assert detail.json()["last_used_at"] is not None, "using a token records when"


def test_expired_token_is_refused_with_401(alice) -> None:  # type: ignore[no-untyped-def]
    row, text = tokens.issue(alice, "short-lived", timezone.now() + timedelta(minutes=5))
    assert bearer(text).get(TOKENS).status_code == 200
    ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = bearer(text).get(TOKENS)
    problem(response, 401, "AUTHENTICATION_FAILED")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_revoked_token_is_refused_and_revoking_is_audited(alice) -> None:  # type: ignore[no-untyped-def]
    client = token_client(alice)
    made = make_over_api(client, name="ci")
    victim = bearer(made["token"])
    assert victim.get(TOKENS).status_code == 200
    assert client.delete(made["url"]).status_code == 204
    problem(victim.get(TOKENS), 401, "AUTHENTICATION_FAILED")
    assert client.get(made["url"]).json()["revoked_at"] is not None, "a revoked token stays listed, revoked"
    assert client.delete(made["url"]).status_code == 204, "revoking twice is harmless"
    entries = list(AuditEntry.objects.filter(action__startswith="token.").order_by("at"))
    assert [(e.action, e.target, e.username) for e in entries] == [
        ("token.create", made["prefix"], "alice"), ("token.revoke", made["prefix"], "alice")]
    assert entries[0].detail["name"] == "ci" and entries[0].message == "REST API"


def test_another_users_token_is_404(alice, bob) -> None:  # type: ignore[no-untyped-def]
    row, _ = tokens.issue(bob, "bob's")
    client = token_client(alice)
    problem(client.get(f"{TOKENS}{row.pk}/"), 404, "NOT_FOUND")
    problem(client.delete(f"{TOKENS}{row.pk}/"), 404, "NOT_FOUND")
    assert ApiToken.objects.get(pk=row.pk).revoked_at is None
    assert all(t["name"] != "bob's" for t in client.get(TOKENS).json())
    problem(client.get(f"{TOKENS}999999/"), 404, "NOT_FOUND")


def test_token_text_is_not_at_rest_and_compared_in_constant_time(alice) -> None:  # type: ignore[no-untyped-def]
    client = token_client(alice)
    made = make_over_api(client, name="at rest")
    text = made["token"]
    secret = text.split("_", 2)[2]
    row = ApiToken.objects.get(prefix=made["prefix"])
    assert row.digest == hashlib.sha256(text.encode()).hexdigest()
    stored = json.dumps([list(ApiToken.objects.values()), list(AuditEntry.objects.values())], default=str)
    assert secret not in stored and text not in stored, "the token's secret reached the database"
    # the right prefix with a wrong secret (same length) is refused, and the digests were compared by compare_digest
    forged = f"luci_{made['prefix']}_{'A' * len(secret)}"
    with mock.patch.object(hmac, "compare_digest", wraps=hmac.compare_digest) as compare:
        problem(bearer(forged).get(TOKENS), 401, "AUTHENTICATION_FAILED")
    assert compare.call_count == 1
    for bad in ("luci_" + made["prefix"], "not-a-token", f"luci_zzzzzzzz_{secret}"):
        problem(bearer(bad).get(TOKENS), 401, "AUTHENTICATION_FAILED")
    problem(APIClient(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION="Bearer a b").get(TOKENS), 401)


def test_no_credentials_is_401_with_a_bearer_challenge(db) -> None:  # type: ignore[no-untyped-def]
    response = APIClient(HTTP_HOST="127.0.0.1").get(TOKENS)
    problem(response, 401, "NOT_AUTHENTICATED")
    assert response["WWW-Authenticate"] == 'Bearer realm="luci"'


@pytest.mark.parametrize("body, field", [
    ({}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": "both", "expires_in_days": 3, "expires_at": "2999-01-01T00:00:00Z"}, "non_field_errors"),
    ({"name": "past", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ({"name": "zero", "expires_in_days": 0}, "expires_in_days"),
])
def test_bad_token_requests_are_400(alice, body: dict[str, Any], field: str) -> None:  # type: ignore[no-untyped-def]
    client = token_client(alice)
    found = problem(client.post(TOKENS, body, format="json"), 400, "BAD_REQUEST")
    assert field in found["errors"], found
    assert ApiToken.objects.filter(user=alice).count() == 1, "a refused request made no token"


# -- the console's session on the API: CSRF enforced on writes --------------------------------------------------------
def session_client(user: Any) -> tuple[Client, str]:
    """A browser-like client (CSRF enforced) signed in as `user`, and its CSRF token (from the console's page)."""
    client = Client(enforce_csrf_checks=True, HTTP_HOST="127.0.0.1")
    client.force_login(user)
    assert client.get("/tokens/").status_code == 200
    return client, client.cookies["csrftoken"].value


def test_session_reads_work_and_writes_need_the_csrf_token(alice) -> None:  # type: ignore[no-untyped-def]
    client, csrf = session_client(alice)
    assert client.get(TOKENS).status_code == 200
    refused = client.post(TOKENS, json.dumps({"name": "from the browser"}), content_type="application/json")
    assert "CSRF" in problem(refused, 403, "PERMISSION_DENIED")["detail"]
    assert not ApiToken.objects.filter(user=alice).exists()
    made = client.post(TOKENS, json.dumps({"name": "from the browser"}), content_type="application/json",
                       HTTP_X_CSRFTOKEN=csrf)
    assert made.status_code == 201, made.content
    problem(client.delete(made.json()["url"]), 403, "PERMISSION_DENIED")
    assert client.delete(made.json()["url"], HTTP_X_CSRFTOKEN=csrf).status_code == 204


# -- the console's API Tokens page ----------------------------------------------------------------------------------
def test_console_page_makes_shows_once_and_revokes(alice, bob) -> None:  # type: ignore[no-untyped-def]
    client, csrf = session_client(alice)
    assert client.post("/tokens/", {"name": "no csrf"}).status_code == 403
    page = client.post("/tokens/", {"name": "deploy", "expires_in_days": "7", "csrfmiddlewaretoken": csrf})
    assert page.status_code == 200
    html = page.content.decode()
    text = re.search(r"luci_[a-z2-9]{8}_[A-Za-z0-9_-]{40,}", html).group(0)
    assert bearer(text).get(TOKENS).status_code == 200
    assert page["Cache-Control"] == "no-store", "the page showing a token must not be cached"
    again = client.get("/tokens/").content.decode()
    assert text not in again and "deploy" in again, "the token is shown once; the list names it by prefix"
    row = ApiToken.objects.get(user=alice)
    assert row.expires_at is not None and timedelta(days=6) < row.expires_at - timezone.now() <= timedelta(days=7)
    bad = client.post("/tokens/", {"name": "", "expires_in_days": "-1", "csrfmiddlewaretoken": csrf})
    assert bad.status_code == 400 and ApiToken.objects.filter(user=alice).count() == 1
    # revoke: CSRF needed, only one's own token, then the token is refused
    assert client.post(f"/tokens/{row.pk}/revoke/").status_code == 403
    others, _ = tokens.issue(bob, "bob's")
    assert client.post(f"/tokens/{others.pk}/revoke/", {"csrfmiddlewaretoken": csrf}).status_code == 404
    assert ApiToken.objects.get(pk=others.pk).revoked_at is None
    done = client.post(f"/tokens/{row.pk}/revoke/", {"csrfmiddlewaretoken": csrf})
    assert done.status_code == 302 and done["Location"] == "/tokens/"
    problem(bearer(text).get(TOKENS), 401)
    assert "revoked" in client.get("/tokens/").content.decode()
    actions = list(AuditEntry.objects.filter(action__startswith="token.").values_list("action", "target", "message"))
    assert sorted(actions) == [("token.create", row.prefix, "console"), ("token.revoke", row.prefix, "console")]
    assert text.split("_", 2)[2] not in json.dumps(list(AuditEntry.objects.values()), default=str)


def test_console_page_needs_a_login(db) -> None:  # type: ignore[no-untyped-def]
    response = Client().get("/tokens/")
    assert response.status_code == 302 and "/login/" in response["Location"]


# -- manage.py apitoken ---------------------------------------------------------------------------------------------
def apitoken(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("apitoken", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_apitoken_command_creates_lists_and_revokes(alice) -> None:  # type: ignore[no-untyped-def]
    out, err = apitoken("create", "alice", "--name", "cron job", "--expires", "10")
    text = out.strip()
    assert re.fullmatch(r"luci_[a-z2-9]{8}_[A-Za-z0-9_-]{40,}", text), out
    prefix = text.split("_")[1]
    assert prefix in err and text not in err
    assert bearer(text).get(TOKENS).status_code == 200
    listed, _ = apitoken("list", "alice")
    assert prefix in listed and "active" in listed and "cron job" in listed and text not in listed
    out, _ = apitoken("revoke", prefix)
    assert f"revoked {prefix}" in out
    problem(bearer(text).get(TOKENS), 401)
    assert "revoked" in apitoken("list", "alice")[0]
    entries = AuditEntry.objects.filter(action__startswith="token.").order_by("at")
    assert [(e.action, e.username, e.message) for e in entries] == [
        ("token.create", "", "manage.py apitoken"), ("token.revoke", "", "manage.py apitoken")]


@pytest.mark.parametrize("args, says", [
    (("create", "nobody", "--name", "x"), "no user 'nobody'"),
    (("create", "alice", "--name", "x", "--expires", "soon"), "--expires must be a number of days"),
    (("create", "alice", "--name", "x", "--expires", "0"), "--expires must be a number of days"),
    (("create", "alice", "--name", " "), "--name must be"),
    (("list", "nobody"), "no user 'nobody'"),
    (("revoke", "short"), "a token prefix is 8 characters"),
    (("revoke", "abcdefgh"), "no token with the prefix 'abcdefgh'"),
])
def test_apitoken_command_errors_are_one_line(alice, args: tuple[str, ...], says: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(CommandError) as caught:
        apitoken(*args)
    assert says in str(caught.value) and "\n" not in str(caught.value)
    assert not ApiToken.objects.exists()


def test_apitoken_revoking_twice_is_an_error(alice) -> None:  # type: ignore[no-untyped-def]
    row, text = tokens.issue(alice, "x")
    apitoken("revoke", text)  # the whole token names its prefix too
    with pytest.raises(CommandError, match="revoked already"):
        apitoken("revoke", row.prefix)


# -- unknown paths under /api/ ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete", "options"])
def test_unknown_api_paths_are_404_problems_for_anyone(db, method: str) -> None:  # type: ignore[no-untyped-def]
    for client in (APIClient(HTTP_HOST="127.0.0.1"), bearer("luci_bad")):
        for url in ("/api/v1/nope/", "/api/", "/api/v2/clusters/", "/api/v1/clusters/x/no/such/thing/"):
            problem(getattr(client, method)(url), 404, "NOT_FOUND")


def test_a_missing_trailing_slash_is_named(db) -> None:  # type: ignore[no-untyped-def]
    body = problem(APIClient(HTTP_HOST="127.0.0.1").post("/api/v1/tokens", {}, format="json"), 404, "NOT_FOUND")
    assert "/api/v1/tokens/" in body["detail"]
    assert "'/'" not in problem(APIClient(HTTP_HOST="127.0.0.1").get("/api/nothing"), 404)["detail"]


# -- the Swagger UI under the content security policy ----------------------------------------------------------------
def test_swagger_page_has_no_inline_style_or_script(alice) -> None:  # type: ignore[no-untyped-def]
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(alice)
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<style" not in html and "style=" not in html
    assert all(re.search(r"\bsrc=", tag) for tag in re.findall(r"<script\b[^>]*>", html)), "an inline script"
    assert "api/swagger_ui.css" in html
    assert "'unsafe-inline'" not in response["Content-Security-Policy"]
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"needs Debian's chromium at {CHROMIUM}")
@pytest.mark.django_db(transaction=True)
def test_swagger_ui_renders_in_chromium_without_csp_violations(live_server, settings) -> None:  # type: ignore[no-untyped-def]
    """Served by a live server on 127.0.0.1 with every middleware (so the console's CSP), signed in with a session
    cookie: the UI draws the operations, and the browser reports no blocked resource."""
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # playwright's sync API runs a loop in this thread
    from playwright.sync_api import sync_playwright

    settings.PASSWORD_HASHERS = FAST_HASHERS
    user = user_with("swagger")
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    complaints: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            context = browser.new_context()
            context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}])
            context.route(re.compile(r"^(?!http://(localhost|127\.0\.0\.1)[:/]).*"), lambda route: route.abort())
            page = context.new_page()
            page.on("console", lambda m: complaints.append(m.text) if m.type in ("error", "warning") else None)
            page.on("requestfailed", lambda r: complaints.append(f"failed {r.url}"))
            page.goto(live_server.url + "/api/docs/", timeout=30_000)
            page.wait_for_selector("#operations-tokens-tokens_create", timeout=30_000)
            background = page.evaluate("getComputedStyle(document.body).backgroundColor")
        finally:
            browser.close()
    assert background == "rgb(250, 250, 250)", "swagger_ui.css was not applied"
    blocked = [c for c in complaints if "Content Security Policy" in c or "failed" in c]
    assert not blocked, blocked
