"""The Service Groups tab: the live table rendered from a stored status (states, buttons by right, 403 without it),
the definition editor's edit functions on a real cluster.conf (subtree flags, children by path, unknown XML kept,
one version bump), and one lab run where relocating the web service through the view moves it and is audited."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.urls import reverse

from cluster_conf import ClusterConf, edit
from luci_web.access.models import ClusterGrant
from luci_web.audit.models import AuditEntry
from luci_web.clusters.models import Cluster, Node
from luci_web.clusters.service_commands import result_line
from luci_web.console.views import services as sv
from tests.conftest import SMALL_CONF

pytestmark = pytest.mark.django_db

STATUS = {
    "cluster": {"name": "alpha", "id": 1, "generation": 4}, "quorum": {"quorate": True, "groupmember": True},
    "rgmanager": "running", "reported_by": "n1", "at": 1.0, "config_version": 3, "drift": False, "message": "",
    "members": [
        {"name": n, "nodeid": i, "online": True, "state": "online", "rgmanager": True, "master": i == 1,
         "qdisk": False} for i, n in enumerate(("n1", "n2", "n3"), 1)],
    "services": [
        {"name": "service:www", "state_str": "started", "owner": "n1", "last_owner": "n2", "flags_str": "",
         "restarts": 2},
        {"name": "service:db", "state_str": "failed", "owner": "", "last_owner": "n2", "flags_str": "", "restarts": 0},
        {"name": "service:mail", "state_str": "disabled", "owner": "", "last_owner": "n3", "flags_str": "frozen",
         "restarts": 0},
        {"name": "vm:guest", "state_str": "starting", "owner": "n3", "last_owner": "", "flags_str": "",
         "restarts": 0},
    ],
}


@pytest.fixture
def cluster(settings, tmp_path):
    settings.LUCI_HOME = tmp_path
    c = Cluster.objects.create(name="alpha", status=STATUS)
    for i, name in enumerate(("n1", "n2", "n3"), 1):
        Node.objects.create(cluster=c, name=name, address=f"127.0.0.{i}", port=1, host_key="ssh-ed25519 AAAA",
                            fingerprint="SHA256:x")
    return c


def user_with(django_user_model, cluster, **rights):
    user = django_user_model.objects.create_user(f"u{len(rights)}{'_'.join(sorted(rights))}", password="pw")
    ClusterGrant.objects.create(user=user, cluster=cluster, view=True, **rights)
    return user


# -- the live table ------------------------------------------------------------------------------------------------
def test_the_table_shows_each_state_with_its_class_owner_flags_and_restarts(client, django_user_model, cluster):
    client.force_login(user_with(django_user_model, cluster))
    page = client.get(reverse("console:services", args=[cluster.pk])).content.decode()
    assert f'data-live-fragment="{reverse("console:services_fragment", args=[cluster.pk])}"' in page
    assert f'data-live-cluster="{cluster.pk}"' in page
    fragment = client.get(reverse("console:services_fragment", args=[cluster.pk])).content.decode()
    for name, css, state in (("service:www", "st-ok", "started"), ("service:db", "st-bad", "failed"),
                             ("service:mail", "st-off", "disabled"), ("vm:guest", "st-warn", "starting")):
        row = fragment.split(f'data-service="{name}"')[1].split("</tr>")[0]
        assert f'<span class="st {css}">{state}</span>' in row, row
    www = fragment.split('data-service="service:www"')[1].split("</tr>")[0]
    assert "<td>n1</td>" in www and "<td>n2</td>" in www and "<td>2</td>" in www
    assert "frozen" in fragment.split('data-service="service:mail"')[1].split("</tr>")[0]
    assert "<form" not in fragment  # view only: no action is offered


def test_actions_are_offered_only_with_service_cmd_and_migrate_only_for_vms(client, django_user_model, cluster):
    client.force_login(user_with(django_user_model, cluster, service_cmd=True))
    fragment = client.get(reverse("console:services_fragment", args=[cluster.pk])).content.decode()
    www = fragment.split('data-service="service:www"')[1].split("</tr>")[0]
    guest = fragment.split('data-service="vm:guest"')[1].split("</tr>")[0]
    mail = fragment.split('data-service="service:mail"')[1].split("</tr>")[0]
    for command in ("enable", "restart", "disable", "relocate", "freeze"):
        assert f'name="command" value="{command}"' in www
    assert 'value="migrate"' not in www and 'value="migrate"' in guest
    assert 'value="unfreeze"' in mail and 'value="freeze"' not in mail
    assert '<option value="n2">n2</option>' in www
    page = client.get(reverse("console:services", args=[cluster.pk])).content.decode()
    assert reverse("console:service_create", args=[cluster.pk]) not in page  # no config right


def test_a_large_table_has_no_row_forms_escapes_every_value_and_keeps_the_action_bar(client, django_user_model,
                                                                                    cluster):
    rows = [{"name": f"service:s{i}", "state_str": "started", "owner": "n1", "last_owner": "n2", "flags_str": "",
             "restarts": 0} for i in range(40)]
    rows.append({"name": 'service:<b>x"', "state_str": "failed", "owner": "<i>n3</i>", "last_owner": "",
                 "flags_str": "frozen", "restarts": 1})
    cluster.status = {**STATUS, "services": rows}
    cluster.save()
    client.force_login(user_with(django_user_model, cluster, service_cmd=True))
    fragment = client.get(reverse("console:services_fragment", args=[cluster.pk])).content.decode()
    assert fragment.count("<tr data-service=") == 41 and "<form" not in fragment
    assert "<b>" not in fragment and "<i>" not in fragment and "&lt;b&gt;x&quot;" in fragment
    assert '<span class="st st-bad">failed</span>' in fragment and '<span class="st st-warn">frozen</span>' in fragment
    assert f'href="/clusters/{cluster.pk}/services/service:s7/"' in fragment
    page = client.get(reverse("console:services", args=[cluster.pk])).content.decode()
    bar = page.split('class="card service-bar"')[1].split("</form>")[0]
    assert '<option value="service:s39">' in bar and 'name="command"' in bar and '<option value="n2">' in bar


def test_commands_and_definition_changes_are_refused_without_the_right(client, django_user_model, cluster):
    client.force_login(user_with(django_user_model, cluster, config=True))  # config, but not service_cmd
    answer = client.post(reverse("console:service_command", args=[cluster.pk]),
                         {"service": "service:www", "command": "disable"})
    assert answer.status_code == 403
    client.force_login(user_with(django_user_model, cluster, service_cmd=True))  # service_cmd, not config
    for name in ("service_save_attrs", "service_add_resource", "service_remove_resource", "service_set_flags",
                 "service_delete"):
        answer = client.post(reverse(f"console:{name}", args=[cluster.pk, "service:www"]), {"base_version": "3"})
        assert answer.status_code == 403, name
    assert client.post(reverse("console:service_create", args=[cluster.pk]), {"name": "x"}).status_code == 403
    assert not AuditEntry.objects.exists()


def test_a_bad_command_or_target_is_one_message_and_nothing_is_sent(client, django_user_model, cluster):
    client.force_login(user_with(django_user_model, cluster, service_cmd=True))
    url = reverse("console:service_command", args=[cluster.pk])
    answer = client.post(url, {"service": "service:www", "command": "migrate", "target": "n2"}, follow=True)
    assert "only virtual machines migrate" in answer.content.decode()
    answer = client.post(url, {"service": "service:www", "command": "relocate", "target": "elsewhere"}, follow=True)
    assert "&#x27;elsewhere&#x27; is not a node of alpha" in answer.content.decode()
    answer = client.post(url, {"service": "service:www", "command": "explode"}, follow=True)
    assert "unknown service command" in answer.content.decode()
    assert not AuditEntry.objects.exists()


def test_result_lines_follow_clusvcadm():
    assert result_line("relocate", "service:web", "n2", 0, "Success", "n2", "") == (
        True, "service:web is now running on n2", False)
    assert result_line("relocate", "service:web", "n2", 0, "Success", "n3", "") == (
        True, "Warning: service:web is now running on n3", True)
    assert result_line("disable", "service:web", None, 0, "Success", None, "")[1] == "service:web is disabled"
    ok, line, _ = result_line("relocate", "service:web", "n2", -11, "Failure: Service is frozen", "n1", "")
    assert not ok and line == "Relocate service:web to n2: Failure: Service is frozen"


# -- the definition editor's edit functions ----------------------------------------------------------------------
def applied(*changes) -> ClusterConf:
    conf = ClusterConf.from_string(SMALL_CONF)
    with conf.transaction():
        for change in changes:
            change(conf)
    return conf


def test_subtree_flags_independent_non_critical_and_back():
    path = (("ip", "10.0.0.50"), ("script", "httpd"))
    conf = applied(sv.set_subtree("service:www", path, "1", True))
    script = edit.resource_at(conf, "www", path)
    assert (script.get("__independent_subtree"), script.get("__enforce_timeouts")) == ("1", "1")
    assert sv.resource_tree(conf, "service:www")[0].children[0].subtree_label == "independent"
    conf = applied(sv.set_subtree("service:www", path, "2", False))
    script = edit.resource_at(conf, "www", path)
    assert script.get("__independent_subtree") == "2" and "__enforce_timeouts" not in script.attrib
    assert sv.resource_tree(conf, "service:www")[0].children[0].subtree_label == "non-critical"
    conf = applied(sv.set_subtree("service:www", path, "2", False), sv.set_subtree("service:www", path, "", False))
    assert "__independent_subtree" not in edit.resource_at(conf, "www", path).attrib
    with pytest.raises(sv.FormError):
        sv.set_subtree("service:www", (), "1", False)  # not on the service itself
    with pytest.raises(sv.FormError):
        sv.subtree_flags("3", False)


def test_children_are_added_and_removed_by_path_keeping_unknown_xml_with_one_version_bump():
    conf = applied(
        sv.add_child("service:www", (("ip", "10.0.0.50"),), "fs",
                     {"name": "data", "mountpoint": "/srv", "device": "/dev/sdb1"}),
        sv.add_child("service:www", (), "script", {"ref": "httpd"}),
        sv.remove_child("service:www", (("ip", "10.0.0.50"), ("script", "httpd"))),
    )
    assert conf.config_version == 4  # 3 + exactly one
    tree = sv.resource_tree(conf, "service:www")
    assert [(n.type, n.key, n.ref) for n in tree] == [("ip", "10.0.0.50", True), ("script", "httpd", True)]
    assert [(n.type, n.key, n.ref, n.path) for n in tree[0].children] == [
        ("fs", "data", False, (("ip", "10.0.0.50"), ("fs", "data")))]
    text = conf.to_string()
    assert '<x-extension keep="me"/>' in text and 'x-site="rack7"' in text
    assert "hand-written note that must survive edits" in text
    assert sv.decode_path(tree[0].children[0].path_json) == (("ip", "10.0.0.50"), ("fs", "data"))


def test_service_attributes_create_and_delete():
    attrs = sv.service_attrs_from({"autostart": "1", "domain": "web", "recovery": "relocate", "max_restarts": "3",
                                   "restart_expire_time": "5m"}, domains=["web"])
    conf = applied(sv.create_service("mail", attrs))
    mail = edit.find_service(conf, "service:mail")
    assert dict(mail.attrib) == {"name": "mail", "autostart": "1", "exclusive": "0", "domain": "web",
                                 "recovery": "relocate", "max_restarts": "3", "restart_expire_time": "5m"}
    conf = applied(sv.change_service("service:www", sv.service_attrs_from({"recovery": "disable"})))
    www = edit.find_service(conf, "www")
    assert (www.get("recovery"), www.get("autostart"), www.get("domain")) == ("disable", "0", None)
    assert edit.find_service(applied(sv.delete_service("service:www")), "www") is None
    for bad, field in (({"domain": "nope"}, "domain"), ({"recovery": "pray"}, "recovery"),
                       ({"max_restarts": "-1"}, "max_restarts"), ({"restart_expire_time": "soon"},
                                                                  "restart_expire_time")):
        with pytest.raises(sv.FormError) as caught:
            sv.service_attrs_from(bad, domains=["web"])
        assert caught.value.field == field
    with pytest.raises(sv.FormError):
        sv.decode_path('[["ip"]]')


# -- a real lab: relocation through the view -------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_relocating_the_web_service_through_the_view_moves_it_and_is_audited(client, django_user_model, settings,
                                                                              tmp_path: Path):
    pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")
    from luci_web.clusters import gateway
    from ricci_agent import keys
    from ricci_agent.lab import Lab, free_block, node_names
    from tests.ricci_fixtures import tear_down, wait_until

    settings.LUCI_HOME = tmp_path / "luci"
    gateway.reset()
    lab = Lab(tmp_path / "lab")
    try:
        names = node_names(3)
        lab.create(names, "labcluster", free_block(3), 11111)
        for node in lab.nodes:
            keys.authorize(node.root, gateway.luci_public_key())
        lab.up()
        cluster = Cluster.objects.create(name="labcluster")
        rows = []
        for node in lab.nodes:
            line, fingerprint = gateway.probe_host_key(node.address, node.port)
            rows.append(Node.objects.create(cluster=cluster, name=node.name, address=node.address, port=node.port,
                                            host_key=line, fingerprint=fingerprint))

        def web() -> dict:
            status = gateway.call(rows[1], "rgmanager.status")
            return next((s for s in status.get("services") or [] if s["name"] == "service:webservice"), {})

        wait_until("webservice started", lambda: web().get("state_str") == "started", timeout=40, step=0.3)
        from luci_web.clusters.status import read_status

        cluster.status = read_status(rows, "labcluster")
        cluster.save()
        was = web()["owner"]
        target = next(n for n in names if n != was)
        user = user_with(django_user_model, cluster, service_cmd=True)
        client.force_login(user)
        started = time.monotonic()
        answer = client.post(reverse("console:service_command", args=[cluster.pk]),
                             {"service": "service:webservice", "command": "relocate", "target": target}, follow=True)
        took = time.monotonic() - started
        assert f"service:webservice is now running on {target}" in answer.content.decode()
        assert web()["owner"] == target and web()["state_str"] == "started"
        entry = AuditEntry.objects.get(action="service.relocate")
        assert (entry.username, entry.target, entry.result) == (user.username, "service:webservice", "ok")
        assert entry.detail["target"] == target and entry.detail["code"] == 0
        print(f"relocation through the view: {took:.2f} s")
    finally:
        gateway.reset()
        tear_down(lab)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_editor_changes_a_real_cluster_through_its_agents_with_optimistic_concurrency(
        client, django_user_model, settings, tmp_path: Path):
    """ricci agents only (no cman): the definition page shows the tree, a subtree flag is pushed (one version up),
    a change made on the older version is refused with the diff, and delete asks first."""
    pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")
    from luci_web.celery import app
    from luci_web.clusters import configs, gateway
    from luci_web.clusters.models import Operation
    from ricci_agent import keys
    from tests.ricci_fixtures import conf_xml, make_lab

    names = ["node1", "node2"]
    conf = ClusterConf.from_string(conf_xml(names, 5))
    with conf.transaction(bump=False):
        edit.add_resource(conf, "ip", {"address": "127.0.0.99", "monitor_link": "0"})
        edit.add_resource(conf, "script", {"name": "httpd", "file": "/etc/init.d/httpd"})
        edit.add_service(conf, "www", {"recovery": "relocate"})
        edit.add_child_resource(conf, "www", "ip", {"ref": "127.0.0.99"})
        edit.add_child_resource(conf, "www", "script", {"ref": "httpd"}, parent_path=[("ip", "127.0.0.99")])
    settings.LUCI_HOME = tmp_path / "luci"
    gateway.reset()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    lab = make_lab(tmp_path, names, conf.to_string())
    try:
        for node in lab.nodes:
            keys.authorize(node.root, gateway.luci_public_key())
        lab.up(no_daemons=True)
        cluster = Cluster.objects.create(name="labcl")
        for node in lab.nodes:
            line, fingerprint = gateway.probe_host_key(node.address, node.port)
            Node.objects.create(cluster=cluster, name=node.name, address=node.address, port=node.port,
                                host_key=line, fingerprint=fingerprint)
        user = user_with(django_user_model, cluster, config=True)
        client.force_login(user)
        page = client.get(reverse("console:service_definition", args=[cluster.pk, "service:www"])).content.decode()
        assert 'name="base_version" value="5"' in page and '<span class="mono">httpd</span>' in page
        script_path = sv.encode_path((("ip", "127.0.0.99"), ("script", "httpd")))

        answer = client.post(reverse("console:service_set_flags", args=[cluster.pk, "service:www"]),
                             {"base_version": "5", "path": script_path, "subtree": "2"})
        assert answer.status_code == 302
        op = Operation.objects.get()
        assert answer["Location"] == reverse("console:services", args=[cluster.pk]) and op.state == Operation.DONE
        followed = client.get(answer["Location"]).content.decode()
        assert reverse("console:operation", args=[op.pk]) in followed  # the message links the push
        current = configs.fetch(cluster)
        assert current.version == 6
        assert edit.resource_at(current.conf, "www", [("ip", "127.0.0.99"), ("script", "httpd")]).get(
            "__independent_subtree") == "2"
        page = client.get(reverse("console:service_definition", args=[cluster.pk, "service:www"])).content.decode()
        assert '<span class="st st-warn">non-critical</span>' in page

        stale = client.post(reverse("console:service_add_resource", args=[cluster.pk, "service:www"]),
                            {"base_version": "5", "parent": "[]", "mode": "ref", "resource": "script=httpd"})
        assert stale.status_code == 409
        text = stale.content.decode()
        assert "moved on from version 5 to 6" in text and '<pre class="diff">' in text
        assert configs.fetch(cluster).version == 6
        assert AuditEntry.objects.filter(action="service.add_resource", result="refused").count() == 1

        confirm = client.get(reverse("console:service_delete", args=[cluster.pk, "service:www"])).content.decode()
        assert "Delete service:www?" in confirm and 'name="base_version" value="6"' in confirm
        assert configs.fetch(cluster).version == 6  # asking changed nothing
        client.post(reverse("console:service_delete", args=[cluster.pk, "service:www"]), {"base_version": "6"})
        current = configs.fetch(cluster)
        assert current.version == 7 and edit.find_service(current.conf, "www") is None
        assert AuditEntry.objects.filter(action="service.delete", result="ok").count() == 1

        form = client.get(reverse("console:service_create", args=[cluster.pk])).content.decode()
        assert 'name="base_version" value="7"' in form
        client.post(reverse("console:service_create", args=[cluster.pk]),
                    {"base_version": "7", "name": "mail", "autostart": "1", "recovery": "disable",
                     "max_restarts": "2", "restart_expire_time": "60"})
        mail = edit.find_service(configs.fetch(cluster).conf, "service:mail")
        assert mail is not None and (mail.get("recovery"), mail.get("max_restarts")) == ("disable", "2")
    finally:
        app.conf.task_always_eager = eager
        gateway.reset()
        lab.down()
