"""The configuration tabs of the console (Failover Domains, Resources, Fence Devices, Configure).

Pure pieces first: each tab's edit function applied to a ClusterConf under one transaction (exactly one version
bump, unknown XML kept), report-to-field matching. Then the views against a real lab (ricci agents on a free
127.x block, no cluster daemons): a domain added through the page reaches every node as version N+1, a stale
base_version is refused with the diff, a viewer sees no forms, gets 403 on POST and never a password."""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_conf import ClusterConf
from cluster_conf.model import view
from luci_web.clusters.configs import errors_of
from luci_web.console.forms import ConfigForm, field_for
from luci_web.console.views import configure, domains, fence, resources

pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")


def _apply(text: str, fn) -> ClusterConf:  # type: ignore[no-untyped-def]
    conf = ClusterConf.from_string(text)
    with conf.transaction():
        fn(conf)
    return conf


def _kept(conf: ClusterConf) -> None:
    out = conf.to_string()
    assert "<!-- hand-written note that must survive edits -->" in out
    assert '<x-extension keep="me"/>' in out and 'x-site="rack7"' in out
    assert conf.config_version == 4  # SMALL_CONF is version 3: exactly one bump


# -- pure: edit functions -------------------------------------------------------------------------------------
def test_add_domain_one_bump_unknown_xml_kept(small_conf_text: str) -> None:
    conf = _apply(small_conf_text, domains.add_domain("db", True, True, False, [("n3", 1), ("n1", 2)]))
    _kept(conf)
    db = next(d for d in view(conf).domains if d.name == "db")
    assert (db.ordered, db.restricted, db.nofailback) == (True, True, False)
    assert [(m.name, m.priority) for m in db.nodes] == [("n3", 1), ("n1", 2)]
    assert not [r for r in errors_of(conf) if r["severity"] == "error"]


def test_update_domain_sets_flags_members_and_priorities_in_place(small_conf_text: str) -> None:
    text = small_conf_text.replace('<failoverdomainnode name="n2" priority="2"/>',
                                   '<failoverdomainnode name="n2" priority="2" x-note="keep"/>')
    conf = _apply(text, domains.update_domain("web", False, True, True, [("n2", 5), ("n3", None)]))
    _kept(conf)
    web = view(conf).domains[0]
    assert (web.ordered, web.restricted, web.nofailback) == (False, True, True)
    assert [(m.name, m.priority) for m in web.nodes] == [("n2", 5), ("n3", None)]
    assert 'x-note="keep"' in conf.to_string()


def test_resource_edit_functions(small_conf_text: str) -> None:
    conf = _apply(small_conf_text, resources.add_resource("fs", {"name": "data", "device": "/dev/sdb1",
                                                                 "mountpoint": "/data", "fstype": None}))
    _kept(conf)
    fs = next(r for r in view(conf).resources if r.type == "fs")
    assert fs.attrs == {"name": "data", "device": "/dev/sdb1", "mountpoint": "/data"}
    conf = _apply(small_conf_text, resources.update_resource("script", "httpd", {"file": "/etc/init.d/apache2"}, []))
    assert 'file="/etc/init.d/apache2"' in conf.to_string()
    # removing a resource a service still references: the result does not validate (the view shows it)
    conf = _apply(small_conf_text, resources.delete_resource("script", "httpd"))
    assert any(r["code"] == "RESOURCE_REF_UNRESOLVED" for r in errors_of(conf))


def test_fence_edit_keeps_a_blank_password(small_conf_text: str) -> None:
    form = fence.FenceDeviceForm({"base_version": "3", "name": "apc", "passwd": "",
                                  "extra": "login=apc\nipaddr=10.0.0.10"},
                                 agent=fence.AgentForm(agent="fence_apc"), editing=True)
    assert form.is_valid(), form.errors
    params = form.device_attrs()
    assert "passwd" not in params  # blank secret: kept
    conf = _apply(small_conf_text, fence.update_device("apc", params, []))
    _kept(conf)
    apc = view(conf).fence_devices[0]
    assert apc.params["passwd"] == "s3cret" and apc.params["ipaddr"] == "10.0.0.10"
    conf = _apply(small_conf_text, fence.add_device("dummy", "fence_dummy", {"type": "file", "delay": None}))
    assert view(conf).fence_devices[1].attrs == {"name": "dummy", "agent": "fence_dummy", "type": "file"}


def test_configure_edit_functions(small_conf_text: str) -> None:
    conf = _apply(small_conf_text, configure.set_general(
        {"cman": {"expected_votes": "3", "two_node": None}, "totem": {"token": "21000"},
         "fence_daemon": {"post_fail_delay": "5", "post_join_delay": "30"}}, "239.192.0.9"))
    _kept(conf)
    cv = view(conf)
    assert cv.totem == {"token": "21000"} and cv.fence_daemon == {"post_fail_delay": "5", "post_join_delay": "30"}
    assert cv.multicast_addr == "239.192.0.9"
    text = conf.to_string()
    conf = _apply(text, configure.set_quorum_disk(
        {"label": "qd", "device": None, "interval": "1", "tko": "10", "votes": "2", "min_score": "1"},
        [{"program": "ping -c1 10.0.0.1", "score": "1", "interval": "2", "tko": ""}]))
    assert conf.config_version == 5
    qd = view(conf).quorumd
    assert qd.attrs["label"] == "qd" and [h.program for h in qd.heuristics] == ["ping -c1 10.0.0.1"]
    conf = _apply(conf.to_string(), configure.set_quorum_disk({"label": "qd"}, []))
    assert view(conf).quorumd.heuristics == ()
    conf = _apply(small_conf_text, configure.set_logging_daemon("rgmanager", {"debug": "on", "to_syslog": None}))
    assert '<logging_daemon name="rgmanager" debug="on"/>' in conf.to_string()
    conf = _apply(conf.to_string(), configure.set_logging_daemon("rgmanager", {"debug": None}))
    assert "logging_daemon" not in conf.to_string()


def test_quorum_disk_form_checks() -> None:
    form = configure.QuorumDiskForm({"qdisk-base_version": "1", "qdisk-device": "/dev/sdc", "qdisk-label": "qd",
                                     "qdisk-h0_program": "true", "qdisk-h1_program": "true"}, prefix="qdisk")
    assert not form.is_valid()
    assert "not both" in str(form.errors["label"]) and "same program" in str(form.non_field_errors())


def test_reports_go_next_to_their_fields() -> None:
    form = domains.DomainForm({"base_version": "1", "name": "x", "member_n1": "on", "priority_n1": "200"},
                              nodes=["n1"])
    assert form.is_valid()
    left = form.attach_reports([
        {"severity": "error", "code": "BAD_ARGUMENT", "message": "priority must be between 1 and 100, not 200"},
        {"severity": "error", "code": "OTHER", "message": "something else entirely"},
        {"severity": "warning", "code": "W", "message": "name is odd"},
    ], form.priority_alias())
    assert "priority must be between 1 and 100" in str(form.errors["priority_n1"])
    assert [r["code"] for r in left] == ["OTHER"] and "name" not in form.errors
    names = {"post_fail_delay": "post_fail_delay", "delay": "delay"}
    assert field_for({"message": 'post_fail_delay is "x"'}, names) == "post_fail_delay"
    assert field_for({"message": "x", "path": "/cluster/totem/@delay"}, names) == "delay"
    assert ConfigForm({"base_version": "-1"}).is_valid() is False


# -- views with a real lab ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cfg_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator:  # type: ignore[type-arg]
    from tests.ricci_fixtures import lab_up

    with lab_up(tmp_path_factory.mktemp("cfglab") / "lab", 2, no_daemons=True) as lab:
        yield lab


@pytest.fixture
def luci(cfg_lab, settings, tmp_path: Path, django_user_model):  # type: ignore[no-untyped-def]
    """The lab registered in luci (host keys probed and pinned, luci's key authorised), Celery eager."""
    from luci_web.celery import app
    from luci_web.clusters import gateway
    from luci_web.clusters.models import Cluster, Node
    from ricci_agent import keys

    settings.LUCI_HOME = tmp_path
    gateway.reset()
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        cluster = Cluster.objects.create(name=cfg_lab.cluster_name)
        for node in cfg_lab.nodes:
            keys.authorize(node.root, gateway.luci_public_key())
            line, fp = gateway.probe_host_key(node.address, node.port)
            Node.objects.create(cluster=cluster, name=node.name, address=node.address, port=node.port,
                                host_key=line, fingerprint=fp)
        yield cluster
    finally:
        app.conf.task_always_eager = eager
        gateway.reset()


def _versions(lab) -> list[int]:  # type: ignore[no-untyped-def]
    return [ClusterConf.load(n.config_path).config_version for n in lab.nodes]


@pytest.mark.django_db
def test_add_domain_through_the_page_and_a_stale_version(cfg_lab, luci, client, django_user_model) -> None:  # type: ignore[no-untyped-def]
    from django.urls import reverse

    from luci_web.clusters.models import Operation

    admin = django_user_model.objects.create_superuser("admin", password="pw")
    client.force_login(admin)
    url = reverse("console:domains", args=[luci.pk])
    before = _versions(cfg_lab)
    assert len(set(before)) == 1
    page = client.get(url)
    assert page.status_code == 200
    html = page.content.decode()
    assert f"Configuration version <strong>{before[0]}</strong>" in html
    assert re.search(rf'name="base_version" value="{before[0]}"', html)

    names = [n.name for n in cfg_lab.nodes]
    post = {"op": "add", "base_version": str(before[0]), "name": "pref", "ordered": "on",
            f"member_{names[0]}": "on", f"priority_{names[0]}": "1",
            f"member_{names[1]}": "on", f"priority_{names[1]}": "2"}
    answer = client.post(url, post)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    op = Operation.objects.get()
    assert op.state == Operation.DONE, op.message
    assert _versions(cfg_lab) == [before[0] + 1] * len(names)  # exactly one bump on every node
    for node in cfg_lab.nodes:
        domain = next(d for d in view(ClusterConf.load(node.config_path)).domains if d.name == "pref")
        assert [(m.name, m.priority) for m in domain.nodes] == [(names[0], 1), (names[1], 2)]
    follow = client.get(url).content.decode()
    assert reverse("console:operation", args=[op.id]) in follow and "pref" in follow

    # the same form again, on the version it was built from: refused with the diff, nothing applied
    post["name"] = "other"
    stale = client.post(url, post)
    assert stale.status_code == 409
    html = stale.content.decode()
    assert f"The cluster moved on from version {before[0]} to {before[0] + 1}" in html
    assert "pref" in html.split('class="diff"')[1]  # the diff shows the domain added meanwhile
    assert _versions(cfg_lab) == [before[0] + 1] * len(names) and Operation.objects.count() == 1

    # a change the library refuses: the report is shown next to the field
    post.update(base_version=str(before[0] + 1), name="bad", **{f"priority_{names[0]}": "200"})
    bad = client.post(url, post)
    assert bad.status_code == 400
    assert re.search(r'priority must be between 1 and 100, not 200</p>', bad.content.decode())
    assert _versions(cfg_lab) == [before[0] + 1] * len(names)


@pytest.mark.django_db
def test_fence_device_with_a_password_and_a_viewer(cfg_lab, luci, client, django_user_model) -> None:  # type: ignore[no-untyped-def]
    from django.urls import reverse

    from luci_web.access.models import ClusterGrant

    admin = django_user_model.objects.create_superuser("admin2", password="pw")
    client.force_login(admin)
    url = reverse("console:fence", args=[luci.pk])
    version = _versions(cfg_lab)[0]
    form_page = client.get(url, {"agent": "fence_ipmilan"}).content.decode()
    if fence.fence_metadata.agent_path("fence_ipmilan") is not None:
        assert 'name="ipport"' in form_page and 'type="password" name="password"' in form_page
    answer = client.post(url, {"op": "add", "agent": "fence_ipmilan", "base_version": str(version),
                               "name": "bmc", "ip": "127.0.0.1", "username": "root", "password": "TopSecret9",
                               "extra": ""})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    stored = view(ClusterConf.load(cfg_lab.nodes[0].config_path))
    bmc = next(d for d in stored.fence_devices if d.name == "bmc")
    assert bmc.params["password"] == "TopSecret9" and _versions(cfg_lab) == [version + 1] * 2

    # edit with the password left empty: kept
    page = client.get(url).content.decode()
    assert "TopSecret9" not in page and "password=********" in page
    prefix = re.search(r'name="prefix" value="(f\d+)"><input type="hidden" name="f\d+-extra_names" value="">\s*'
                       r'(?:<p[^>]*>[^<]*</p>\s*)?', page)
    index = [d.name for d in stored.fence_devices].index("bmc")
    p = f"f{index}"
    assert prefix is not None
    answer = client.post(url, {"op": "edit", "agent": "fence_ipmilan", "prefix": p, f"{p}-base_version":
                               str(version + 1), f"{p}-name": "bmc", f"{p}-ip": "127.0.0.2",
                               f"{p}-password": "", f"{p}-extra_names": ""})
    assert answer.status_code == 302, answer.content.decode()[:3000]
    bmc = next(d for d in view(ClusterConf.load(cfg_lab.nodes[1].config_path)).fence_devices if d.name == "bmc")
    assert bmc.params["password"] == "TopSecret9" and bmc.params["ip"] == "127.0.0.2"

    viewer = django_user_model.objects.create_user("viewer", password="pw")
    ClusterGrant.objects.create(user=viewer, cluster=luci, view=True)
    client.force_login(viewer)
    for tab in ("fence", "domains", "resources", "configure"):
        tab_url = reverse(f"console:{tab}", args=[luci.pk])
        html = client.get(tab_url).content.decode()
        assert "<form method=\"post\" class" not in html and "TopSecret9" not in html, tab
        assert "Configuration version" in html
        assert client.post(tab_url, {"op": "add", "section": "general", "base_version": "1"}).status_code == 403
    assert _versions(cfg_lab) == [version + 2] * 2


@pytest.mark.django_db
def test_resources_and_configure_pages(cfg_lab, luci, client, django_user_model) -> None:  # type: ignore[no-untyped-def]
    from django.urls import reverse

    admin = django_user_model.objects.create_superuser("admin3", password="pw")
    client.force_login(admin)
    url = reverse("console:resources", args=[luci.pk])
    version = _versions(cfg_lab)[0]
    assert 'name="address"' in client.get(url, {"type": "ip"}).content.decode()
    answer = client.post(url, {"op": "add", "type": "ip", "base_version": str(version), "address": "127.9.9.9",
                               "monitor_link": "", "extra": ""})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert any(r.attrs.get("address") == "127.9.9.9" for r in view(ClusterConf.load(cfg_lab.nodes[0].config_path))
               .resources)
    conf_url = reverse("console:configure", args=[luci.pk])
    page = client.get(conf_url).content.decode()
    assert 'name="general-post_join_delay"' in page and 'name="qdisk-h9_program"' in page
    answer = client.post(conf_url, {"section": "general", "general-base_version": str(version + 1),
                                    "general-post_join_delay": "abc"})
    assert answer.status_code == 400
    html = answer.content.decode()
    field = html.split('name="general-post_join_delay"')[1].split("</div>")[0]
    assert "post_join_delay" in field and "field-error" in field  # the report sits next to its field
    assert _versions(cfg_lab) == [version + 1] * 2
    answer = client.post(conf_url, {"section": "general", "general-base_version": str(version + 1),
                                    "general-post_join_delay": "20", "general-token": "15000"})
    assert answer.status_code == 302, answer.content.decode()[:2000]
    cv = view(ClusterConf.load(cfg_lab.nodes[1].config_path))
    assert cv.fence_daemon["post_join_delay"] == "20" and cv.totem["token"] == "15000"
