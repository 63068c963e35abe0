"""Fixes from the issue 7 review (notes/issue7-review.md): H1 control characters, H4 hung nodes, M3 task refusals
and crashes, M4 push resent only when it was never sent, M5 the overview names no cluster, M7 a broker that is
down, L7 lab_dir. (M6, the watcher surviving database errors, is in tests/test_luci_watcher.py.)

The node-facing tests run against a real two-node lab (ricci agents on a free 127.x block, no cluster daemons)
plus "hung" nodes: TCP sockets on 127.0.0.1 that accept and never send an SSH banner."""
from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")
pytest.importorskip("channels", reason="the console's dependencies are not installed (pip install -e .[console])")

from cluster_conf import ClusterConf
from luci_web.clusters import configs

FAKE_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ5"


# -- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fix_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator:  # type: ignore[type-arg]
    from tests.ricci_fixtures import lab_up

    with lab_up(tmp_path_factory.mktemp("fixlab") / "lab", 2, no_daemons=True) as lab:
        yield lab


@pytest.fixture
def hung_sockets() -> Iterator[list[socket.socket]]:
    """Two listening sockets that never answer (a hung node: TCP accepted, no SSH banner)."""
    socks = []
    try:
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            s.listen(16)
            socks.append(s)
        yield socks
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def luci_home(settings, tmp_path: Path) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    from luci_web.celery import app
    from luci_web.clusters import gateway

    settings.LUCI_HOME = tmp_path
    gateway.reset()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield tmp_path
    finally:
        app.conf.task_always_eager = eager
        gateway.reset()


def _register(cluster: Any, lab: Any) -> None:
    from luci_web.clusters import gateway
    from luci_web.clusters.models import Node
    from ricci_agent import keys

    for node in lab.nodes:
        keys.authorize(node.root, gateway.luci_public_key())
        line, fp = gateway.probe_host_key(node.address, node.port)
        Node.objects.create(cluster=cluster, name=node.name, address=node.address, port=node.port,
                            host_key=line, fingerprint=fp)


def _hung(cluster: Any, socks: list[socket.socket]) -> list[str]:
    from luci_web.clusters.models import Node

    names = []
    for i, s in enumerate(socks):
        Node.objects.create(cluster=cluster, name=f"hung{i}", address="127.0.0.1", port=s.getsockname()[1],
                            host_key=FAKE_KEY, fingerprint="x")
        names.append(f"hung{i}")
    return names


@pytest.fixture
def lab_cluster(fix_lab, luci_home, db):  # type: ignore[no-untyped-def]
    from luci_web.clusters.models import Cluster

    cluster = Cluster.objects.create(name=fix_lab.cluster_name)
    _register(cluster, fix_lab)
    return cluster


def _versions(lab: Any) -> list[int]:
    return [ClusterConf.load(n.config_path).config_version for n in lab.nodes]


def _timed(fn: Any, *args: Any) -> tuple[Any, float]:
    started = time.monotonic()
    try:
        result: Any = fn(*args)
    except Exception as exc:  # the caller asserts on it
        result = exc
    return result, time.monotonic() - started


# -- H1: control characters --------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_prepare_turns_a_control_character_into_one_line_and_the_page_into_a_400(lab_cluster, fix_lab, client,
                                                                                  django_user_model) -> None:
    from django.urls import reverse

    from cluster_conf import edit
    from luci_web.clusters.models import Operation

    version = configs.fetch(lab_cluster).version
    with pytest.raises(configs.ConfigRejected) as caught:
        configs.prepare(lab_cluster, version, lambda conf: edit.add_domain(conf, "d\x01x"))
    assert str(caught.value) == configs.CONTROL_CHARACTERS and "\n" not in str(caught.value)

    # config_edit: the refusal is the form's own error and a 400, nothing pushed
    from django.contrib.messages.storage.cookie import CookieStorage
    from django.test import RequestFactory

    from luci_web.console.forms import ConfigForm
    from luci_web.console.views import config_edit

    admin = django_user_model.objects.create_superuser("admin", password="pw")
    request = RequestFactory().post("/")
    request.user = admin
    request._messages = CookieStorage(request)
    form = ConfigForm({"base_version": str(version)})
    assert form.is_valid()
    outcome = config_edit.run_change(request, lab_cluster, form, lambda conf: edit.add_domain(conf, "d\x01x"),
                                     action="domain.add", target="d")
    assert outcome.status == 400 and outcome.error == configs.CONTROL_CHARACTERS
    assert form.non_field_errors() == [configs.CONTROL_CHARACTERS]

    # the page (its form refuses the character first): a 400 naming the problem, never a 500
    client.force_login(admin)
    answer = client.post(reverse("console:domains", args=[lab_cluster.pk]),
                         {"op": "add", "base_version": str(version), "name": "d\x01x"})
    assert answer.status_code == 400 and "XML cannot hold" in answer.content.decode()
    assert not Operation.objects.exists() and _versions(fix_lab) == [version, version]


# -- H4: hung nodes ----------------------------------------------------------------------------------------------
def _status(online: list[str], unknown: list[str]) -> dict[str, Any]:
    return {"members": [{"name": n, "state": "online", "agent": True} for n in online]
            + [{"name": n, "state": "unknown", "agent": False} for n in unknown], "unreachable": unknown}


@pytest.mark.django_db
def test_hung_nodes_listed_first_do_not_stall_configuration_reads(fix_lab, luci_home, hung_sockets) -> None:
    """Two hung nodes come first in luci's order. With the watcher's status (lab nodes online, hung ones unknown)
    the answering nodes are asked first: no wait at all (before: 2 x 1.5 s per call). Without a status the hedged
    asking still answers within the deadline; with only hung nodes every read gives up within the deadline."""
    from luci_web.clusters.models import Cluster
    from luci_web.console.views import events, history

    cluster = Cluster.objects.create(name=fix_lab.cluster_name)
    hung = _hung(cluster, hung_sockets)
    _register(cluster, fix_lab)
    lab_names = [n.name for n in fix_lab.nodes]
    assert [n.name for n in cluster.nodes.all()][:2] == hung

    cluster.status = _status(lab_names, hung)
    cluster.save()
    assert [n.name for n in configs.ordered_nodes(cluster)] == [*lab_names, *hung]
    current, took = _timed(configs.fetch, cluster)
    assert isinstance(current, configs.Current) and current.node in lab_names and took < 1.0, took
    old, took = _timed(configs.fetch_version, cluster, current.version)
    assert isinstance(old, ClusterConf) and took < 1.0, took
    (rows, node, note), took = _timed(history.versions_of, cluster)
    assert rows and node in lab_names and not note and took < 1.0, took
    (fencing, fence_note), took = _timed(events.fence_states, cluster)  # no cmand in this lab: a note, quickly
    assert fencing == [] and "cluster manager" in fence_note and took < configs.DEADLINE + 0.7, took

    cluster.status = {}  # nothing known: luci's order, hung nodes first, asked HEDGE s apart
    cluster.save()
    current, took = _timed(configs.fetch, cluster)
    assert isinstance(current, configs.Current) and current.node in lab_names, current
    assert took < configs.DEADLINE + 0.5, took

    only_hung = Cluster.objects.create(name="hung-only")
    _hung(only_hung, hung_sockets)
    for read in (configs.fetch, history.versions_of, events.fence_states):
        _, took = _timed(read, only_hung)
        assert took < configs.DEADLINE + 0.7, (read.__name__, took)
    failed, _ = _timed(configs.fetch, only_hung)
    assert isinstance(failed, configs.ConfigUnavailable) and "hung0" in str(failed)


# -- M3: refusals and crashes inside tasks ----------------------------------------------------------------------
@pytest.mark.django_db
def test_a_refusal_inside_a_task_is_audited_and_a_crash_fails_the_operation(luci_home, django_user_model) -> None:
    from luci_web.audit.models import AuditEntry
    from luci_web.clusters import operations
    from luci_web.clusters.models import Cluster, Operation
    from luci_web.clusters.tasks import push_config

    cluster = Cluster.objects.create(name="alpha")
    nobody = django_user_model.objects.create_user("nobody", password="pw")
    op = operations.start(nobody, "push_config", cluster, [])
    assert push_config(str(op.id), "<cluster/>", {"action": "domain.add", "target": "db"}) == {
        "ok": False, "refused": True}
    op.refresh_from_db()
    entry = AuditEntry.objects.get(action="domain.add")
    assert op.state == Operation.FAILED and (entry.result, entry.username) == ("refused", "nobody")
    assert entry.message == op.message and entry.message

    admin = django_user_model.objects.create_superuser("admin", password="pw")
    op = operations.start(admin, "push_config", cluster, [])
    answer = push_config(str(op.id), "<cluster/>", {"action": "config.rollback", "right": "bogus"})
    assert answer["ok"] is False
    op.refresh_from_db()
    assert op.state == Operation.FAILED and op.message.startswith("internal error (ValueError)")
    assert "\n" not in op.message and "bogus" not in op.message
    crash = AuditEntry.objects.get(action="config.rollback")
    assert crash.result == "failed" and crash.message == op.message

    gone = operations.start(admin, "push_config", cluster, [])
    gone_id = str(gone.id)
    gone.delete()  # removed meanwhile (its cluster was): no exception escapes the task
    assert push_config(gone_id, "<cluster/>", {"action": "x"})["ok"] is False


# -- M4: a push is resent only when it was never sent ---------------------------------------------------------
@pytest.mark.django_db
def test_push_tries_another_node_only_when_the_first_was_unreachable(fix_lab, luci_home, django_user_model) -> None:
    from luci_web.clusters import gateway
    from luci_web.clusters.models import Cluster, Node, Operation

    admin = django_user_model.objects.create_superuser("admin", password="pw")
    lab_cluster = Cluster.objects.create(name=fix_lab.cluster_name)
    # unreachable first in luci's order (a closed port): the next node takes the push
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    Node.objects.create(cluster=lab_cluster, name="dead", address="127.0.0.1", port=port, host_key=FAKE_KEY,
                        fingerprint="x")
    _register(lab_cluster, fix_lab)
    first, second = [n for n in lab_cluster.nodes.all() if n.name != "dead"]
    current = configs.fetch(lab_cluster)
    conf = current.conf
    with conf.transaction():
        conf.root.set("x-note", "pushed")
    op = configs.push(lab_cluster, admin, conf.to_string(), action="config.test")
    op.refresh_from_db()
    assert op.state == Operation.DONE, op.message
    assert op.progress["dead"]["state"] == "unreachable"
    assert _versions(fix_lab) == [current.version + 1] * 2
    Node.objects.filter(name="dead").delete()

    # the first node receives the push and hangs: no other node is asked, the outcome is "unknown"
    gateway.call(first, "hello")  # the connection exists: the push is sent on it
    before = _versions(fix_lab)
    conf = configs.fetch(lab_cluster).conf
    with conf.transaction():
        conf.root.set("x-note", "hung")
    gateway.client().long_request_timeout = 1.0
    fix_lab.pause(first.name)
    try:
        op = configs.push(lab_cluster, admin, conf.to_string(), action="config.test")
        op.refresh_from_db()
        assert op.state == Operation.FAILED and op.message.startswith("outcome unknown: check the nodes' versions")
        assert op.progress[second.name]["state"] == "waiting"  # never asked
        assert ClusterConf.load(fix_lab.nodes[1].config_path).config_version == before[1]
    finally:
        fix_lab.resume(first.name)
        gateway.reset()


# -- M5: the overview names no cluster ------------------------------------------------------------------------
@pytest.mark.django_db
def test_overview_messages_name_no_cluster(luci_home, django_user_model) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from luci_web.clusters import registry
    from luci_web.live.publish import OVERVIEW

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(OVERVIEW, channel)
    try:
        admin = django_user_model.objects.create_superuser("admin", password="pw")
        cluster = registry.add_existing(admin, "secret-prod", [registry.NodeCandidate(
            "n1", "127.0.0.2", 11111, FAKE_KEY, "SHA256:x")])
        pk = cluster.pk
        registry.remove(admin, cluster)
        received = [async_to_sync(_receive)(layer, channel) for _ in range(2)]
    finally:
        async_to_sync(layer.group_discard)(OVERVIEW, channel)
    assert [m["payload"] for m in received] == [{}, {}]
    assert "secret-prod" not in repr(received) and str(pk) not in repr([m["payload"] for m in received])


async def _receive(layer: Any, channel: str) -> dict[str, Any]:
    import asyncio

    return await asyncio.wait_for(layer.receive(channel), 5)


# -- M7: the broker is down --------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_broker_failure_is_one_line_a_503_a_failed_operation_and_an_audit(lab_cluster, client, monkeypatch,
                                                                             django_user_model) -> None:
    """`.delay` raises what kombu raises when Redis is down (a stand-in for the broker: the test suite's broker
    is the in-memory one)."""
    from django.urls import reverse
    from kombu.exceptions import OperationalError

    from luci_web.audit.models import AuditEntry
    from luci_web.clusters.models import Operation
    from luci_web.clusters.tasks import push_config

    def down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to redis://:hunter2@127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(push_config, "delay", down)
    admin = django_user_model.objects.create_superuser("admin", password="pw")
    client.force_login(admin)
    version = configs.fetch(lab_cluster).version
    answer = client.post(reverse("console:domains", args=[lab_cluster.pk]),
                         {"op": "add", "base_version": str(version), "name": "queued"})
    page = answer.content.decode()
    assert answer.status_code == 503 and "worker queue is not reachable" in page and "hunter2" not in page
    op = Operation.objects.get()
    assert op.state == Operation.FAILED and op.message.startswith("the worker queue is not reachable")
    entry = AuditEntry.objects.get(action="domain.add")
    assert entry.result == "failed" and "hunter2" not in entry.message


# -- L7: lab_dir ---------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_lab_dir_is_for_administrators_and_must_be_a_lab(fix_lab, luci_home, tmp_path, django_user_model) -> None:
    from django.contrib.auth.models import Permission

    from luci_web.audit.models import AuditEntry
    from luci_web.clusters import registry

    nodes = [registry.NodeCandidate("node1", "127.0.0.2", 11111, FAKE_KEY, "SHA256:x")]
    creator = django_user_model.objects.create_user("creator", password="pw")
    creator.user_permissions.add(Permission.objects.get(codename="create_clusters"))
    creator = django_user_model.objects.get(pk=creator.pk)
    admin = django_user_model.objects.create_superuser("admin", password="pw")
    lab_dir = str(fix_lab.directory)

    with pytest.raises(registry.RegistryError, match="only a Luci Administrator"):
        registry.create_cluster(creator, "new1", nodes, lab_dir=lab_dir)
    empty = tmp_path / "not-a-lab"
    empty.mkdir()
    for bad, why in ((str(empty), "is not a lab directory"), ("/nonexistent/lab", "is not a lab directory"),
                     ("lab", "absolute path"), (lab_dir + "\x01", "printable")):
        with pytest.raises(registry.RegistryError, match=why):
            registry.create_cluster(admin, "new1", nodes, lab_dir=bad)
    assert AuditEntry.objects.filter(action="cluster.create", result="refused").count() == 5
    registry.check_lab_dir(admin, lab_dir)  # a real lab: accepted
    registry.check_lab_dir(creator, None)
    with contextlib.suppress(registry.RegistryError):
        registry.first_config("new\x01", nodes)  # never a ValueError
