"""GET /api/v1/clusters/<c>/status/: the watcher's last reading in clustat --json's shape, served from the stored
status (re-encoded only when the watcher saved a new one), and the cluster list's summary."""
from __future__ import annotations

import datetime as dt

import pytest

from bench.luci import synthetic_status
from tests.luci_fixtures import token_client, user_with

pytestmark = pytest.mark.django_db


def _cluster(status: dict, at: dt.datetime):  # type: ignore[no-untyped-def]
    from luci_web.clusters.models import Cluster

    return Cluster.objects.create(name="big", status=status, status_at=at)


def test_status_is_the_stored_reading_and_follows_each_save() -> None:
    from luci_web.clusters.models import Cluster

    at = dt.datetime(2026, 11, 21, 15, 0, tzinfo=dt.UTC)
    cluster = _cluster(synthetic_status(4, 30), at)
    client = token_client(user_with("viewer", cluster, {"view"}))
    first = client.get("/api/v1/clusters/big/status/")
    assert first.status_code == 200 and first["Content-Type"] == "application/json"
    body = first.json()
    assert len(body["services"]) == 30 and len(body["members"]) == 4
    assert set(body["services"][0]) >= {"name", "state", "state_str", "flags", "flags_str", "owner", "last_owner",
                                         "restarts", "last_transition"}
    assert body["quorum"]["quorate"] is True and body["edited_locally"] == [] and body["message"] == ""

    moved = synthetic_status(4, 30)
    moved["services"][0] = {**moved["services"][0], "owner": "elsewhere", "state_str": "recovering"}
    Cluster.objects.filter(pk=cluster.pk).update(status=moved, status_at=at + dt.timedelta(seconds=1))
    again = client.get("/api/v1/clusters/big/status/").json()
    assert again["services"][0]["owner"] == "elsewhere" and again["services"][0]["state_str"] == "recovering"


def test_status_needs_view_and_checks_its_parameter() -> None:
    cluster = _cluster(synthetic_status(2, 3), dt.datetime(2026, 11, 21, tzinfo=dt.UTC))
    outsider = token_client(user_with("outsider"))
    refused = outsider.get("/api/v1/clusters/big/status/")
    assert refused.status_code == 404 and refused["Content-Type"] == "application/problem+json"
    viewer = token_client(user_with("viewer", cluster, {"view"}))
    bad = viewer.get("/api/v1/clusters/big/status/?fresh=maybe")
    assert bad.status_code == 400 and bad.json()["code"] == "BAD_REQUEST"


def test_cluster_list_shows_only_visible_clusters_with_their_summary() -> None:
    from luci_web.clusters.models import Cluster

    cluster = _cluster(synthetic_status(3, 5), dt.datetime(2026, 11, 21, tzinfo=dt.UTC))
    Cluster.objects.create(name="hidden")
    rows = token_client(user_with("viewer", cluster, {"view", "service_cmd"})).get("/api/v1/clusters/").json()
    assert [r["name"] for r in rows] == ["big"]
    assert rows[0]["summary"]["services"] == 5 and rows[0]["summary"]["total"] == 3
    assert rows[0]["rights"] == ["service_cmd", "view"]
