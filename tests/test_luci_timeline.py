"""The Events tab's timeline: segments per service over a window, and the SVG layout."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from luci_web.clusters import timeline

END = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
START = END - timedelta(hours=1)


@dataclass
class Ev:
    service: str
    state: str
    owner: str
    at: datetime


def test_no_events_no_rows() -> None:
    assert timeline.segments([], START, END) == {}
    lay = timeline.layout({}, START, END)
    assert lay["rows"] == [] and lay["height"] > 0


def test_one_event_inside_the_window_runs_to_the_end() -> None:
    at = START + timedelta(minutes=30)
    segs = timeline.segments([Ev("service:web", "started", "node1", at)], START, END)
    assert [(s.start, s.end, s.state, s.owner) for s in segs["service:web"]] == [(at, END, "started", "node1")]


def test_event_before_the_window_opens_it() -> None:
    events = [Ev("service:web", "started", "node1", START - timedelta(hours=3)),
              Ev("service:web", "stopped", "", START - timedelta(hours=2)),
              Ev("service:web", "started", "node2", START + timedelta(minutes=15)),
              Ev("service:web", "failed", "", END + timedelta(minutes=1))]  # after the window: ignored
    segs = timeline.segments(events, START, END)["service:web"]
    assert [(s.start, s.end, s.state, s.owner) for s in segs] == [
        (START, START + timedelta(minutes=15), "stopped", ""),
        (START + timedelta(minutes=15), END, "started", "node2")]


def test_repeats_merge_and_services_are_separate() -> None:
    t = START + timedelta(minutes=10)
    events = [Ev("service:b", "started", "n1", t), Ev("service:b", "started", "n1", t + timedelta(minutes=5)),
              Ev("service:a", "recovering", "n2", t)]
    segs = timeline.segments(events, START, END)
    assert list(segs) == ["service:a", "service:b"]
    assert len(segs["service:b"]) == 1


def test_layout_positions_classes_and_labels() -> None:
    events = [Ev("service:web", "started", "node1", START),
              Ev("service:web", "failed", "node1", END - timedelta(seconds=10))]
    lay = timeline.layout(timeline.segments(events, START, END), START, END, tick_step=timedelta(minutes=15))
    first, second = lay["rows"][0]["bars"]
    assert first["x"] == timeline.LABEL_WIDTH
    assert first["css"] == "ok" and second["css"] == "bad" and second["fill"] == timeline.FILLS["bad"]
    assert first["label"] == "node1"  # 50 min of 760 units: fits
    assert second["label"] == ""  # 10 s: too narrow for the name
    assert abs(second["x"] + second["width"] - (timeline.LABEL_WIDTH + timeline.CHART_WIDTH)) < 1.5
    assert [t["label"] for t in lay["ticks"]] == ["11:15", "11:30", "11:45"]


def test_unknown_state_and_bad_window() -> None:
    assert timeline.state_class("weird") == "unknown"
    assert timeline.window_of("99y") == timeline.DEFAULT_WINDOW
    with pytest.raises(ValueError):
        timeline.segments([], END, START)


@pytest.mark.django_db
def test_events_view_draws_the_timeline_without_nodes(client, django_user_model) -> None:  # type: ignore[no-untyped-def]
    from django.utils import timezone

    from luci_web.access.models import ClusterGrant
    from luci_web.clusters.models import Cluster, ServiceEvent

    cluster = Cluster.objects.create(name="c1")
    now = timezone.now()
    ServiceEvent.objects.create(cluster=cluster, service="service:web", state="started", owner="node1",
                                at=now - timedelta(hours=3), reported_by="node1")
    ServiceEvent.objects.create(cluster=cluster, service="service:web", state="failed", owner="node1",
                                at=now - timedelta(minutes=20), reported_by="node2")
    viewer = django_user_model.objects.create_user("viewer", password="pw-pw-pw-pw")
    ClusterGrant.objects.create(user=viewer, cluster=cluster, view=True)
    client.force_login(viewer)
    html = client.get(f"/clusters/{cluster.pk}/events/").content.decode()
    assert 'data-state="started"' in html and 'data-state="failed"' in html  # opened by the event before the hour
    assert "tl-bad" in html and "style=" not in html
    assert "no node&#x27;s cluster manager answered" in html
    fragment = client.get(f"/clusters/{cluster.pk}/fragments/events/", {"window": "15m"}).content.decode()
    assert 'data-state="failed"' in fragment and 'data-state="started"' not in fragment
    assert "<html" not in fragment
