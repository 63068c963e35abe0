"""The History, Logs and What-if tabs against a real lab (ricci agents on 127.x, no cluster daemons): the versions
list, the semantic diff, a rollback pushed through the real task (eager Celery) that makes a new version equal to
the old one but for config_version, the nodes' logs, and the what-if view on the nodes' configuration."""
from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import pytest

from cluster_conf import ClusterConf, edit
from cluster_conf.diff import diff

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
paramiko = pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")

from ricci_agent import keys  # noqa: E402
from ricci_agent.lab import Lab, free_block, group_members  # noqa: E402


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("luci-history")
    lab = Lab(base / "lab")
    try:
        lab.up(nodes=3, first_address=free_block(3), no_daemons=True)
        yield lab, base / "luci"
    finally:
        pids = [n.pid for n in lab.nodes if n.pid] if lab.exists() else []
        try:
            lab.down(grace=3.0)
        finally:
            for pid in pids:
                if group_members(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def luci(lab_dir, settings, django_user_model, client):  # type: ignore[no-untyped-def]
    """luci pointed at the lab: its key authorised on every node, one Cluster with pinned Node rows, an admin
    logged in, Celery eager."""
    from luci_web.celery import app
    from luci_web.clusters import gateway
    from luci_web.clusters.models import Cluster, Node

    lab, home = lab_dir
    home.mkdir(exist_ok=True)
    settings.LUCI_HOME = Path(home)
    settings.CELERY_TASK_ALWAYS_EAGER = True
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    gateway.reset()
    try:
        public = gateway.luci_public_key()
        cluster = Cluster.objects.create(name="lab")
        for node in lab.nodes:
            keys.authorize(node.root, public)
            line, fingerprint = gateway.probe_host_key(node.address, node.port)
            Node.objects.create(cluster=cluster, name=node.name, address=node.address, port=node.port,
                                host_key=line, fingerprint=fingerprint)
        admin = django_user_model.objects.create_superuser("admin", "a@example.org", "pw-pw-pw-pw")
        client.force_login(admin)
        yield cluster, client, lab
    finally:
        app.conf.task_always_eager = eager
        gateway.reset()


def _push(cluster, change) -> int:  # type: ignore[no-untyped-def]
    from luci_web.clusters import configs, gateway

    current = configs.fetch(cluster)
    conf = current.conf
    with conf.transaction():
        change(conf)
    node = cluster.nodes.first()
    return int(gateway.call(node, "cluster.set_config", {"xml": conf.to_string(), "propagate": True})["new_version"])


def test_history_diff_and_rollback(luci) -> None:  # type: ignore[no-untyped-def]
    from luci_web.audit.models import AuditEntry
    from luci_web.clusters import configs
    from luci_web.clusters.models import ConfigNote, Operation

    cluster, client, _lab = luci
    first = configs.fetch(cluster).version
    second = _push(cluster, lambda c: edit.set_cluster_attrs(c, {"alias": "second"}))
    third = _push(cluster, lambda c: edit.set_cluster_attrs(c, {"alias": "third"}))
    assert third == second + 1 == first + 2

    page = client.get(f"/clusters/{cluster.pk}/history/")
    html = page.content.decode()
    assert page.status_code == 200
    for v in (first, second, third):
        assert f'data-version="{v}"' in html
    assert "current</span>" in html and f"history/{second}/rollback/" in html
    assert f"history/{third}/rollback/" not in html  # the current version is not offered

    page = client.get(f"/clusters/{cluster.pk}/history/", {"old": first, "new": third})
    html = page.content.decode()
    assert f"config_version: {first} -&gt; {third}" in html
    assert "alias: (unset) -&gt; third" in html

    # a form loaded on an older version is refused, nothing pushed
    stale = client.post(f"/clusters/{cluster.pk}/history/{first}/rollback/",
                        {"base_version": second, "confirm": "yes", "reason": "stale"})
    assert stale.status_code == 302 and not Operation.objects.exists()
    assert AuditEntry.objects.filter(action="config.rollback", result="refused").count() == 1

    answer = client.post(f"/clusters/{cluster.pk}/history/{first}/rollback/",
                         {"base_version": third, "confirm": "yes", "reason": "back to the start"})
    op = Operation.objects.get()
    assert answer.status_code == 302 and answer["Location"].endswith(f"/operations/{op.id}/")
    op.refresh_from_db()
    assert op.state == Operation.DONE, op.message
    now = configs.fetch(cluster)
    assert now.version == third + 1
    old = configs.fetch_version(cluster, first)
    assert diff(old, now.conf).to_text().splitlines() == [f"config_version: {first} -> {third + 1}"]
    note = ConfigNote.objects.get(cluster=cluster, version=third + 1)
    assert (note.author, note.reason) == ("admin", "back to the start")
    page = client.get(f"/clusters/{cluster.pk}/history/").content.decode()
    assert "back to the start" in page


def test_rollback_needs_the_config_right(luci, django_user_model) -> None:  # type: ignore[no-untyped-def]
    from django.test import Client

    from luci_web.access.models import ClusterGrant
    from luci_web.clusters import configs

    cluster, _client, _lab = luci
    viewer = django_user_model.objects.create_user("viewer", password="pw-pw-pw-pw")
    ClusterGrant.objects.create(user=viewer, cluster=cluster, view=True)
    c = Client()
    c.force_login(viewer)
    html = c.get(f"/clusters/{cluster.pk}/history/").content.decode()
    assert "rollback/" not in html
    version = configs.fetch(cluster).version
    assert c.post(f"/clusters/{cluster.pk}/history/{version}/rollback/",
                  {"base_version": version, "confirm": "yes"}).status_code == 403


def test_logs_and_a_silent_node(luci) -> None:  # type: ignore[no-untyped-def]
    cluster, client, lab = luci
    page = client.get(f"/clusters/{cluster.pk}/logs/", {"age": 3600, "tag": "ricci"})
    html = page.content.decode()
    assert page.status_code == 200
    assert "auth accepted" in html  # luci's own logins, logged by the agents
    assert all(f"<td>{n.name}</td>" in html for n in lab.nodes)
    one = client.get(f"/clusters/{cluster.pk}/logs/", {"node": lab.nodes[1].name, "tag": "ricci"}).content.decode()
    assert f"<td>{lab.nodes[1].name}</td>" in one and f"<td>{lab.nodes[0].name}</td>" not in one
    silent = cluster.nodes.get(name=lab.nodes[2].name)
    silent.port = 1  # nothing listens there
    silent.save()
    html = client.get(f"/clusters/{cluster.pk}/logs/").content.decode()
    assert f"{silent.name} did not answer" in html and f"<td>{lab.nodes[0].name}</td>" in html


def test_whatif_view_on_the_nodes_config(luci) -> None:  # type: ignore[no-untyped-def]
    from cluster_conf.model import view
    from luci_web.clusters import configs
    from rgmanager.placement import catalog_of

    cluster, client, lab = luci
    conf: ClusterConf = configs.fetch(cluster).conf
    services = [s.id for s in catalog_of(view(conf)).services]
    assert services, "the lab's configuration runs services"
    names = [n.name for n in lab.nodes]
    cluster.status = {"at": 1700000000.0, "quorum": {"quorate": True},
                      "members": [{"name": n, "online": True, "qdisk": False} for n in names],
                      "services": [{"name": s, "state": 112, "state_str": "started", "owner": names[0], "flags": 0,
                                    "last_owner": names[0], "last_transition": 1699999000.0} for s in services]}
    cluster.save()
    page = client.get(f"/clusters/{cluster.pk}/whatif/")
    assert f'name="fail" value="{names[0]}"' in page.content.decode()
    html = client.get(f"/clusters/{cluster.pk}/whatif/", {"run": "1", "fail": names[0]}).content.decode()
    assert f'data-new-owner="{names[1]}"' in html  # the ordered domain's next node takes over
    assert f"node-down {names[0]}" in html
    bad = client.get(f"/clusters/{cluster.pk}/whatif/", {"run": "1", "back": names[0]}).content.decode()
    assert "is a member already" in bad
