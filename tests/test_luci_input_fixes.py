"""Bad input and half-applied changes in the console (issue 7 review H1, H2, H3, M1, M2, L1).

- H1: a value XML cannot hold (a control character, a lone surrogate) is a field error of the form, never a 500.
- H2: numbers are ASCII digits only ("²" passes str.isdigit() but not int()): a form error, never a 500.
- H3: node add and delete refuse a missing or non-number base_version (400) and do not offer their form while the
  configuration's version cannot be read.
- M1: node add's confirmation is bound to the probe it confirms (a token, the name and the fingerprint shown) and
  the key is read again before anything is done.
- M2: the add and delete tasks change luci's Node rows only after the configuration push succeeded.
- L1: the Resources form's key=value box refuses secret names (a typed password never comes back in the page).

The cluster's nodes sit on a loopback port where nothing listens (refused at once): no configuration can be read
and every push fails, the way unreachable nodes fail. M1 probes one real ricci agent (a one-node lab, no daemons).
"""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from luci_web.access.models import ClusterGrant
from luci_web.audit.models import AuditEntry
from luci_web.celery import app
from luci_web.clusters import gateway, node_tasks, operations
from luci_web.clusters.models import Cluster, Node, Operation
from luci_web.clusters.values import whole_number
from luci_web.console import forms as console_forms
from luci_web.console.views import configure, domains, nodes, resources
from luci_web.console.views import services as sv

HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1cnJpdG9idXJyaXRvYnVycml0b2J1cnJpdG9idXJyaQ"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def luci_home(settings, tmp_path: Path):
    settings.LUCI_HOME = tmp_path / "luci"
    gateway.reset()
    yield settings.LUCI_HOME
    gateway.reset()


@pytest.fixture
def eager():
    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.fixture
def cluster(db, luci_home) -> Cluster:
    c = Cluster.objects.create(name="alpha", status={"members": [], "services": [], "config_version": 5})
    port = closed_port()
    for i in (1, 2, 3):
        Node.objects.create(cluster=c, name=f"node{i}", address="127.0.0.1", port=port, host_key=HOST_KEY,
                            fingerprint="SHA256:test")
    return c


@pytest.fixture
def manager(cluster):  # type: ignore[no-untyped-def]
    user = get_user_model().objects.create_user("manager")
    ClusterGrant.objects.create(user=user, cluster=cluster, view=True, config=True, membership=True)
    return user


# -- H1: characters XML cannot hold ---------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["d\x01x", "x\x1fy", "lone \ud800 surrogate", "\ufffe"])
def test_the_shared_validator_refuses_what_xml_cannot_hold(bad: str) -> None:
    with pytest.raises(console_forms.forms.ValidationError, match="XML cannot hold"):
        console_forms.xml_safe(bad)
    console_forms.xml_safe("tab\tnewline\ncrlf\r\n, accents é and 𝄞")  # what XML holds passes


def test_every_config_form_refuses_a_control_character_next_to_the_field() -> None:
    general = configure.GeneralForm({"general-base_version": "3", "general-token": "1\x01",
                                     "general-multicast_addr": "239.1.1.1\x02"}, prefix="general")
    assert not general.is_valid()
    assert "XML cannot hold" in general.errors["token"][0] and "multicast_addr" in general.errors
    domain = domains.DomainForm({"base_version": "3", "name": "d\x01x"}, nodes=["n1"])
    assert not domain.is_valid() and "XML cannot hold" in domain.errors["name"][0]
    members = domains.DomainForm({"base_version": "3", "name": "d", "member_n\x01": "on"}, nodes=["n\x01"])
    assert not members.is_valid() and "XML cannot hold" in str(members.non_field_errors())
    resource = resources.ResourceForm({"base_version": "3", "address": "10.1.1.1\x01",
                                       "extra": "x_note=a\x07b"}, rtype="ip")
    assert not resource.is_valid()
    assert "XML cannot hold" in resource.errors["address"][0] and "XML cannot hold" in resource.errors["extra"][0]


@pytest.mark.django_db
def test_a_control_character_posted_to_a_tab_is_a_400_with_the_field_error(client, cluster, manager) -> None:
    client.force_login(manager)
    response = client.post(reverse("console:domains", args=[cluster.pk]),
                           {"op": "add", "name": "d\x01x", "base_version": "3"})
    assert response.status_code == 400  # without the check the form is valid and the change is attempted
    assert not Operation.objects.exists()
    url = reverse("console:service_add_resource", args=[cluster.pk, "service:web"])
    with pytest.raises(sv.FormError, match="XML cannot hold"):
        sv.service_attrs_from({"domain": "web\x01"})
    response = client.post(url, {"mode": "inline", "type": "ip", "attr_address": "10.1.1.1\x01",
                                 "base_version": "3"})
    assert response.status_code != 500 and not Operation.objects.exists()


# -- H2: ASCII digits only --------------------------------------------------------------------------------------
def test_the_strict_number_parser_takes_ascii_digits_in_range_only() -> None:
    assert whole_number(" 42 ", 0, 100) == 42
    for bad in ("²", "٣", "1²", "", "-1", "101", "1e2", "9" * 20):
        with pytest.raises(ValueError, match="a whole number from 0 to 100"):
            whole_number(bad, 0, 100)


def test_unicode_digits_are_a_form_error_in_services_and_node_add() -> None:
    with pytest.raises(sv.FormError) as caught:
        sv.service_attrs_from({"max_restarts": "²"})
    assert caught.value.field == "max_restarts"
    assert sv.service_attrs_from({"max_restarts": "007"})["max_restarts"] == "7"
    fields, errors = nodes._new_node_fields({"name": "node4", "port": "²"})
    assert "port" in errors and fields["port"] == "²"
    fields, errors = nodes._new_node_fields({"name": "node4", "port": "11112"})
    assert not errors and fields["port"] == 11112


@pytest.mark.django_db
def test_unicode_digits_posted_are_not_a_500(client, cluster, manager) -> None:
    client.force_login(manager)
    for url in (reverse("console:service_save_attrs", args=[cluster.pk, "service:web"]),
                reverse("console:service_create", args=[cluster.pk])):
        response = client.post(url, {"name": "web2", "max_restarts": "²", "base_version": "5"})
        assert response.status_code != 500
    response = client.post(reverse("console:node_add", args=[cluster.pk]),
                           {"step": "probe", "name": "node4", "address": "127.0.0.1", "port": "²",
                            "base_version": "5"})
    assert response.status_code == 200 and 'data-error="port"' in response.content.decode()
    assert not Operation.objects.exists()


# -- H3: base_version is required --------------------------------------------------------------------------------
@pytest.mark.django_db
@pytest.mark.parametrize("base", [None, "", "abc", "²", "-1"])
def test_node_delete_and_add_refuse_a_missing_or_bad_base_version(client, cluster, manager, eager, base) -> None:
    client.force_login(manager)
    data = {} if base is None else {"base_version": base}
    response = client.post(reverse("console:node_delete", args=[cluster.pk, "node2"]), data)
    assert response.status_code == 400 and "reload the page" in response.content.decode()
    response = client.post(reverse("console:node_add", args=[cluster.pk]),
                           {"step": "probe", "name": "node4", "address": "127.0.0.1", "port": "11111", **data})
    assert response.status_code == 400 and "reload the page" in response.content.decode()
    assert not Operation.objects.exists() and cluster.nodes.count() == 3
    assert AuditEntry.objects.filter(result="refused", action__in=("node.add", "node.delete")).count() == 2


@pytest.mark.django_db
def test_node_pages_offer_no_form_while_the_version_cannot_be_read(client, cluster, manager) -> None:
    client.force_login(manager)
    for url in (reverse("console:node_add", args=[cluster.pk]),
                reverse("console:node_delete", args=[cluster.pk, "node2"])):
        html = client.get(url).content.decode()
        assert "data-unavailable" in html and 'name="base_version"' not in html
        assert 'value="probe"' not in html and 'class="danger"' not in html


# -- M1: the confirmation is bound to its probe and the key is read again -----------------------------------------
@pytest.fixture(scope="module")
def one_agent(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One real ricci agent (no cluster daemons) whose host key the add form probes."""
    pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")
    from ricci_agent.lab import Lab, free_block
    from tests.ricci_fixtures import tear_down

    lab = Lab(tmp_path_factory.mktemp("addlab") / "lab")
    try:
        lab.up(nodes=1, first_address=free_block(1), no_daemons=True)
        yield lab.nodes[0]
    finally:
        tear_down(lab)


def _probe(client, cluster, agent, name: str) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    response = client.post(reverse("console:node_add", args=[cluster.pk]),
                           {"step": "probe", "name": name, "address": agent.address, "port": str(agent.port),
                            "base_version": "5"})
    assert response.status_code == 200, response.content.decode()
    pending = client.session[nodes.ADD_SESSION_KEY]
    token = next(t for t, entry in pending.items() if entry["name"] == name)
    return token, pending[token]["fingerprint"]


def _confirm(client, cluster, token: str, name: str, fingerprint: str):  # type: ignore[no-untyped-def]
    return client.post(reverse("console:node_add", args=[cluster.pk]),
                       {"step": "confirm", "token": token, "name": name, "fingerprint": fingerprint})


@pytest.mark.django_db
def test_confirming_adds_the_node_that_was_shown_with_the_key_shown(client, cluster, manager, one_agent) -> None:
    client.force_login(manager)
    token4, fp4 = _probe(client, cluster, one_agent, "node4")
    token5, fp5 = _probe(client, cluster, one_agent, "node5")  # a second tab: its own entry, not the same slot
    assert token4 != token5 and fp4 == fp5 and fp4.startswith("SHA256:")
    html = _confirm(client, cluster, token4, "node4", fp4).content.decode()
    # it is node4 that goes on (and is refused only because no node gives the configuration here)
    assert "Add node4 to alpha" in html and "no node gave its configuration" in html
    assert not cluster.nodes.filter(name__in=["node4", "node5"]).exists() and not Operation.objects.exists()

    response = _confirm(client, cluster, token5, "node5", "SHA256:not-the-one-shown")
    assert response.status_code == 400 and "does not match" in response.content.decode()
    assert token5 not in client.session[nodes.ADD_SESSION_KEY]  # refused: the probe must be made again

    token6, _ = _probe(client, cluster, one_agent, "node6")
    session = client.session
    pending = session[nodes.ADD_SESSION_KEY]
    pending[token6]["fingerprint"] = "SHA256:the-key-it-offered-before"  # the node's key changed since the probe
    session[nodes.ADD_SESSION_KEY] = pending
    session.save()
    response = _confirm(client, cluster, token6, "node6", "SHA256:the-key-it-offered-before")
    assert response.status_code == 400 and "now offers another host key" in response.content.decode()
    assert cluster.nodes.count() == 3 and not Operation.objects.exists()
    assert AuditEntry.objects.filter(action="node.add", result="refused").count() == 3


# -- M2: luci's rows change only after the push succeeded -----------------------------------------------------------
NEW_NODE = {"address": "127.0.0.1", "port": 11199, "host_key": HOST_KEY, "fingerprint": "SHA256:new"}


def _pushed_ok(monkeypatch, cluster: Cluster, manager: Any) -> list[str]:  # type: ignore[no-untyped-def]
    """Stand in for the push only (the add and delete paths up to it are real): it reports version 6."""
    seen: list[str] = []

    def push_now(cluster_, user, xml, **meta):  # type: ignore[no-untyped-def]
        seen.append(meta["action"])
        op = operations.start(user, "push_config", cluster_, [])
        operations.finish(op, True, "version 6 accepted", {"version": 6})
        return op, {"ok": True, "version": 6}

    monkeypatch.setattr(node_tasks, "_push_now", push_now)
    return seen


@pytest.mark.django_db
def test_a_failed_push_leaves_no_new_node_row(cluster, manager) -> None:
    op = operations.start(manager, "node_add", cluster, ["node4"])
    result = node_tasks.node_add(str(op.id), "node4", "<cluster/>", {"reason": "", "node": NEW_NODE})
    op.refresh_from_db()
    assert not result["ok"] and op.state == Operation.FAILED
    assert "was not pushed" in op.message and "luci do not have node4" in op.message
    assert not cluster.nodes.filter(name="node4").exists()
    assert {e.result for e in AuditEntry.objects.filter(action="node.add")} == {"failed"}  # the push's and the add's
    push = Operation.objects.get(pk=result["push_operation"])
    assert push.kind == "push_config" and push.state == Operation.FAILED  # the push ran, inline, and failed


@pytest.mark.django_db
def test_the_new_node_row_is_saved_after_the_push(cluster, manager, monkeypatch) -> None:
    seen = _pushed_ok(monkeypatch, cluster, manager)
    op = operations.start(manager, "node_add", cluster, ["node4"])
    assert node_tasks.node_add(str(op.id), "node4", "<cluster/>", {"reason": "", "node": NEW_NODE})["ok"]
    row = cluster.nodes.get(name="node4")
    assert (row.port, row.host_key, row.fingerprint) == (11199, HOST_KEY, "SHA256:new") and seen == ["node.add"]
    op.refresh_from_db()
    assert op.state == Operation.DONE and "version 6" in op.message


@pytest.mark.django_db
def test_a_failed_push_keeps_the_deleted_node_in_luci(cluster, manager) -> None:
    op = operations.start(manager, "node_delete", cluster, ["node3"])
    result = node_tasks.node_delete(str(op.id), "node3", "<cluster/>", {"reason": ""})
    op.refresh_from_db()
    assert not result["ok"] and op.state == Operation.FAILED
    assert "still names node3 and luci keeps it" in op.message
    assert cluster.nodes.filter(name="node3").exists()  # its host key is not forgotten: luci can still reach it
    assert {e.result for e in AuditEntry.objects.filter(action="node.delete")} == {"failed"}


@pytest.mark.django_db
def test_the_deleted_node_row_goes_after_the_push(cluster, manager, monkeypatch) -> None:
    _pushed_ok(monkeypatch, cluster, manager)
    op = operations.start(manager, "node_delete", cluster, ["node3"])
    assert node_tasks.node_delete(str(op.id), "node3", "<cluster/>", {"reason": ""})["ok"]
    assert not cluster.nodes.filter(name="node3").exists()
    assert AuditEntry.objects.get(action="node.delete").result == "ok"


# -- L1: no secret in the Resources key=value box ------------------------------------------------------------------
def test_the_resource_form_refuses_a_secret_in_other_attributes() -> None:
    form = resources.ResourceForm({"base_version": "3", "address": "10.1.1.1", "extra": "password=hunter2"},
                                  rtype="ip")
    assert not form.is_valid() and "is a secret" in form.errors["extra"][0]
    assert "hunter2" not in str(form.errors)
    ok = resources.ResourceForm({"base_version": "3", "address": "10.1.1.1", "extra": "x_note=rack7"}, rtype="ip")
    assert ok.is_valid(), ok.errors


@pytest.mark.django_db
def test_an_unexpected_error_in_a_node_task_finishes_its_operation_as_failed(cluster, manager, monkeypatch) -> None:
    def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(node_tasks, "_trust_new_node", broken)
    op = operations.start(manager, "node_add", cluster, ["node4"])
    assert node_tasks.node_add(str(op.id), "node4", "<cluster/>", {"reason": "", "node": NEW_NODE})["ok"] is False
    op.refresh_from_db()
    assert op.state == Operation.FAILED and "internal error" in op.message  # not left running
    assert AuditEntry.objects.get(action="node.add").result == "failed" and not cluster.nodes.filter(name="node4")
