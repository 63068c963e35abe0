"""The REST API's clusters (create, import, remove) and nodes (list, one, join/leave/fence/reboot, add, delete) on
one real three-node lab with its cluster daemons running (loopback only): node3 leaves and joins through the API
as tasks that finish done; the lab is imported with the fingerprints its agents offer (Node rows pinned) and
refused with a wrong one (nothing saved); a cluster is removed (gone, audited, nodes untouched); node3 is deleted
from the cluster and added back (the nodes' cluster.conf follows); rights: view alone is 403 on writes, no grant
is 404; every refusal is an application/problem+json body with its code."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")

from cluster_conf import ClusterConf
from luci_web.audit.models import AuditEntry
from luci_web.clusters.models import Cluster, Node, Operation
from tests.luci_fixtures import registered, token_client, user_with

FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # tests only: a PBKDF2 user costs ~1 s here
PROBLEM = "application/problem+json"
CLUSTERS = "/api/v1/clusters/"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Three nodes with their cluster daemons running (no services)."""
    from tests.ricci_fixtures import lab_up

    with lab_up(tmp_path_factory.mktemp("apinodes") / "lab", 3, services=False) as lab:
        yield lab


@pytest.fixture
def fast(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = FAST_HASHERS


@pytest.fixture
def cluster(lab, settings, tmp_path: Path, db, fast) -> Iterator[Cluster]:  # type: ignore[no-untyped-def]
    with registered(lab, settings, tmp_path / "luci") as cluster:
        yield cluster


@pytest.fixture
def authorised(lab, settings, tmp_path: Path, db, fast) -> Iterator[None]:  # type: ignore[no-untyped-def]
    """luci's key authorised on the lab's nodes, but the lab not in luci (for importing it)."""
    from luci_web.celery import app
    from luci_web.clusters import gateway
    from ricci_agent import keys

    settings.LUCI_HOME = tmp_path / "luci"
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    gateway.reset()
    try:
        for node in lab.nodes:
            keys.authorize(node.root, gateway.luci_public_key())
        yield
    finally:
        app.conf.task_always_eager = eager
        gateway.reset()


def problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:400])
    assert response["Content-Type"].startswith(PROBLEM)
    body = json.loads(response.content)
    assert body["status"] == status and "Traceback" not in response.content.decode()
    if code is not None:
        assert body["code"] == code, body
    return body


def states(cluster: Cluster) -> dict[str, str]:
    from luci_web.clusters.status import read_status

    return {m["name"]: m["state"] for m in read_status(list(cluster.nodes.all()), cluster.name)["members"]}


def wait_state(cluster: Cluster, node: str, state: str) -> None:
    from tests.ricci_fixtures import wait_until

    wait_until(f"{node} {state}", lambda: states(cluster).get(node) == state, timeout=45, step=0.3)


def versions(lab: Any) -> list[int]:
    return [ClusterConf.load(n.config_path).config_version for n in lab.nodes]


def finished(client: Any, response: Any) -> dict[str, Any]:
    """The task a 202 names, read back through its Location (tasks run eagerly: it is finished)."""
    assert response.status_code == 202, response.content[:400]
    task = client.get(response["Location"])
    assert task.status_code == 200
    return task.json()


# -- nodes ----------------------------------------------------------------------------------------------------------
def test_nodes_list_and_one_node(lab, cluster) -> None:  # type: ignore[no-untyped-def]
    from luci_web.clusters.status import read_status

    wait_state(cluster, "node3", "online")
    cluster.status = read_status(list(cluster.nodes.all()), cluster.name)
    cluster.save()
    client = token_client(user_with("viewer", cluster, ["view"]))
    response = client.get(f"{CLUSTERS}{cluster.name}/nodes/")
    assert response.status_code == 200
    rows = {row["name"]: row for row in response.json()}
    assert set(rows) == {n.name for n in lab.nodes}
    for node in lab.nodes:
        row = rows[node.name]
        assert (row["address"], row["port"], row["fingerprint"]) == (node.address, node.port, node.fingerprint)
        assert row["state"] == "online" and row["online"] is True and row["config_version"] == versions(lab)[0]
    assert sum(row["master"] for row in rows.values()) == 1
    one = client.get(rows["node2"]["url"])
    assert one.status_code == 200 and one.json() == rows["node2"]
    problem(client.get(f"{CLUSTERS}{cluster.name}/nodes/nodeX/"), 404, "NODE_NOT_FOUND")


def test_node3_leaves_then_joins_through_the_api(lab, cluster) -> None:  # type: ignore[no-untyped-def]
    wait_state(cluster, "node3", "online")
    client = token_client(user_with("operator", cluster, ["node_cmd"]))
    for action, state, word in (("leave", "offline", "left"), ("join", "online", "joined")):
        response = client.post(f"{CLUSTERS}{cluster.name}/nodes/node3/{action}/")
        task = finished(client, response)
        assert task["kind"] == f"node_{action}" and task["state"] == "done", task
        assert task["progress"]["node3"]["state"] == word
        wait_state(cluster, "node3", state)
        assert AuditEntry.objects.filter(action=f"node.{action}", target="node3", result="ok",
                                         username="operator").exists()


def test_node_actions_need_node_cmd_and_a_visible_cluster(lab, cluster) -> None:  # type: ignore[no-untyped-def]
    viewer = token_client(user_with("viewer", cluster, ["view"]))
    body = problem(viewer.post(f"{CLUSTERS}{cluster.name}/nodes/node3/leave/"), 403, "PERMISSION_DENIED")
    assert body["instance"] == f"{CLUSTERS}{cluster.name}/nodes/node3/leave/"
    problem(viewer.delete(f"{CLUSTERS}{cluster.name}/nodes/node3/"), 403, "PERMISSION_DENIED")
    problem(viewer.post(f"{CLUSTERS}{cluster.name}/nodes/", {"name": "node4"}, format="json"), 403)
    stranger = token_client(user_with("stranger"))
    problem(stranger.post(f"{CLUSTERS}{cluster.name}/nodes/node3/leave/"), 404, "NOT_FOUND")
    problem(stranger.get(f"{CLUSTERS}{cluster.name}/nodes/"), 404, "NOT_FOUND")
    assert not Operation.objects.exists()
    # node_cmd, but asked something luci cannot do: refused, audited, nothing started
    operator = token_client(user_with("operator", cluster, ["node_cmd"]))
    problem(operator.post(f"{CLUSTERS}{cluster.name}/nodes/node3/explode/"), 404, "NOT_FOUND")
    problem(operator.post(f"{CLUSTERS}{cluster.name}/nodes/node9/leave/"), 404, "NODE_NOT_FOUND")
    assert not Operation.objects.exists()
    problem(operator.post(f"{CLUSTERS}{cluster.name}/nodes/node3/%3Cscript%3E{'x' * 80}/"), 404, "NOT_FOUND")
    assert not Operation.objects.exists()
    refused = AuditEntry.objects.filter(result="refused", username="operator")
    assert {(e.action, e.target) for e in refused} == {("node.unknown", "node3"), ("node.leave", "node9")}
    # what the URL asked is in the detail only, truncated: never an audit action named after it
    assert sorted(e.detail["action"] for e in refused.filter(action="node.unknown")) == [
        "<script>" + "x" * 24, "explode"]
    # membership is its own right
    problem(operator.delete(f"{CLUSTERS}{cluster.name}/nodes/node3/"), 403, "PERMISSION_DENIED")


# -- import, remove, create -------------------------------------------------------------------------------------------
def test_import_with_the_offered_fingerprints_pins_every_node(lab, authorised) -> None:  # type: ignore[no-untyped-def]
    client = token_client(user_with("importer", global_rights=["import_clusters"]))
    seed = lab.nodes[0]
    url = f"{CLUSTERS}import/"
    # no fingerprint: the seed's offered one comes back, nothing is saved
    body = problem(client.post(url, {"nodes": [{"address": seed.address}]}, format="json"), 409,
                   "FINGERPRINT_REQUIRED")
    assert body["fingerprints"] == {seed.address: seed.fingerprint}
    # the seed confirmed: every member's offered fingerprint comes back
    given = [{"address": seed.address, "fingerprint": seed.fingerprint}]
    body = problem(client.post(url, {"nodes": given}, format="json"), 409, "FINGERPRINT_REQUIRED")
    assert body["fingerprints"] == {n.address: n.fingerprint for n in lab.nodes}
    # one wrong fingerprint: refused, nothing saved
    wrong = [{"address": n.address, "fingerprint": n.fingerprint} for n in lab.nodes]
    wrong[2]["fingerprint"] = lab.nodes[0].fingerprint
    body = problem(client.post(url, {"nodes": wrong}, format="json"), 409, "FINGERPRINT_MISMATCH")
    assert body["fingerprints"][lab.nodes[2].address] == lab.nodes[2].fingerprint
    assert not Cluster.objects.exists() and not Node.objects.exists()
    # possibly a man in the middle: audited as refused, naming the address, fingerprints only (never a key)
    entry = AuditEntry.objects.get(action="cluster.add")
    assert entry.result == "refused" and entry.username == "importer" and entry.cluster_name == lab.cluster_name
    assert lab.nodes[2].address in entry.message and lab.nodes[2].fingerprint in entry.message
    assert "ssh-" not in entry.message and "ssh-" not in json.dumps(entry.detail)
    # a wrong seed fingerprint is refused (and audited) before the seed is asked anything
    seed_wrong = [{"address": seed.address, "fingerprint": lab.nodes[1].fingerprint}]
    problem(client.post(url, {"nodes": seed_wrong}, format="json"), 409, "FINGERPRINT_MISMATCH")
    assert AuditEntry.objects.filter(action="cluster.add", result="refused").count() == 2
    # all confirmed: saved with the probed host keys pinned
    right = [{"address": n.address, "port": n.port, "fingerprint": n.fingerprint} for n in lab.nodes]
    response = client.post(url, {"nodes": right}, format="json")
    assert response.status_code == 201, response.content[:400]
    made = response.json()
    assert made["name"] == lab.cluster_name and made["left_out"] == {}
    assert response["Location"] == f"{CLUSTERS}{lab.cluster_name}/"
    pinned = {n.name: (n.address, n.port, n.fingerprint) for n in Node.objects.filter(cluster__name=lab.cluster_name)}
    assert pinned == {n.name: (n.address, n.port, n.fingerprint) for n in lab.nodes}
    assert all(n.host_key for n in Node.objects.all())
    entry = AuditEntry.objects.get(action="cluster.add", result="ok")
    assert entry.username == "importer" and entry.cluster_name == lab.cluster_name
    # a second import of the same cluster is refused
    body = problem(client.post(url, {"nodes": right}, format="json"), 409, "CLUSTER_EXISTS")
    assert body["detail"] == "a cluster with this name is already in luci"
    assert Cluster.objects.count() == 1


def test_import_needs_its_right(lab, authorised) -> None:  # type: ignore[no-untyped-def]
    client = token_client(user_with("nobody"))
    seed = lab.nodes[0]
    problem(client.post(f"{CLUSTERS}import/", {"nodes": [{"address": seed.address,
                                                          "fingerprint": seed.fingerprint}]}, format="json"),
            403, "PERMISSION_DENIED")
    problem(client.post(f"{CLUSTERS}import/", {"nodes": []}, format="json"), 403)
    assert not Cluster.objects.exists()


def test_bad_import_bodies_are_400(lab, authorised) -> None:  # type: ignore[no-untyped-def]
    client = token_client(user_with("importer", global_rights=["import_clusters"]))
    for body in ({"nodes": []}, {"nodes": [{"address": "bad address!"}]}, {"nodes": [{"address": "x", "port": 0}]},
                 {}):
        problem(client.post(f"{CLUSTERS}import/", body, format="json"), 400, "BAD_REQUEST")


def test_remove_forgets_the_cluster_and_leaves_its_nodes(lab, cluster) -> None:  # type: ignore[no-untyped-def]
    from luci_web.clusters import gateway

    viewer = token_client(user_with("viewer", cluster, ["view"]))
    problem(viewer.delete(f"{CLUSTERS}{cluster.name}/"), 403, "PERMISSION_DENIED")
    problem(token_client(user_with("stranger")).delete(f"{CLUSTERS}{cluster.name}/"), 404, "NOT_FOUND")
    assert Cluster.objects.filter(name=cluster.name).exists()
    node = cluster.nodes.first()
    remover = token_client(user_with("remover", cluster, ["remove"]))
    response = remover.delete(f"{CLUSTERS}{cluster.name}/")
    assert response.status_code == 204
    assert not Cluster.objects.filter(name=lab.cluster_name).exists() and not Node.objects.exists()
    entry = AuditEntry.objects.get(action="cluster.remove")
    assert entry.result == "ok" and entry.username == "remover" and entry.cluster_name == lab.cluster_name
    problem(remover.get(f"{CLUSTERS}{lab.cluster_name}/"), 404, "NOT_FOUND")
    assert gateway.call(node, "hello")["cluster_name"] == lab.cluster_name  # the node was not changed


def test_create_confirms_every_fingerprint_first(lab, authorised) -> None:  # type: ignore[no-untyped-def]
    client = token_client(user_with("creator", global_rights=["create_clusters"]))
    nodes = [{"name": f"new{i}", "address": n.address, "port": n.port} for i, n in enumerate(lab.nodes[:2], 1)]
    body = problem(client.post(CLUSTERS, {"name": "fresh", "nodes": nodes}, format="json"), 409,
                   "FINGERPRINT_REQUIRED")
    assert body["fingerprints"] == {n.address: n.fingerprint for n in lab.nodes[:2]}
    nodes[0]["fingerprint"], nodes[1]["fingerprint"] = lab.nodes[0].fingerprint, lab.nodes[0].fingerprint
    problem(client.post(CLUSTERS, {"name": "fresh", "nodes": nodes}, format="json"), 409, "FINGERPRINT_MISMATCH")
    assert not Operation.objects.exists() and not Cluster.objects.exists()
    entry = AuditEntry.objects.get(action="cluster.create")
    assert entry.result == "refused" and entry.cluster_name == "fresh" and lab.nodes[1].address in entry.message
    problem(client.post(CLUSTERS, {"name": "bad name", "nodes": nodes}, format="json"), 400, "BAD_REQUEST")
    twice = [nodes[0], {**nodes[0], "name": "other"}]
    problem(client.post(CLUSTERS, {"name": "fresh", "nodes": twice}, format="json"), 400, "BAD_REQUEST")
    viewer = token_client(user_with("viewer"))
    problem(viewer.post(CLUSTERS, {"name": "fresh", "nodes": nodes}, format="json"), 403, "PERMISSION_DENIED")


def test_create_starts_the_task_and_a_node_already_in_a_cluster_fails_it(lab, authorised) -> None:  # type: ignore[no-untyped-def]
    """The lab's agents hold a configuration already: the task starts (202) and fails without touching them."""
    client = token_client(user_with("creator", global_rights=["create_clusters"]))
    nodes = [{"name": f"new{i}", "address": n.address, "port": n.port, "fingerprint": n.fingerprint}
             for i, n in enumerate(lab.nodes[:2], 1)]
    before = versions(lab)
    task = finished(client, client.post(CLUSTERS, {"name": "fresh", "nodes": nodes}, format="json"))
    assert task["kind"] == "create_cluster" and task["cluster"] == "fresh"
    assert task["state"] == "failed" and "already in cluster" in task["message"], task
    assert not Cluster.objects.exists() and versions(lab) == before
    assert AuditEntry.objects.filter(action="cluster.create", result="failed").exists()


def closed_port() -> int:
    """A loopback port nothing listens on (a probe there is refused at once)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_create_refuses_what_needs_no_node_before_probing(db, fast) -> None:  # type: ignore[no-untyped-def]
    """The name, a cluster already in luci and the lab directory are checked before any node is probed: with a
    node on a closed port each answer is the refusal (400/409/422), not 503 NODE_UNREACHABLE."""
    Cluster.objects.create(name="taken")
    client = token_client(user_with("creator", global_rights=["create_clusters"]))
    nodes = [{"name": "n1", "address": "127.0.0.1", "port": closed_port(), "fingerprint": "SHA256:x"}]
    problem(client.post(CLUSTERS, {"name": "bad name", "nodes": nodes}, format="json"), 400, "BAD_REQUEST")
    body = problem(client.post(CLUSTERS, {"name": "import", "nodes": nodes}, format="json"), 400, "BAD_REQUEST")
    assert "reserved" in body["detail"] and "\n" not in body["detail"]
    body = problem(client.post(CLUSTERS, {"name": "taken", "nodes": nodes}, format="json"), 409, "CLUSTER_EXISTS")
    assert body["detail"] == "a cluster with this name is already in luci"
    body = problem(client.post(CLUSTERS, {"name": "fresh", "nodes": nodes, "lab_dir": "/tmp"}, format="json"), 422,
                   "CLUSTER_REFUSED")
    assert "Luci Administrator" in body["detail"]
    assert [e.result for e in AuditEntry.objects.filter(action="cluster.create")] == ["refused", "refused"]
    # the same request with nothing to refuse does probe: the node is unreachable
    problem(client.post(CLUSTERS, {"name": "fresh", "nodes": nodes}, format="json"), 503, "NODE_UNREACHABLE")
    assert not Operation.objects.exists() and list(Cluster.objects.values_list("name", flat=True)) == ["taken"]


# -- membership: node3 deleted from the cluster, then added back -------------------------------------------------------
def test_delete_then_add_node3(lab, cluster) -> None:  # type: ignore[no-untyped-def]
    node3 = lab.node("node3")
    client = token_client(user_with("manager", cluster, ["membership"]))
    base = versions(lab)[0]
    problem(client.delete(f"{CLUSTERS}{cluster.name}/nodes/node3/", HTTP_IF_MATCH=f'"{base - 1}"'), 412,
            "CONFIG_CONFLICT")
    task = finished(client, client.delete(f"{CLUSTERS}{cluster.name}/nodes/node3/", HTTP_IF_MATCH=f'"{base}"'))
    assert task["kind"] == "node_delete" and task["state"] == "done", task
    assert not cluster.nodes.filter(name="node3").exists()
    others = [n for n in lab.nodes if n.name != "node3"]
    assert {ClusterConf.load(n.config_path).config_version for n in others} == {base + 1}
    assert "node3" not in ClusterConf.load(others[0].config_path).to_string()
    assert AuditEntry.objects.filter(action="node.delete", target="node3", result="ok").exists()
    # back: first without its fingerprint (told it), then with a wrong one (refused, audited), then confirmed
    url = f"{CLUSTERS}{cluster.name}/nodes/"
    new = {"name": "node3", "address": node3.address, "port": node3.port}
    body = problem(client.post(url, new, format="json"), 409, "FINGERPRINT_REQUIRED")
    assert body["fingerprints"] == {node3.address: node3.fingerprint}
    problem(client.post(url, {**new, "fingerprint": others[0].fingerprint}, format="json"), 409,
            "FINGERPRINT_MISMATCH")
    assert AuditEntry.objects.filter(action="node.add", result="refused").count() == 1
    task = finished(client, client.post(url, {**new, "fingerprint": node3.fingerprint}, format="json"))
    assert task["kind"] == "node_add" and task["state"] == "done", task
    added = cluster.nodes.get(name="node3")
    assert (added.address, added.port, added.fingerprint) == (node3.address, node3.port, node3.fingerprint)
    assert {ClusterConf.load(n.config_path).config_version for n in others} == {base + 2}
    problem(client.post(url, {**new, "fingerprint": node3.fingerprint}, format="json"), 409, "NODE_EXISTS")
    # node3 joins again (node_cmd is another right: the manager has none)
    problem(client.post(f"{url}node3/join/"), 403, "PERMISSION_DENIED")
    operator = token_client(user_with("operator", cluster, ["node_cmd"]))
    assert finished(operator, operator.post(f"{url}node3/join/"))["state"] == "done"
    wait_state(cluster, "node3", "online")
