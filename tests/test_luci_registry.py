"""luci's cluster registry on real ricci agents over loopback: discover a lab cluster through one node and add it,
refuse a host key that is not the confirmed one, refuse a user without the right, remove a cluster from luci
(nodes untouched), the add wizard through its views, and create a cluster on bare agents (no configuration yet)
with the create task run eagerly up to its started cluster daemons."""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import PermissionDenied
from django.urls import reverse

paramiko = pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")

from luci_web.access.models import ClusterGrant  # noqa: E402
from luci_web.audit.models import AuditEntry  # noqa: E402
from luci_web.celery import app  # noqa: E402
from luci_web.clusters import gateway, registry  # noqa: E402
from luci_web.clusters.models import Cluster, Node, Operation  # noqa: E402
from luci_web.clusters.registry import NodeCandidate, RegistryError  # noqa: E402
from ricci_agent import keys  # noqa: E402
from ricci_agent.lab import (  # noqa: E402
    Lab,
    LabNode,
    free_block,
    hosts_file,
    make_root,
    node_address,
    ricci_json,
    spawn_agent,
    stop_nodes,
)
from tests.ricci_fixtures import running_lab, wait_until  # noqa: E402


@pytest.fixture
def luci_home(settings, tmp_path: Path) -> Iterator[Path]:
    settings.LUCI_HOME = tmp_path / "luci"
    gateway.reset()
    yield settings.LUCI_HOME
    gateway.reset()


@pytest.fixture
def lab(tmp_path: Path, luci_home: Path) -> Iterator[Lab]:
    for lab in running_lab(tmp_path, ["node1", "node2"]):
        for node in lab.nodes:
            keys.authorize(node.root, gateway.luci_public_key())
        yield lab


@pytest.fixture
def admin(db):  # type: ignore[no-untyped-def]
    return get_user_model().objects.create_superuser("root", password="pw-root")


def seed(lab: Lab) -> tuple[str, int, str]:
    node = lab.node("node1")
    key, shown = registry.probe(node.address, node.port)
    assert shown == node.fingerprint
    return node.address, node.port, key


@pytest.mark.django_db
def test_discover_and_add_an_existing_cluster(lab: Lab, admin) -> None:  # type: ignore[no-untyped-def]
    found = registry.discover(*seed(lab))
    assert found.cluster_name == "labcl" and found.config_version == 1
    assert {n.name: (n.address, n.port, n.fingerprint) for n in found.nodes} == {
        n.name: (n.address, n.port, n.fingerprint) for n in lab.nodes}
    cluster = registry.add_existing(admin, found.cluster_name, found.nodes)
    assert sorted(cluster.nodes.values_list("name", flat=True)) == ["node1", "node2"]
    node2 = cluster.nodes.get(name="node2")
    assert node2.host_key.split()[:2] == keys.host_public_key(lab.node("node2").root).split()[:2]
    assert gateway.call(node2, "hello")["node_name"] == "node2"  # reachable under the pinned key
    assert AuditEntry.objects.filter(action="cluster.add", cluster_name="labcl", result="ok").count() == 1
    with pytest.raises(RegistryError, match="already in luci"):
        registry.add_existing(admin, "labcl", found.nodes)


@pytest.mark.django_db
def test_a_host_key_other_than_the_confirmed_one_is_refused(lab: Lab, admin) -> None:  # type: ignore[no-untyped-def]
    node1 = lab.node("node1")
    wrong = keys.host_public_key(lab.node("node2").root)
    with pytest.raises(RegistryError, match="HOST KEY CHANGED"):
        registry.discover(node1.address, node1.port, wrong)


@pytest.mark.django_db
def test_a_host_key_that_changes_between_wizard_steps_is_refused(lab: Lab, admin, client) -> None:  # type: ignore[no-untyped-def]
    client.force_login(admin)
    node1 = lab.node("node1")
    url = reverse("console:cluster_add")
    page = client.get(url)
    assert gateway.luci_public_key() in page.content.decode()
    client.post(url, {"action": "probe", "address": node1.address, "port": node1.port})
    page = client.get(url).content.decode()
    assert node1.fingerprint in page and 'value="confirm"' in page
    session = client.session
    session[registry_state()] = {**session[registry_state()], "fingerprint": lab.node("node2").fingerprint}
    session.save()
    response = client.post(url, {"action": "confirm"}, follow=True)
    html = response.content.decode()
    assert "now offers another host key" in html and "nothing was saved" in html
    assert not Cluster.objects.exists()
    # possibly a man in the middle: audited, naming the address, with fingerprints but never a key
    entry = AuditEntry.objects.get(action="cluster.add")
    assert entry.result == "refused" and node1.address in entry.message and entry.username == "root"
    assert entry.detail["offered"] == node1.fingerprint
    assert "ssh-" not in entry.message and "ssh-" not in repr(entry.detail)


def registry_state() -> str:
    from luci_web.console.views.registry import ADD_STATE

    return ADD_STATE


@pytest.mark.django_db
def test_the_add_wizard_adds_the_confirmed_members(lab: Lab, admin, client) -> None:  # type: ignore[no-untyped-def]
    client.force_login(admin)
    node1 = lab.node("node1")
    url = reverse("console:cluster_add")
    client.post(url, {"action": "probe", "address": node1.address, "port": str(node1.port)})
    client.post(url, {"action": "confirm"})
    page = client.get(url).content.decode()
    assert lab.node("node2").fingerprint in page and 'name="node" value="node2"' in page
    response = client.post(url, {"action": "add", "node": ["node1"]})
    cluster = Cluster.objects.get(name="labcl")
    assert response.status_code == 302 and response["Location"] == reverse("console:cluster", args=[cluster.pk])
    assert list(cluster.nodes.values_list("name", flat=True)) == ["node1"]  # node2 was not confirmed


@pytest.mark.django_db
def test_without_import_clusters_nothing_is_added(lab: Lab, client) -> None:  # type: ignore[no-untyped-def]
    user = get_user_model().objects.create_user("op", password="pw-op")
    found = registry.discover(*seed(lab))
    with pytest.raises(PermissionDenied):
        registry.add_existing(user, found.cluster_name, found.nodes)
    assert not Cluster.objects.exists()
    assert AuditEntry.objects.get(action="cluster.add").result == "refused"
    client.force_login(user)
    assert client.get(reverse("console:cluster_add")).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="import_clusters"))
    user = get_user_model().objects.get(pk=user.pk)
    assert registry.add_existing(user, found.cluster_name, found.nodes).name == "labcl"


@pytest.mark.django_db
def test_remove_forgets_the_cluster_and_leaves_the_nodes(lab: Lab, admin, client) -> None:  # type: ignore[no-untyped-def]
    cluster = registry.add_existing(admin, "labcl", registry.discover(*seed(lab)).nodes)
    viewer = get_user_model().objects.create_user("viewer", password="pw-viewer")
    ClusterGrant.objects.create(user=viewer, cluster=cluster, view=True)
    with pytest.raises(PermissionDenied):
        registry.remove(viewer, cluster)
    client.force_login(viewer)
    assert client.post(reverse("console:cluster_remove", args=[cluster.pk])).status_code == 403
    before = lab.node("node1").config_path.read_bytes()
    client.force_login(admin)
    assert "Remove from luci" in client.get(reverse("console:cluster_remove", args=[cluster.pk])).content.decode()
    response = client.post(reverse("console:cluster_remove", args=[cluster.pk]))
    assert response.status_code == 302
    assert not Cluster.objects.exists() and not Node.objects.exists()
    assert lab.node("node1").config_path.read_bytes() == before
    with lab.client() as c:
        assert c.call(*lab.node("node1").endpoint, "hello")["cluster_name"] == "labcl"
    assert [e.result for e in AuditEntry.objects.filter(action="cluster.remove").order_by("id")] == ["refused", "ok"]


def test_node_lines_and_the_first_config() -> None:
    nodes = registry.parse_node_lines("a 127.0.0.2\n# comment\n\nb 127.0.0.3:11112\n")
    assert [(n.name, n.address, n.port) for n in nodes] == [("a", "127.0.0.2", 11111), ("b", "127.0.0.3", 11112)]
    for bad, why in [("a", "expected"), ("a 1.2.3.4\na 1.2.3.5", "twice"), ("a 1.2.3.4:0", "port"), ("", "at least")]:
        with pytest.raises(RegistryError, match=why):
            registry.parse_node_lines(bad)
    xml = registry.first_config("two", nodes)
    assert '<cman two_node="1" expected_votes="1"/>' in xml
    assert 'name="b" votes="1" nodeid="2" ricci_port="11112"' in xml or ('ricci_port="11112"' in xml
                                                                         and 'nodeid="2"' in xml)
    assert 'ricci_port' not in xml.split('name="b"')[0]
    with pytest.raises(RegistryError, match="invalid cluster name"):
        registry.check_cluster_name("a-name-that-is-too-long")


@pytest.mark.django_db
def test_the_name_import_is_reserved(luci_home: Path) -> None:
    """/api/v1/clusters/import/ would shadow a cluster named import: neither created nor imported."""
    with pytest.raises(RegistryError, match="reserved") as refused:
        registry.check_cluster_name(" import ")
    assert "\n" not in str(refused.value)
    assert registry.check_cluster_name("imports") == "imports"
    admin = get_user_model().objects.create_superuser("root", password="pw-root")
    with pytest.raises(RegistryError, match="reserved"):
        registry.create_cluster(admin, "import", [NodeCandidate("a", "127.0.0.1", 1, "x", "y")])
    with pytest.raises(RegistryError, match="reserved"):
        registry.save_cluster(admin, "import", [NodeCandidate("a", "127.0.0.1", 1, "x", "y")])
    assert not Cluster.objects.exists() and not Operation.objects.exists()
    assert AuditEntry.objects.get(action="cluster.create").result == "refused"


# -- create ------------------------------------------------------------------------------------------------
@pytest.fixture
def bare_nodes(tmp_path: Path, luci_home: Path) -> Iterator[list[LabNode]]:
    """Two agents with keys, etc/hosts and luci's key authorised, but no cluster.conf, no cluster key and no
    trust between them: machines where only ricci was installed and luci authorised."""
    first = free_block(2)
    nodes = [LabNode(f"new{i}", i, node_address(i - 1, first), 11111, tmp_path / "bare" / f"new{i}")
             for i in (1, 2)]
    for node in nodes:
        make_root(node.root)
        (node.root / "etc/hosts").write_text(hosts_file(nodes))
        (node.root / "etc/ricci/ricci.json").write_text(ricci_json(node))
        keys.ensure_host_key(node.root)
        keys.ensure_client_key(node.root)
        keys.authorize(node.root, gateway.luci_public_key())
    started = [LabNode(**{**n.to_json(), "root": n.root, "pid": spawn_agent(n)}) for n in nodes]
    try:
        for node in started:
            wait_until(f"{node.name} listening", lambda node=node: _probes(node), timeout=20)
        yield started
    finally:
        stop_nodes(started)


def _probes(node: LabNode) -> bool:
    with contextlib.suppress(RegistryError):
        registry.probe(node.address, node.port)
        return True
    return False


@pytest.fixture
def eager():  # type: ignore[no-untyped-def]
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.mark.slow
@pytest.mark.django_db
def test_create_a_cluster_on_bare_agents(bare_nodes: list[LabNode], admin, eager) -> None:  # type: ignore[no-untyped-def]
    candidates = registry.probe_all([NodeCandidate(n.name, n.address, n.port) for n in bare_nodes])
    assert all(c.fingerprint for c in candidates)
    op = registry.create_cluster(admin, "fresh", candidates)
    op = Operation.objects.get(pk=op.pk)
    assert op.state == Operation.DONE, (op.message, op.progress)
    assert {n: p["state"] for n, p in op.progress.items()} == {"new1": "done", "new2": "done"}
    cluster = Cluster.objects.get(name="fresh")
    assert op.cluster_id == cluster.pk and cluster.nodes.count() == 2
    first, second = (n.root for n in bare_nodes)
    assert (first / "etc/cluster/authkey").read_bytes() == (second / "etc/cluster/authkey").read_bytes()
    assert oct(os.stat(second / "etc/cluster/authkey").st_mode & 0o777) == "0o600"
    assert (first / "etc/cluster/cluster.conf").read_bytes() == (second / "etc/cluster/cluster.conf").read_bytes()
    assert b'two_node="1"' in (second / "etc/cluster/cluster.conf").read_bytes()
    # every node trusts every other: node 2's client key is authorised on node 1 and node 1's host key pinned
    assert keys.load_authorized_keys(first).find(*keys.ensure_client_key(second).split()[:2]) is not None
    assert keys.known_host_key(second, "new1", 11111) is not None
    status = gateway.call(cluster.nodes.get(name="new1"), "cman.status")
    assert status["running"] is True
    assert AuditEntry.objects.get(action="cluster.create").result == "ok"
    # a node that is in a cluster already cannot form a new one
    again = registry.create_cluster(admin, "other", candidates)
    again = Operation.objects.get(pk=again.pk)
    assert again.state == Operation.FAILED and "already in cluster fresh" in again.message
    for node in cluster.nodes.all():
        gateway.call(node, "node.stop", timeout=60)


@pytest.mark.django_db
def test_create_needs_the_right(luci_home: Path) -> None:
    user = get_user_model().objects.create_user("op", password="pw-op")
    with pytest.raises(PermissionDenied):
        registry.create_cluster(user, "fresh", [NodeCandidate("a", "127.0.0.1", 1, "x", "y")])
    assert not Operation.objects.exists()
    assert AuditEntry.objects.get(action="cluster.create").result == "refused"


def test_a_probe_turned_away_by_the_agents_unauthenticated_limit_is_tried_again(lab: Lab) -> None:
    """An agent admits MAX_UNAUTHENTICATED_PER_SOURCE connections from one address that have not authenticated
    yet; a probe made while they are taken is closed before the banner. The gateway tries again briefly, so a
    wizard that probes several times in a row does not fail when the agent is slow to count closed probes out."""
    import socket
    import threading

    from ricci_agent.server import MAX_UNAUTHENTICATED_PER_SOURCE

    node = lab.node("node1")
    held = [socket.create_connection((node.address, node.port), timeout=3)
            for _ in range(MAX_UNAUTHENTICATED_PER_SOURCE)]
    try:
        for conn in held:
            conn.recv(64)  # the agent's banner: the connection is counted as unauthenticated
        release = threading.Timer(0.2, lambda: [c.close() for c in held])
        release.start()
        line, fingerprint = gateway.probe_host_key(node.address, node.port)
        release.join()
    finally:
        for conn in held:
            conn.close()
    assert fingerprint == node.fingerprint and line.startswith("ssh-ed25519 ")
