"""The API's services and VMs: definitions as JSON (attributes and resource tree) read and replaced without losing
action overrides or unknown XML, and on a real lab with its daemons running: the list with state, relocation,
a frozen service's refusal as a 409 problem with the RG code, a service created with its tree on every node
(one version up), a stale If-Match (412 with the diff), an invalid definition (422 with reports), and a viewer
refused the commands (403)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster_conf import ClusterConf, edit
from luci_web.clusters.edits import services as edits
from tests.conftest import SMALL_CONF

PROBLEM = "application/problem+json"


# -- the pure functions --------------------------------------------------------------------------------------------
def applied(*changes: Any) -> ClusterConf:
    conf = ClusterConf.from_string(SMALL_CONF)
    with conf.transaction():
        for change in changes:
            change(conf)
    return conf


def test_a_definition_read_and_put_back_keeps_action_overrides_unknown_xml_and_flag_spellings():
    conf = ClusterConf.from_string(SMALL_CONF)
    with conf.transaction(bump=False):
        ip = edit.resource_at(conf, "www", [("ip", "10.0.0.50")])
        edit.set_action(conf, ip, "status", depth="10", interval="30")
        edit.add_child_resource(conf, "www", "x-note", {"keep": "me"})  # no key: the API cannot address it
        edit.set_child_resource_attrs(conf, "www", [("ip", "10.0.0.50"), ("script", "httpd")],
                                      {"__independent_subtree": "yes"})
        edit.set_service_attrs(conf, "www", {"x-site": "rack7"})
    shown = edits.service_dict(edit.find_service(conf, "service:www"))
    assert (shown["id"], shown["kind"], shown["domain"], shown["recovery"], shown["autostart"]) == (
        "service:www", "service", "web", "relocate", True)
    assert shown["attributes"] == {"x-site": "rack7"}
    script = shown["resources"][0]["children"][0]
    assert (script["type"], script["ref"], script["subtree"], script["enforce_timeouts"]) == (
        "script", "httpd", "independent", False)
    body = {k: shown[k] for k in edits.TYPED} | {"attributes": shown["attributes"], "resources": shown["resources"]}
    with conf.transaction():
        edits.replace_service("service:www", edits.definition_attrs(body), edits.tree_from(body["resources"]))(conf)
    assert conf.config_version == 4
    text = conf.to_string()
    assert '<action name="status" depth="10" interval="30"/>' in text and text.count("<x-note") == 1
    assert '<script ref="httpd" __independent_subtree="yes"/>' in text and 'x-site="rack7"' in text
    assert "hand-written note that must survive edits" in text


def test_put_replaces_the_tree_changing_kept_resources_in_place():
    tree = edits.tree_from([
        {"type": "ip", "ref": "10.0.0.50", "subtree": "non-critical", "enforce_timeouts": True,
         "children": [{"type": "fs", "attributes": {"name": "data", "mountpoint": "/srv", "device": "/dev/sdb1"}}]},
        {"type": "script", "ref": "httpd"}])
    conf = applied(edits.replace_service("www", {"recovery": "disable"}, tree))
    www = edit.find_service(conf, "www")
    assert dict(www.attrib) == {"name": "www", "recovery": "disable"}  # domain dropped: not in the definition
    shown = edits.service_dict(edit.find_service(conf, "www"))["resources"]
    assert [(n["type"], n["ref"], n["subtree"], n["enforce_timeouts"]) for n in shown] == [
        ("ip", "10.0.0.50", "non-critical", True), ("script", "httpd", "critical", False)]
    assert [(c["type"], c["attributes"]["name"]) for c in shown[0]["children"]] == [("fs", "data")]


def test_bad_trees_and_attributes_name_the_field():
    cases = [
        ([{"type": "service"}], "resources[0].type"),
        ([{"type": "ip", "attributes": {"ref": "x"}}], "resources[0].attributes"),
        ([{"type": "ip", "subtree": "sometimes"}], "resources[0].subtree"),
        ([{"type": "x-thing", "children": [{"type": "ip", "ref": "a"}]}], "resources[0]"),
        ([{"type": "ip", "ref": "a"}, {"type": "ip", "ref": "a"}], "resources[1]"),
        ([{"type": "ip", "ref": "a", "children": [{"type": "fs", "attributes": {"name": "\x01"}}]}],
         "resources[0].children[0].attributes"),
    ]
    for tree, field in cases:
        with pytest.raises(edits.FormError) as caught:
            edits.tree_from(tree)
        assert caught.value.field == field, tree
    for body, field in (({"recovery": "pray"}, "recovery"), ({"restart_expire_time": "soon"}, "restart_expire_time"),
                        ({"attributes": {"domain": "x"}}, "attributes"), ({"attributes": {"a b": "x"}}, "attributes")):
        with pytest.raises(edits.FormError) as caught:
            edits.definition_attrs(body)
        assert caught.value.field == field
    assert edits.patch_attrs({"autostart": False, "domain": None, "attributes": {"depend": None}}) == {
        "autostart": "0", "domain": None, "depend": None}


# -- a real lab with its daemons -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")
    from tests.ricci_fixtures import lab_up

    with lab_up(tmp_path_factory.mktemp("apisvc") / "lab", 3) as lab:
        yield lab


def webservice(row: Any) -> dict[str, Any]:
    from luci_web.clusters import gateway

    status = gateway.call(row, "rgmanager.status")
    return next((s for s in status.get("services") or [] if s["name"] == "service:webservice"), {})


@pytest.fixture
def cluster(lab, settings, tmp_path: Path, db) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The lab registered in luci, its webservice started, and the status luci's watcher would have stored."""
    from luci_web.clusters.status import read_status
    from tests.luci_fixtures import registered
    from tests.ricci_fixtures import wait_until

    with registered(lab, settings, tmp_path / "luci") as cluster:
        rows = list(cluster.nodes.all())
        wait_until("webservice started", lambda: webservice(rows[0]).get("state_str") == "started", timeout=45,
                   step=0.3)
        cluster.status = read_status(rows, cluster.name)
        cluster.save()
        yield cluster


def node_versions(lab: Any) -> list[int]:
    return [ClusterConf.load(n.config_path).config_version for n in lab.nodes]


def problem(answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, (answer.status_code, answer.content[:400])
    assert answer["Content-Type"] == PROBLEM
    body = answer.json()
    assert body["code"] == code and body["status"] == status, body
    return body


@pytest.mark.slow
def test_services_listed_with_state_relocated_frozen_refused_and_viewers_refused(lab, cluster):  # type: ignore[no-untyped-def]
    from luci_web.audit.models import AuditEntry
    from tests.luci_fixtures import token_client, user_with

    operator = token_client(user_with("operator", cluster, {"view", "service_cmd"}))
    viewer = token_client(user_with("viewer", cluster, {"view"}))
    base = f"/api/v1/clusters/{cluster.name}/services/"

    listed = operator.get(base)
    assert listed.status_code == 200 and listed["ETag"] == f'"{node_versions(lab)[0]}"'
    web = next(s for s in listed.json() if s["id"] == "service:webservice")
    assert web["kind"] == "service" and web["url"] == base + "service:webservice/"
    assert web["status"]["state_str"] == "started" and web["status"]["owner"] in {n.name for n in lab.nodes}
    assert {r["type"] for r in web["resources"]} >= {"ip"}
    assert operator.get(base + "webservice/").json()["id"] == "service:webservice"  # clusvcadm's short name
    problem(operator.get(base + "nothere/"), 404, "SERVICE_NOT_FOUND")

    problem(viewer.post(base + "webservice/relocate/", {}, format="json"), 403, "PERMISSION_DENIED")
    assert not AuditEntry.objects.filter(action__startswith="service.").exists()
    problem(operator.post(base + "webservice/migrate/", {"node": lab.nodes[0].name}, format="json"), 400,
            "BAD_REQUEST")  # only vms migrate
    problem(operator.post(base + "webservice/relocate/", {"node": "elsewhere"}, format="json"), 400, "BAD_REQUEST")

    was = web["status"]["owner"]
    target = next(n.name for n in lab.nodes if n.name != was)
    moved = operator.post(base + "webservice/relocate/", {"node": target}, format="json")
    assert moved.status_code == 200, moved.content
    result = moved.json()
    assert (result["ok"], result["code"], result["text"], result["owner"], result["target"]) == (
        True, 0, "Success", target, target)
    rows = list(cluster.nodes.all())
    assert webservice(rows[0])["owner"] == target and webservice(rows[0])["state_str"] == "started"
    fresh = operator.get(f"/api/v1/clusters/{cluster.name}/status/?fresh=1").json()
    assert next(s for s in fresh["services"] if s["name"] == "service:webservice")["owner"] == target
    entry = AuditEntry.objects.get(action="service.relocate")
    assert (entry.username, entry.result, entry.detail["target"]) == ("operator", "ok", target)

    assert operator.post(base + "webservice/freeze/", format="json").json()["message"] == \
        "service:webservice is frozen"
    try:
        refused = problem(operator.post(base + "webservice/relocate/", {"node": was}, format="json"), 409,
                          "RG_EFROZEN")
        assert refused["rg_code"] == -11 and "frozen" in refused["rg_text"].lower()
        assert AuditEntry.objects.filter(action="service.relocate", result="refused").count() == 1
    finally:
        assert operator.post(base + "webservice/unfreeze/", format="json").status_code == 200
    assert webservice(rows[0])["owner"] == target


@pytest.mark.slow
def test_definitions_created_patched_refused_and_deleted_through_pushes(lab, cluster):  # type: ignore[no-untyped-def]
    from luci_web.audit.models import AuditEntry
    from tests.luci_fixtures import token_client, user_with

    admin = token_client(user_with("admin", cluster, {"view", "config"}))
    base = f"/api/v1/clusters/{cluster.name}/services/"
    version = node_versions(lab)[0]
    assert node_versions(lab) == [version] * 3

    created = admin.post(base, {
        "name": "batch", "autostart": False, "recovery": "relocate", "max_restarts": 2,
        "resources": [{"type": "script", "attributes": {"name": "noop", "file": "/bin/true"},
                       "subtree": "independent",
                       "children": [{"type": "script", "attributes": {"name": "inner", "file": "/bin/false"}}]}]},
        format="json")
    assert created.status_code == 202, created.content
    assert created["Location"] == created.json()["url"]
    assert admin.get(created["Location"]).json()["state"] == "done"
    assert node_versions(lab) == [version + 1] * 3
    for node in lab.nodes:
        tree = edits.resource_tree(ClusterConf.load(node.config_path), "service:batch")
        assert [(n.type, n.key, n.subtree) for n in tree] == [("script", "noop", "1")]
        assert [(n.type, n.key) for n in tree[0].children] == [("script", "inner")]
    shown = admin.get(base + "batch/")
    assert shown["ETag"] == f'"{version + 1}"'
    batch = shown.json()
    assert (batch["autostart"], batch["recovery"], batch["max_restarts"]) == (False, "relocate", 2)
    assert batch["resources"][0]["subtree"] == "independent"
    problem(admin.post(base, {"name": "batch"}, format="json"), 409, "SERVICE_EXISTS")

    stale = problem(admin.patch(base + "batch/", {"recovery": "disable"}, format="json",
                                HTTP_IF_MATCH=f'"{version}"'), 412, "CONFIG_CONFLICT")
    assert (stale["base_version"], stale["current_version"]) == (version, version + 1)
    assert "batch" in stale["diff"]
    assert node_versions(lab) == [version + 1] * 3

    invalid = problem(admin.put(base + "batch/", {"resources": [{"type": "fs", "attributes": {"name": "data"}}]},
                                format="json"), 422, "INVALID_CONFIG")
    assert {r["code"] for r in invalid["reports"]} == {"RESOURCE_PARAM_MISSING"}
    problem(admin.post(base, {"name": "bad name"}, format="json"), 400, "BAD_REQUEST")
    deep: dict[str, Any] = {"type": "script", "ref": "leaf"}
    for level in range(200):
        deep = {"type": "script", "ref": f"s{level}", "children": [deep]}
    assert problem(admin.put(base + "batch/", {"resources": [deep]}, format="json"), 400,
                   "BAD_REQUEST")["errors"] == {"resources": ["the resource tree is too large"]}
    assert node_versions(lab) == [version + 1] * 3
    assert AuditEntry.objects.filter(result="refused", action__in=("service.edit", "service.replace")).count() == 2

    patched = admin.patch(base + "batch/", {"recovery": "disable", "attributes": {"depend_mode": "soft"}},
                          format="json", HTTP_IF_MATCH=f'"{version + 1}"')
    assert patched.status_code == 202 and node_versions(lab) == [version + 2] * 3
    batch = admin.get(base + "service:batch/").json()
    assert batch["recovery"] == "disable" and batch["attributes"] == {"depend_mode": "soft"}
    assert batch["max_restarts"] == 2 and batch["resources"][0]["children"][0]["attributes"]["name"] == "inner"

    put_back = admin.put(base + "batch/", batch, format="json", HTTP_IF_MATCH=f'"{version + 2}"')  # GET's shape
    assert put_back.status_code == 202, put_back.content
    again = admin.get(base + "batch/").json()
    assert node_versions(lab) == [version + 3] * 3
    assert {k: v for k, v in again.items() if k != "status"} == {k: v for k, v in batch.items() if k != "status"}

    assert admin.delete(base + "batch/").status_code == 202
    assert node_versions(lab) == [version + 4] * 3
    problem(admin.get(base + "batch/"), 404, "SERVICE_NOT_FOUND")
    problem(admin.delete(base + "batch/"), 404, "SERVICE_NOT_FOUND")
    actions = list(AuditEntry.objects.filter(result="ok").order_by("at").values_list("action", flat=True))
    assert [a for a in actions if a.startswith("service.")] == ["service.create", "service.edit", "service.replace",
                                                                 "service.delete"]


# -- secrets: write-only in definitions, kept by a PUT that does not name them ---------------------------------------
def _with_secrets() -> ClusterConf:
    """SMALL_CONF plus a vm with a migrate_passwd, an inline script with a password and an unkeyed resource with a
    secret_key under www."""
    conf = ClusterConf.from_string(SMALL_CONF)
    with conf.transaction(bump=False):
        edit.add_service(conf, "guest", {"path": "/vms", "migrate_passwd": "VM-SECRET", "autostart": "0"}, kind="vm")
        edit.add_child_resource(conf, "www", "script", {"name": "db", "file": "/bin/true", "password": "RES-SECRET"})
        edit.add_child_resource(conf, "www", "x-vault", {"keep": "me", "secret_key": "KEY-SECRET"})
    return conf


def _put_back(conf: ClusterConf, service: str, change: Any = None) -> dict[str, Any]:
    """GET's dict of `service` (changed by `change`) given to replace_service as a PUT body; the dict shown."""
    import json

    shown = edits.service_dict(edit.find_service(conf, service))
    body = json.loads(json.dumps(shown))  # what a client gets and sends back
    if change:
        change(body)
    with conf.transaction():
        edits.replace_service(service, edits.definition_attrs(body), edits.tree_from(body["resources"]))(conf)
    return shown


def test_definitions_never_give_a_secret_name_it_in_secrets_set_and_a_put_round_trip_keeps_it():
    import json

    conf = _with_secrets()
    guest = edits.service_dict(edit.find_service(conf, "vm:guest"))
    www = edits.service_dict(edit.find_service(conf, "service:www"))
    for secret in ("VM-SECRET", "RES-SECRET", "KEY-SECRET"):
        assert secret not in json.dumps(guest) + json.dumps(www)
    assert (guest["attributes"], guest["secrets_set"]) == ({"path": "/vms"}, ["migrate_passwd"])
    assert www["secrets_set"] == []
    db = next(n for n in www["resources"] if n["attributes"].get("name") == "db")
    vault = next(n for n in www["resources"] if n["type"] == "x-vault")
    assert (db["attributes"], db["secrets_set"]) == ({"name": "db", "file": "/bin/true"}, ["password"])
    assert (vault["attributes"], vault["secrets_set"]) == ({"keep": "me"}, ["secret_key"])
    # the console's form values (a viewer sees them as facts) mask it too
    assert edits.form_values(edit.find_service(conf, "vm:guest"))["migrate_passwd"] == "********"

    _put_back(conf, "vm:guest")
    _put_back(conf, "service:www")
    text = conf.to_string()
    assert 'migrate_passwd="VM-SECRET"' in text and 'password="RES-SECRET"' in text
    assert text.count("<x-vault") == 1 and 'secret_key="KEY-SECRET"' in text  # kept, not added a second time
    assert edits.service_dict(edit.find_service(conf, "vm:guest")) == guest

    # a value given replaces a secret, null removes it (the service's and a resource's)
    def change(body: dict[str, Any]) -> None:
        body["attributes"]["migrate_passwd"] = "VM-NEW"
    _put_back(conf, "vm:guest", change)
    assert edit.find_service(conf, "vm:guest").get("migrate_passwd") == "VM-NEW"

    def clear(body: dict[str, Any]) -> None:
        body["attributes"]["migrate_passwd"] = None

    def clear_db(body: dict[str, Any]) -> None:
        next(n for n in body["resources"] if n["attributes"].get("name") == "db")["attributes"]["password"] = None
    _put_back(conf, "vm:guest", clear)
    _put_back(conf, "service:www", clear_db)
    assert edit.find_service(conf, "vm:guest").get("migrate_passwd") is None
    assert edit.resource_at(conf, "www", [("script", "db")]).get("password") is None
    assert edits.service_dict(edit.find_service(conf, "vm:guest"))["secrets_set"] == []


@pytest.mark.slow
def test_a_secret_is_never_in_a_get_and_survives_a_get_then_put_on_every_node(lab, cluster):  # type: ignore[no-untyped-def]
    import json

    from django.test import Client

    from tests.luci_fixtures import token_client, user_with

    admin = token_client(user_with("secretadmin", cluster, {"view", "config"}))
    base = f"/api/v1/clusters/{cluster.name}/services/"
    svc_secret, res_secret = "svc-S3cret-one", "res-S3cret-two"
    created = admin.post(base, {
        "name": "vault", "autostart": False, "attributes": {"x_password": svc_secret},
        "resources": [{"type": "script", "attributes": {"name": "vaultd", "file": "/bin/true",
                                                        "password": res_secret}}]}, format="json")
    assert created.status_code == 202, created.content
    try:
        version = node_versions(lab)[0]
        assert all(svc_secret in n.config_path.read_text() for n in lab.nodes)
        listed, one = admin.get(base), admin.get(base + "vault/")
        assert listed.status_code == one.status_code == 200
        for answer in (listed, one):
            assert svc_secret not in answer.content.decode() and res_secret not in answer.content.decode()
        vault = one.json()
        assert vault["secrets_set"] == ["x_password"] and "x_password" not in vault["attributes"]
        assert vault["resources"][0]["secrets_set"] == ["password"]
        assert vault["resources"][0]["attributes"] == {"name": "vaultd", "file": "/bin/true"}

        # the console's definition page, for a viewer, shows the attributes as facts: masked
        viewer = Client(HTTP_HOST="127.0.0.1")
        viewer.force_login(user_with("secretviewer", cluster, {"view"}))
        page = viewer.get(f"/clusters/{cluster.pk}/services/service:vault/")
        assert page.status_code == 200 and b"x_password" in page.content
        assert svc_secret.encode() not in page.content and b"********" in page.content

        vault["recovery"] = "disable"
        put = admin.put(base + "vault/", vault, format="json", HTTP_IF_MATCH=one["ETag"])
        assert put.status_code == 202, put.content
        assert admin.get(put["Location"]).json()["state"] == "done"
        assert node_versions(lab) == [version + 1] * 3
        for node in lab.nodes:
            service = edit.find_service(ClusterConf.load(node.config_path), "service:vault")
            assert (service.get("x_password"), service.get("recovery")) == (svc_secret, "disable")
            script = edit.resource_at(ClusterConf.load(node.config_path), "service:vault", [("script", "vaultd")])
            assert script.get("password") == res_secret
        again = admin.get(base + "vault/").json()
        assert {k: v for k, v in again.items() if k != "status"} == {k: v for k, v in vault.items() if k != "status"}
        assert res_secret not in json.dumps(again)

        removed = admin.put(base + "vault/", {**vault, "attributes": {"x_password": None}}, format="json")
        assert removed.status_code == 202, removed.content
        for node in lab.nodes:
            text = node.config_path.read_text()
            assert svc_secret not in text and res_secret in text
        assert admin.get(base + "vault/").json()["secrets_set"] == []
    finally:
        assert admin.delete(base + "vault/").status_code == 202
