"""Bad requests the API answers with a problem (never a 500, never a value echoed): oversized and deeply nested
bodies, NUL characters in a path, out-of-range numbers, a token that would outlive the token making it; and an
unexpected error is logged by kind, without its message."""
from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.utils import timezone

from tests.luci_fixtures import token_client, user_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():  # type: ignore[no-untyped-def]
    from luci_web.clusters.models import Cluster

    Cluster.objects.create(name="alpha")
    return token_client(user_with("root", global_rights={"administrator"}))


def _problem(response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code and body["status"] == status
    return body


def test_an_oversized_body_is_413(admin_client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = admin_client.post("/api/v1/tokens/", data='{"name": "' + "x" * 5000 + '"}',
                                 content_type="application/json")
    _problem(response, 413, "PAYLOAD_TOO_LARGE")


def test_a_deeply_nested_body_is_400(admin_client) -> None:  # type: ignore[no-untyped-def]
    response = admin_client.post("/api/v1/tokens/", data="[" * 100000 + "]" * 100000,
                                 content_type="application/json")
    _problem(response, 400, "PARSE_ERROR")


def test_nul_in_a_path_and_huge_numbers_are_not_found_or_bad(admin_client) -> None:  # type: ignore[no-untyped-def]
    _problem(admin_client.get("/api/v1/clusters/al%00pha/"), 404, "NOT_FOUND")
    _problem(admin_client.get("/api/v1/clusters/alpha/config/history/9999999999999/"), 404, "NOT_FOUND")
    body = _problem(admin_client.get("/api/v1/clusters/alpha/events/?offset=99999999999999999999999"), 400,
                    "BAD_REQUEST")
    assert "offset" in body["errors"]


def test_a_token_cannot_make_a_longer_lived_token() -> None:
    from luci_web.api import tokens

    user = user_with("alice")
    row, text = tokens.issue(user, "short", timezone.now() + dt.timedelta(days=1))
    from rest_framework.test import APIClient

    client = APIClient(HTTP_HOST="127.0.0.1")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {text}")
    forever = client.post("/api/v1/tokens/", {"name": "forever"}, format="json")
    _problem(forever, 422, "TOKEN_OUTLIVES_MAKER")
    longer = client.post("/api/v1/tokens/", {"name": "longer", "expires_in_days": 30}, format="json")
    _problem(longer, 422, "TOKEN_OUTLIVES_MAKER")
    within = client.post("/api/v1/tokens/", {"name": "within", "expires_at": (row.expires_at - dt.timedelta(hours=1))
                                             .isoformat()}, format="json")
    assert within.status_code == 201


def test_an_unexpected_error_is_a_500_problem_logged_without_its_message(admin_client, monkeypatch,  # type: ignore[no-untyped-def]
                                                                         caplog) -> None:
    from luci_web.api.views import tasks

    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise ValueError("passwd=hunter2 was typed here")

    monkeypatch.setattr(tasks.operations, "visible", broken)
    with caplog.at_level(logging.ERROR, logger="luci.api"):
        body = _problem(admin_client.get("/api/v1/tasks/"), 500, "INTERNAL_ERROR")
    assert "hunter2" not in body["detail"]
    assert "ValueError" in caplog.text and "hunter2" not in caplog.text
