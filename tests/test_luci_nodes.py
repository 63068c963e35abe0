"""The console's Nodes tab: the table from a cluster's status, rights (who sees and may use which action), the
operations and audit entries the actions leave, the add-node edit, and one lab where luci makes node3 leave and
join the cluster through its agent.

The view tests need no lab: the cluster's status JSON is set by hand and its nodes' agents sit on a loopback port
where nothing listens (refused at once), so the tasks, run eagerly, fail the way an unreachable node fails.
"""
from __future__ import annotations

import socket
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from cluster_conf import ClusterConf
from luci_web.access.models import ClusterGrant
from luci_web.audit.models import AuditEntry
from luci_web.celery import app
from luci_web.clusters import gateway, operations
from luci_web.clusters.edits.nodes import add_node_edit
from luci_web.clusters.models import Cluster, Node, Operation
from luci_web.clusters.node_tasks import NodeRefused, fencers, node_action, start_node_add, start_node_delete
from luci_web.console.views.nodes import ADD_SESSION_KEY, fence_methods
from tests.conftest import SMALL_CONF

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1cnJpdG9idXJyaXRvYnVycml0b2J1cnJpdG9idXJyaQ"


def closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def member(name: str, nodeid: int, state: str, *, master: bool = False, version: int | None = 5) -> dict:
    return {"name": name, "nodeid": nodeid, "online": state == "online", "local": False,
            "rgmanager": state == "online", "master": master, "estranged": False, "qdisk": False,
            "agent": state != "unknown", "state": state, "config_version": version,
            "message": "no answer" if state == "unknown" else ""}


@pytest.fixture
def luci_home(settings, tmp_path: Path):
    settings.LUCI_HOME = tmp_path / "luci"
    gateway.reset()
    yield settings.LUCI_HOME
    gateway.reset()


@pytest.fixture
def eager():
    """Tasks queued by the views run at once, in the test (as a worker would run them)."""
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.fixture
def cluster(db, luci_home) -> Cluster:
    c = Cluster.objects.create(name="alpha", status={
        "cluster": {"name": "alpha", "id": 7, "generation": 3}, "quorum": {"quorate": True, "groupmember": True},
        "rgmanager": "running", "reported_by": "node1", "at": 1.0, "config_version": 5, "drift": False,
        "members": [member("node1", 1, "online", master=True), member("node2", 2, "online", version=4),
                    member("node3", 3, "offline")],
        "services": [], "unreachable": [], "message": ""})
    port = closed_port()
    for i in (1, 2, 3):
        Node.objects.create(cluster=c, name=f"node{i}", address="127.0.0.1", port=port, host_key=HOST_KEY,
                            fingerprint="SHA256:test")
    return c


def user_with(cluster: Cluster, name: str, **rights: bool):  # type: ignore[no-untyped-def]
    user = get_user_model().objects.create_user(name)  # no password: force_login, no hashing
    ClusterGrant.objects.create(user=user, cluster=cluster, **rights)
    return user


@pytest.fixture
def viewer(cluster):  # type: ignore[no-untyped-def]
    return user_with(cluster, "viewer", view=True)


@pytest.fixture
def operator(cluster):  # type: ignore[no-untyped-def]
    return user_with(cluster, "operator", node_cmd=True)


@pytest.fixture
def manager(cluster):  # type: ignore[no-untyped-def]
    return user_with(cluster, "manager", membership=True, config=True)


def page(client, user, cluster, name: str = "nodes"):  # type: ignore[no-untyped-def]
    client.force_login(user)
    return client.get(reverse(f"console:{name}", args=[cluster.pk]))


# -- the table ----------------------------------------------------------------------------------------------
def test_tab_shows_each_node_from_the_status(client, cluster, viewer):
    response = page(client, viewer, cluster)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-node="node1" data-state="online"' in html and 'data-node="node3" data-state="offline"' in html
    assert "RG-Master" in html and "Not a cluster member" in html
    assert html.count("data-version-differs") == 1  # node2 runs version 4 of 5
    assert f"127.0.0.1:{cluster.nodes.first().port}" in html
    assert f'data-live-cluster="{cluster.pk}"' in html
    assert reverse("console:nodes_fragment", args=[cluster.pk]) in html
    assert "The configuration could not be read" in html  # no agent answers: said, not a traceback


def test_fragment_is_the_live_table_alone(client, cluster, viewer):
    response = page(client, viewer, cluster, "nodes_fragment")
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-node="node2"' in html and "<html" not in html and "Fence methods" not in html


def test_a_viewer_sees_no_actions_and_may_take_none(client, cluster, viewer):
    html = page(client, viewer, cluster).content.decode()
    assert 'name="action"' not in html and "Add a node" not in html and "Delete" not in html
    response = client.post(reverse("console:nodes_action", args=[cluster.pk]), {"action": "leave", "node": "node3"})
    assert response.status_code == 403
    assert client.get(reverse("console:node_add", args=[cluster.pk])).status_code == 403
    assert client.post(reverse("console:node_delete", args=[cluster.pk, "node3"])).status_code == 403
    assert not Operation.objects.exists()


def test_node_cmd_gives_the_node_buttons_but_not_membership(client, cluster, operator):
    html = page(client, operator, cluster).content.decode()
    for action in ("join", "leave", "reboot", "fence"):
        assert f'name="action" value="{action}"' in html
    assert "Start the cluster" in html and "Stop the cluster" in html
    assert "Add a node" not in html and 'data-action="delete"' not in html
    assert client.get(reverse("console:node_add", args=[cluster.pk])).status_code == 403
    assert client.post(reverse("console:node_delete", args=[cluster.pk, "node3"])).status_code == 403


def test_membership_gives_add_and_delete(client, cluster, manager):
    html = page(client, manager, cluster).content.decode()
    assert "Add a node" in html and html.count('data-action="delete"') == 3
    assert 'name="action" value="leave"' not in html  # no node_cmd
    assert client.get(reverse("console:node_add", args=[cluster.pk])).status_code == 200


# -- actions: operations and audit --------------------------------------------------------------------------
def test_an_action_runs_as_an_operation_and_is_audited(client, cluster, operator, eager):
    client.force_login(operator)
    response = client.post(reverse("console:nodes_action", args=[cluster.pk]), {"action": "leave", "node": "node3"})
    op = Operation.objects.get()
    assert response.status_code == 302 and response.url == reverse("console:operation", args=[op.id])
    assert op.kind == "node_leave" and op.user == operator
    assert op.state == Operation.FAILED and op.progress["node3"]["state"] == "failed"  # nothing listens there
    entry = AuditEntry.objects.get(action="node.leave")
    assert entry.result == "failed" and entry.target == "node3" and entry.username == "operator"


def test_the_whole_cluster_is_one_operation_with_each_nodes_progress(client, cluster, operator, eager):
    client.force_login(operator)
    client.post(reverse("console:nodes_action", args=[cluster.pk]), {"action": "join", "scope": "all"})
    op = Operation.objects.get()
    assert op.kind == "nodes_join" and set(op.progress) == {"node1", "node2", "node3"}
    assert all(p["state"] == "failed" for p in op.progress.values())
    assert AuditEntry.objects.get(action="node.join").detail == {"nodes": ["node1", "node2", "node3"]}


def test_bad_requests_are_refused_audited_and_start_nothing(client, cluster, operator):
    client.force_login(operator)
    url = reverse("console:nodes_action", args=[cluster.pk])
    for data, said in [({"action": "explode", "node": "node1"}, "unknown node action"),
                       ({"action": "leave", "node": "node9"}, "does not know the node"),
                       ({"action": "fence", "node": ["node1", "node2"]}, "one node at a time"),
                       ({"action": "leave"}, "choose at least one node")]:
        response = client.post(url, data, follow=True)
        assert said in response.content.decode()
    assert not Operation.objects.exists()
    assert AuditEntry.objects.filter(result="refused").count() == 4
    # an action luci does not have is recorded as node.unknown, what was asked only in the detail, truncated
    client.post(url, {"action": "<script>" + "x" * 100, "node": "node1"})
    unknown = AuditEntry.objects.filter(action="node.unknown").order_by("id")
    assert [e.detail for e in unknown] == [{"action": "explode"}, {"action": ("<script>" + "x" * 100)[:32]}]
    assert not AuditEntry.objects.filter(action__in=["node.explode", "node.<script>"]).exists()
    assert len(unknown.last().message) < 120


def test_the_task_checks_the_right_again(cluster, operator):
    op = operations.start(operator, "node_leave", cluster, ["node3"])
    ClusterGrant.objects.filter(user=operator).update(node_cmd=False)
    assert node_action(str(op.id), "leave", "node3") == {"ok": False, "refused": True}
    op.refresh_from_db()
    assert op.state == Operation.FAILED and "may not" in op.message
    assert AuditEntry.objects.get(action="node.leave").result == "refused"


def test_fencing_is_asked_of_online_members_first_never_the_victim(cluster):
    cluster.status["members"][0]["state"] = "unknown"  # node1 does not answer
    assert [n.name for n in fencers(cluster, "node3")] == ["node2", "node1"]
    assert "node2" not in [n.name for n in fencers(cluster, "node2")]


# -- add and delete -----------------------------------------------------------------------------------------
def test_an_unreachable_new_node_is_said_next_to_its_field(client, cluster, manager):
    client.force_login(manager)
    response = client.post(reverse("console:node_add", args=[cluster.pk]),
                           {"step": "probe", "name": "node4", "address": "127.0.0.1", "port": str(closed_port()),
                            "base_version": "5"})
    html = response.content.decode()
    assert response.status_code == 200 and 'data-error="address"' in html and "cannot connect" in html
    assert not cluster.nodes.filter(name="node4").exists()


def test_the_add_form_checks_its_fields(client, cluster, manager):
    client.force_login(manager)
    html = client.post(reverse("console:node_add", args=[cluster.pk]),
                       {"step": "probe", "name": "bad name", "address": "x;y", "port": "70000",
                        "base_version": "5"}).content.decode()
    assert all(f'data-error="{f}"' in html for f in ("name", "address", "port"))
    html = client.post(reverse("console:node_add", args=[cluster.pk]),
                       {"step": "probe", "name": "node2", "port": "11111", "base_version": "5"}).content.decode()
    assert "already has a node node2" in html


def test_confirming_without_a_probe_adds_nothing(client, cluster, manager):
    client.force_login(manager)
    response = client.post(reverse("console:node_add", args=[cluster.pk]), {"step": "confirm"}, follow=True)
    assert "read the node" in response.content.decode() and cluster.nodes.count() == 3


def test_a_new_node_that_no_longer_answers_is_refused_once_audited(client, cluster, manager):
    """The confirm step: the node probed in the first step does not answer now (start_node_add probes it again):
    refused (400), audited once, nothing started, the confirmation forgotten."""
    client.force_login(manager)
    session = client.session
    session[ADD_SESSION_KEY] = {"t1": {"name": "node4", "address": "127.0.0.1", "port": closed_port(),
                                       "cluster": cluster.pk, "host_key": HOST_KEY, "fingerprint": "SHA256:test",
                                       "base_version": 5}}
    session.save()
    response = client.post(reverse("console:node_add", args=[cluster.pk]),
                           {"step": "confirm", "token": "t1", "name": "node4", "fingerprint": "SHA256:test"})
    assert response.status_code == 400 and "could not be read" in response.content.decode()
    entry = AuditEntry.objects.get(action="node.add")
    assert entry.result == "refused" and entry.target == "node4" and "could not be read" in entry.message
    assert not Operation.objects.exists() and not cluster.nodes.filter(name="node4").exists()
    assert "t1" not in client.session[ADD_SESSION_KEY]


def test_start_functions_refuse_before_starting_anything(cluster, manager):
    with pytest.raises(NodeRefused) as refused:
        start_node_add(cluster, manager, "node2", "127.0.0.1", closed_port(), "SHA256:test", base_version=5)
    assert refused.value.code == "NODE_EXISTS" and "already has a node node2" in str(refused.value)
    with pytest.raises(NodeRefused) as refused:
        start_node_add(cluster, manager, "node4", "127.0.0.1", closed_port(), "SHA256:test", base_version=5)
    assert refused.value.code == "NODE_UNREACHABLE" and list(refused.value.extra["unreachable"]) != []
    assert [e.result for e in AuditEntry.objects.filter(action="node.add")] == ["refused", "refused"]
    with pytest.raises(NodeRefused) as refused:
        start_node_delete(cluster, manager, "node9", base_version=5)
    assert refused.value.code == "NODE_NOT_FOUND"
    assert not Operation.objects.exists() and not AuditEntry.objects.filter(action="node.delete").exists()


def test_the_new_node_gets_the_next_id_its_port_and_the_shared_fence_shape():
    conf = ClusterConf.from_string(SMALL_CONF)
    with conf.transaction():
        add_node_edit("n4", 11112)(conf)
    node = conf.root.find("clusternodes/clusternode[@name='n4']")
    assert node.get("nodeid") == "4" and node.get("ricci_port") == "11112"
    # the others' port parameter is 1, 2, 3: not a shape a new node can copy (no guessing): no fence method
    assert node.find("fence") is None


def test_a_fence_shape_naming_each_node_is_copied_with_the_new_name():
    conf = ClusterConf.from_string(SMALL_CONF.replace('port="1"', 'port="n1"').replace('port="2"', 'port="n2"')
                                   .replace('port="3"', 'port="n3"'))
    with conf.transaction():
        add_node_edit("n4", 11111)(conf)
    node = conf.root.find("clusternodes/clusternode[@name='n4']")
    assert node.get("ricci_port") is None
    device = node.find("fence/method[@name='power']/device")
    assert device.get("name") == "apc" and device.get("port") == "n4"


def test_fence_methods_never_show_a_secret():
    conf = ClusterConf.from_string(SMALL_CONF.replace('<device name="apc" port="1"/>',
                                                      '<device name="apc" port="1" passwd="hunter2"/>'))
    shown = fence_methods(conf)
    assert shown["n1"][0]["name"] == "power"
    device = shown["n1"][0]["devices"][0]
    assert device["agent"] == "fence_apc" and ("port", "1") in device["params"]
    assert ("passwd", "(hidden)") in device["params"] and "hunter2" not in repr(shown)


# -- one lab: luci makes node3 leave, join and restart its daemons through its agent -----------------------
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_node3_leaves_joins_and_reboots_through_luci(tmp_path, luci_home, client):
    from luci_web.clusters.status import read_status
    from ricci_agent import keys
    from ricci_agent.lab import Lab, free_block, lab_cluster_conf, node_names
    from tests.ricci_fixtures import tear_down, wait_until

    lab = Lab(tmp_path / "lab")
    names = node_names(3)
    try:
        lab.create(names, "labcluster", free_block(3), 11111,
                   config=lab_cluster_conf("labcluster", names, 11111, lab.directory))
        lab.up()
        cluster = Cluster.objects.create(name="labcluster")
        for name in names:
            node = lab.node(name)
            keys.authorize(node.root, gateway.luci_public_key())
            line, fingerprint = gateway.probe_host_key(node.address, node.port)
            Node.objects.create(cluster=cluster, name=name, address=node.address, port=node.port, host_key=line,
                                fingerprint=fingerprint)
        nodes = list(cluster.nodes.all())

        def states() -> dict[str, str]:
            return {m["name"]: m["state"] for m in read_status(nodes, "labcluster")["members"]}

        wait_until("every node online", lambda: set(states().values()) == {"online"}, timeout=40)
        admin = get_user_model().objects.create_superuser("root", "root@example.org", None)
        steps = (("leave", "offline", "left"), ("join", "online", "joined"), ("reboot", "online", "rebooted"))
        for action, expected, word in steps:
            op = operations.start(admin, f"node_{action}", cluster, ["node3"])
            assert node_action(str(op.id), action, "node3")["ok"]
            op.refresh_from_db()
            assert op.state == Operation.DONE and op.progress["node3"]["state"] == word, op.message
            wait_until(f"node3 {expected}", lambda e=expected: states().get("node3") == e, timeout=40)
            assert AuditEntry.objects.filter(action=f"node.{action}", result="ok", target="node3").exists()
        cluster.status = read_status(nodes, "labcluster")
        cluster.save()
        client.force_login(admin)
        html = client.get(reverse("console:nodes", args=[cluster.pk])).content.decode()
        assert 'data-node="node3" data-state="online"' in html
        assert 'data-fence-node="node3"' in html and "port=node3" in html  # its fence method, read from the nodes
    finally:
        gateway.reset()
        tear_down(lab)
