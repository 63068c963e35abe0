"""The REST API's events and fence history: ServiceEvent rows paged (limit/offset, next, at most 500 a page) and
filtered by since/until (ISO 8601 or epoch seconds), service and owner, bad filters answered 400; the fence history
read from real agents (a 2-node lab, no cluster daemons) whose nodes' fence_history.jsonl got entries, merged across
the nodes that recorded them, filtered by node and time, secrets masked."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.luci_fixtures import registered, token_client, user_with

pytestmark = [pytest.mark.django_db]

PROBLEM = "application/problem+json"
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def events_cluster(settings) -> Any:  # type: ignore[no-untyped-def]
    """A cluster row with 30 state changes: web and db alternating, owners n1/n2, one a minute from T0."""
    from luci_web.clusters.models import Cluster, ServiceEvent

    settings.PASSWORD_HASHERS = FAST_HASHERS
    cluster = Cluster.objects.create(name="ev")
    ServiceEvent.objects.bulk_create([
        ServiceEvent(cluster=cluster, service="service:web" if i % 2 == 0 else "service:db",
                     state="started" if i % 3 else "stopped", owner="n1" if i < 20 else "n2",
                     at=T0 + timedelta(minutes=i), reported_by="n1") for i in range(30)])
    other = Cluster.objects.create(name="other")
    ServiceEvent.objects.create(cluster=other, service="service:web", state="started", owner="n1", at=T0)
    return cluster


def test_events_paged_oldest_first(events_cluster) -> None:  # type: ignore[no-untyped-def]
    client = token_client(user_with("evviewer", events_cluster, {"view"}))
    url = "/api/v1/clusters/ev/events/"
    first = client.get(url, {"limit": 12})
    assert first.status_code == 200
    body = first.json()
    assert (body["count"], body["limit"], body["offset"]) == (30, 12, 0)
    assert [e["at"] for e in body["events"]][:2] == [T0.isoformat(), (T0 + timedelta(minutes=1)).isoformat()]
    seen = [e["id"] for e in body["events"]]
    while body["next"]:
        body = client.get(body["next"]).json()
        seen += [e["id"] for e in body["events"]]
    assert len(seen) == len(set(seen)) == 30  # every event once, none of the other cluster's
    assert client.get(url).json()["limit"] == 100
    big = client.get(url, {"limit": 501})
    assert big.status_code == 400 and big["Content-Type"] == PROBLEM and "limit" in big.json()["errors"]
    assert client.get(url, {"offset": -1}).status_code == 400


def test_events_filters(events_cluster) -> None:  # type: ignore[no-untyped-def]
    client = token_client(user_with("evviewer2", events_cluster, {"view"}))
    url = "/api/v1/clusters/ev/events/"

    def ats(params: dict[str, Any]) -> list[str]:
        answer = client.get(url, params)
        assert answer.status_code == 200, answer.content[:300]
        return [e["at"] for e in answer.json()["events"]]

    iso = ats({"since": "2024-05-01T12:10:00Z", "until": "2024-05-01T12:14:00+00:00"})
    assert iso == [(T0 + timedelta(minutes=m)).isoformat() for m in range(10, 15)]
    epoch = ats({"since": str((T0 + timedelta(minutes=10)).timestamp()),
                 "until": str((T0 + timedelta(minutes=14)).timestamp())})
    assert epoch == iso
    assert ats({"since": "2024-05-01T12:28:00"}) == [(T0 + timedelta(minutes=m)).isoformat() for m in (28, 29)]
    web = client.get(url, {"service": "service:web"}).json()
    assert web["count"] == 15 and {e["service"] for e in web["events"]} == {"service:web"}
    n2 = client.get(url, {"node": "n2", "service": "service:db"}).json()
    assert n2["count"] == 5 and {(e["owner"], e["service"]) for e in n2["events"]} == {("n2", "service:db")}

    bad = client.get(url, {"since": "yesterday"})
    assert bad.status_code == 400 and bad["Content-Type"] == PROBLEM
    assert bad.json()["code"] == "BAD_REQUEST" and "since" in bad.json()["errors"]
    backwards = client.get(url, {"since": "2024-05-02", "until": "2024-05-01"})
    assert backwards.status_code == 400 and "until" in backwards.json()["errors"]


def test_events_need_the_view_right(events_cluster) -> None:  # type: ignore[no-untyped-def]
    stranger = token_client(user_with("stranger"))
    answer = stranger.get("/api/v1/clusters/ev/events/")
    assert answer.status_code == 404 and answer.json()["code"] == "NOT_FOUND"  # a cluster you may not view


# -- fence history from real agents ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fence_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")
    from tests.ricci_fixtures import lab_up

    with lab_up(tmp_path_factory.mktemp("apifence") / "lab", 2, no_daemons=True) as lab:
        yield lab


@pytest.mark.slow
def test_fence_history_merged_and_filtered(fence_lab, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from cman.fence_agents import FenceHistory

    settings.PASSWORD_HASHERS = FAST_HASHERS
    a, b = (n.name for n in fence_lab.nodes)
    now = datetime.now(UTC).timestamp()
    old = now - 3 * 86400
    both = {"time": now - 60, "node": b, "action": "off", "status": "success", "actor": a, "agent": "fence_lab",
            "message": "fenced with passwd=hunter2-secret"}
    for node in fence_lab.nodes:  # every member records the same fencing
        FenceHistory(node.root).append(both)
    FenceHistory(fence_lab.nodes[1].root).append({"time": now - 30, "node": a, "action": "reboot",
                                                  "status": "failed", "actor": b})
    FenceHistory(fence_lab.nodes[0].root).append({"time": old, "node": b, "action": "off", "status": "success",
                                                  "actor": a})
    with registered(fence_lab, settings, tmp_path / "luci") as cluster:
        client = token_client(user_with("fenceviewer", cluster, {"view"}))
        url = f"/api/v1/clusters/{cluster.name}/fence-history/"
        answer = client.get(url)
        assert answer.status_code == 200, answer.content[:300]
        body = answer.json()
        assert body["silent"] == []
        assert [(e["victim"], e["action"], e["status"]) for e in body["entries"]] == [
            (a, "reboot", "failed"), (b, "off", "success")]  # newest first; the 3-day-old one is outside 24 h
        merged = body["entries"][1]
        assert sorted(merged["recorded_on"]) == sorted([a, b]) and merged["how"] == "agent fence_lab"
        assert "hunter2-secret" not in answer.content.decode() and "passwd=********" in merged["message"]

        only_b = client.get(url, {"node": b, "since": str(old - 1)}).json()["entries"]
        assert [e["time"] for e in only_b] == [datetime.fromtimestamp(t, UTC).isoformat() for t in (now - 60, old)]
        until = client.get(url, {"since": str(old - 1), "until": str(now - 45)}).json()["entries"]
        assert [(e["victim"], e["action"]) for e in until] == [(b, "off"), (b, "off")]
        assert client.get(url, {"until": "not-a-time"}).status_code == 400
