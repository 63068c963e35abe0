"""The REST API's configuration document, history and what-if against a real lab (ricci agents on a free 127.x
block, no cluster daemons; Celery eager): GET in JSON and XML with the version as ETag and secrets masked; a whole
document PUT with If-Match reaching every node as version N+1 (a masked secret kept); the refusals (428 without
If-Match, 412 stale, 422 invalid with reports, 400 not well-formed, 422 NODES_CHANGED, 403 for a viewer); the
history list, one version, the semantic diff and a rollback whose result differs from its target only in
config_version; what-if on a failed member."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from cluster_conf import ClusterConf, edit
from cluster_conf.diff import diff
from tests.luci_fixtures import registered, token_client, user_with

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")

PROBLEM = "application/problem+json"
SECRET = "s3cret-Fence-pw"
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.ricci_fixtures import lab_up

    with lab_up(tmp_path_factory.mktemp("apicfg") / "lab", 2, no_daemons=True) as lab:
        yield lab


@pytest.fixture
def cluster(lab, settings, tmp_path: Path) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = FAST_HASHERS
    with registered(lab, settings, tmp_path / "luci") as cluster:
        yield cluster


@pytest.fixture
def admin(cluster) -> Any:  # type: ignore[no-untyped-def]
    return token_client(user_with("cfgadmin", cluster, {"view", "config"}))


def _url(cluster: Any, tail: str = "") -> str:
    return f"/api/v1/clusters/{cluster.name}/config/{tail}"


def _node_versions(lab: Any) -> list[int]:
    return [ClusterConf.load(n.config_path).config_version for n in lab.nodes]


def _current(cluster: Any) -> Any:
    from luci_web.clusters import configs

    return configs.fetch(cluster)


def _with_secret_device(cluster: Any) -> tuple[int, str]:
    """(the current version, the current document plus a fence device holding SECRET) as a PUT body."""
    current = _current(cluster)
    conf = ClusterConf.from_string(current.xml)
    if not any(d.get("name") == "apc" for d in conf.root.iter("fencedevice")):
        with conf.transaction(bump=False):
            edit.add_fence_device(conf, "apc", "fence_apc", {"ipaddr": "10.0.0.9", "login": "apc",
                                                              "passwd": SECRET})
    return current.version, conf.to_string()


def _done(op_id: str) -> Any:
    from luci_web.clusters.models import Operation

    op = Operation.objects.get(pk=op_id)
    assert op.state == Operation.DONE, op.message
    return op


# -- GET ------------------------------------------------------------------------------------------------------
def test_get_json_and_xml_with_the_version_as_etag(lab, cluster, admin) -> None:  # type: ignore[no-untyped-def]
    current = _current(cluster)
    answer = admin.get(_url(cluster))
    assert answer.status_code == 200, answer.content[:500]
    assert answer["ETag"] == f'"{current.version}"'
    body = answer.json()
    assert body["version"] == current.version and body["name"] == lab.cluster_name
    assert body["xml"] == current.xml  # no secret in the lab's document: the text exactly as the nodes have it
    assert body["document"]["tag"] == "cluster"
    tags = [c["tag"] for c in body["document"]["children"]]
    assert "clusternodes" in tags and "rm" in tags
    nodes = next(c for c in body["document"]["children"] if c["tag"] == "clusternodes")["children"]
    assert [n["attributes"]["name"] for n in nodes] == [n.name for n in lab.nodes]

    xml = admin.get(_url(cluster), HTTP_ACCEPT="application/xml")
    assert xml.status_code == 200 and xml["Content-Type"].startswith("application/xml")
    assert xml["ETag"] == f'"{current.version}"'
    assert xml.content.decode() == current.xml

    assert admin.get(_url(cluster), HTTP_ACCEPT="text/html").status_code == 406


# -- PUT ------------------------------------------------------------------------------------------------------
def test_put_with_if_match_reaches_every_node_and_keeps_a_masked_secret(lab, cluster, admin) -> None:  # type: ignore[no-untyped-def]
    from luci_web.audit.models import AuditEntry
    from luci_web.clusters.models import ConfigNote

    version, text = _with_secret_device(cluster)
    answer = admin.put(_url(cluster), text.encode(), content_type="application/xml", HTTP_IF_MATCH=f'"{version}"',
                       HTTP_X_LUCI_REASON="add the apc switch")
    assert answer.status_code == 202, answer.content[:1000]
    assert answer["Location"] == f"/api/v1/tasks/{answer.json()['id']}/"
    _done(answer.json()["id"])
    assert _node_versions(lab) == [version + 1] * len(lab.nodes)
    assert all(SECRET in n.config_path.read_text() for n in lab.nodes)
    note = ConfigNote.objects.get(cluster=cluster, version=version + 1)
    assert (note.author, note.reason) == ("cfgadmin", "add the apc switch")
    assert AuditEntry.objects.filter(action="config.replace", result="ok").exists()
    assert not any(SECRET in str(e.detail) + e.message for e in AuditEntry.objects.all())

    # GET never gives the secret, in either form; the masked document PUT back (JSON body) keeps it
    got = admin.get(_url(cluster))
    assert SECRET not in got.content.decode() and 'passwd="********"' in got.json()["xml"]
    device = next(d for d in _walk(got.json()["document"]) if d["tag"] == "fencedevice" and
                  d["attributes"].get("name") == "apc")
    assert device["attributes"]["passwd"] == "********"
    assert SECRET not in admin.get(_url(cluster), HTTP_ACCEPT="application/xml").content.decode()
    masked = got.json()["xml"].replace('login="apc"', 'login="apc2"')
    answer = admin.put(_url(cluster), {"xml": masked, "reason": "new login"}, format="json",
                       HTTP_IF_MATCH=got["ETag"])
    assert answer.status_code == 202, answer.content[:1000]
    _done(answer.json()["id"])
    assert _node_versions(lab) == [version + 2] * len(lab.nodes)  # config_version in the body was version+1
    for node in lab.nodes:
        written = node.config_path.read_text()
        assert SECRET in written and 'login="apc2"' in written and "********" not in written


def _walk(element: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield element
    for child in element["children"]:
        yield from _walk(child)


def test_put_refusals(lab, cluster, admin) -> None:  # type: ignore[no-untyped-def]
    from luci_web.audit.models import AuditEntry
    from luci_web.clusters.models import Operation

    current = _current(cluster)
    version, text = current.version, current.xml

    missing = admin.put(_url(cluster), text.encode(), content_type="application/xml")
    assert missing.status_code == 428 and missing["Content-Type"] == PROBLEM
    assert missing.json()["code"] == "IF_MATCH_REQUIRED"

    stale = admin.put(_url(cluster), text.encode(), content_type="application/xml",
                      HTTP_IF_MATCH=f'"{version - 1}"')
    assert stale.status_code == 412 and stale["Content-Type"] == PROBLEM
    body = stale.json()
    assert (body["code"], body["current_version"], body["base_version"]) == ("CONFIG_CONFLICT", version, version - 1)

    invalid = text.replace('<failoverdomainnode name="', '<failoverdomainnode name="ghost-', 1)
    assert invalid != text
    refused = admin.put(_url(cluster), invalid.encode(), content_type="application/xml",
                        HTTP_IF_MATCH=f'"{version}"')
    assert refused.status_code == 422 and refused["Content-Type"] == PROBLEM, refused.content[:500]
    assert refused.json()["code"] == "INVALID_CONFIG"
    assert any(r["severity"] == "error" and "ghost-" in r["message"] for r in refused.json()["reports"])

    broken = admin.put(_url(cluster), b"<cluster name='x'><clusternodes></cluster>", content_type="application/xml",
                       HTTP_IF_MATCH=f'"{version}"')
    assert broken.status_code == 400 and broken.json()["code"] == "XML_MALFORMED"

    conf = ClusterConf.from_string(text)
    with conf.transaction(bump=False):
        edit.remove_node(conf, lab.nodes[-1].name)
    fewer = admin.put(_url(cluster), conf.to_string().encode(), content_type="application/xml",
                      HTTP_IF_MATCH=f'"{version}"')
    assert fewer.status_code == 422 and fewer.json()["reports"][0]["code"] == "NODES_CHANGED"

    viewer = token_client(user_with("viewer", cluster, {"view"}))
    assert viewer.get(_url(cluster)).status_code == 200
    denied = viewer.put(_url(cluster), text.encode(), content_type="application/xml", HTTP_IF_MATCH=f'"{version}"')
    assert denied.status_code == 403 and denied.json()["code"] == "PERMISSION_DENIED"

    assert not Operation.objects.exists()
    assert _node_versions(lab) == [version] * len(lab.nodes)
    assert AuditEntry.objects.filter(action="config.replace", result="refused").count() == 3  # 412, 422, 422


# -- history --------------------------------------------------------------------------------------------------
def test_history_list_version_diff_and_rollback(lab, cluster, admin) -> None:  # type: ignore[no-untyped-def]
    from luci_web.audit.models import AuditEntry
    from luci_web.clusters import configs
    from luci_web.clusters.models import ConfigNote

    start = _current(cluster).version
    for alias in ("api-one", "api-two"):
        version, text = _with_secret_device(cluster)  # the apc device (with its secret) from the first version on
        conf = ClusterConf.from_string(text)
        with conf.transaction(bump=False):
            edit.set_cluster_attrs(conf, {"alias": alias})
        answer = admin.put(_url(cluster), conf.to_string().encode(), content_type="application/xml",
                           HTTP_IF_MATCH=f'"{version}"', HTTP_X_LUCI_REASON=f"set {alias}")
        assert answer.status_code == 202, answer.content[:500]
        _done(answer.json()["id"])
    latest = start + 2

    listing = admin.get(_url(cluster, "history/"))
    assert listing.status_code == 200 and listing["ETag"] == f'"{latest}"'
    body = listing.json()
    numbers = [v["version"] for v in body["versions"]]
    assert numbers[:3] == [latest, latest - 1, start] and body["current_version"] == latest
    top = body["versions"][0]
    assert top["current"] and (top["note_author"], top["reason"]) == ("cfgadmin", "set api-two")
    assert top["time"].endswith("+00:00")

    one = admin.get(_url(cluster, f"history/{latest - 1}/"), HTTP_ACCEPT="application/xml")
    assert one.status_code == 200 and 'alias="api-one"' in one.content.decode()
    assert admin.get(_url(cluster, f"history/{latest - 1}/")).json()["version"] == latest - 1
    assert SECRET not in one.content.decode() and 'passwd="********"' in one.content.decode()
    gone = admin.get(_url(cluster, "history/99999/"))
    assert gone.status_code == 404 and gone.json()["code"] == "VERSION_NOT_FOUND"

    changes = admin.get(_url(cluster, "diff/"), {"from": latest - 1, "to": latest})
    assert changes.status_code == 200
    assert changes.json()["text"].splitlines() == [f"config_version: {latest - 1} -> {latest}",
                                                   "~ cluster: alias: api-one -> api-two"]
    assert changes.json()["diff"]["config_version"] == {"old": str(latest - 1), "new": str(latest)}  # as written
    assert admin.get(_url(cluster, "diff/"), {"from": start}).json()["to_version"] == latest  # to: the current one
    bad = admin.get(_url(cluster, "diff/"), {"from": "x"})
    assert bad.status_code == 400 and bad.json()["code"] == "BAD_REQUEST" and "from" in bad.json()["errors"]

    stale = admin.post(_url(cluster, f"history/{start}/rollback/"), {"reason": "x"}, format="json",
                       HTTP_IF_MATCH=f'"{latest - 1}"')
    assert stale.status_code == 412 and stale.json()["current_version"] == latest
    same = admin.post(_url(cluster, f"history/{latest}/rollback/"), {}, format="json")
    assert same.status_code == 422
    answer = admin.post(_url(cluster, f"history/{start}/rollback/"), {"reason": "back to the start"}, format="json",
                        HTTP_IF_MATCH=f'"{latest}"')
    assert answer.status_code == 202, answer.content[:500]
    _done(answer.json()["id"])
    assert _node_versions(lab) == [latest + 1] * len(lab.nodes)
    now = _current(cluster)
    old = configs.fetch_version(cluster, start)
    assert diff(old, now.conf).to_text().splitlines() == [f"config_version: {start} -> {latest + 1}"]
    note = ConfigNote.objects.get(cluster=cluster, version=latest + 1)
    assert (note.author, note.reason) == ("cfgadmin", "back to the start")
    assert AuditEntry.objects.filter(action="config.rollback", result="refused").count() == 2

    viewer = token_client(user_with("histviewer", cluster, {"view"}))
    assert viewer.get(_url(cluster, "history/")).status_code == 200
    assert viewer.post(_url(cluster, f"history/{start}/rollback/"), {}, format="json").status_code == 403


# -- what-if --------------------------------------------------------------------------------------------------
def test_whatif_on_a_failed_member(lab, cluster) -> None:  # type: ignore[no-untyped-def]
    from cluster_conf.model import view
    from rgmanager.placement import catalog_of

    services = [s.id for s in catalog_of(view(_current(cluster).conf)).services]
    assert services, "the lab's configuration runs services"
    names = [n.name for n in lab.nodes]
    cluster.status = {"at": 1700000000.0, "quorum": {"quorate": True},
                      "members": [{"name": n, "online": True, "qdisk": False} for n in names],
                      "services": [{"name": s, "state": 112, "state_str": "started", "owner": names[0], "flags": 0,
                                    "last_owner": names[0], "last_transition": 1699999000.0} for s in services]}
    cluster.save()
    viewer = token_client(user_with("whatifviewer", cluster, {"view"}))  # a POST that changes nothing: view
    url = f"/api/v1/clusters/{cluster.name}/whatif/"
    answer = viewer.post(url, {"fail": [names[0]]}, format="json")
    assert answer.status_code == 200, answer.content[:500]
    body = answer.json()
    row = next(r for r in body["placement"] if r["service"] == services[0])
    assert (row["owner"], row["new_owner"], row["moves"]) == (names[0], names[1], True)
    assert any(f"node-down {names[0]}" in s["event"] for s in body["steps"])
    assert body["online_after"] == names[1:]
    assert {n["name"]: n["online"] for n in body["nodes"]} == {n: True for n in names}

    refused = viewer.post(url, {"return": [names[0]]}, format="json")
    assert refused.status_code == 422 and refused.json()["code"] == "WHATIF_REFUSED"
    assert "is a member already" in refused.json()["detail"]
    unknown = viewer.post(url, {"fail": ["nosuchnode"]}, format="json")
    assert unknown.status_code == 422 and "nosuchnode" in unknown.json()["detail"]
    bad = viewer.post(url, {"fail": "node1"}, format="json")
    assert bad.status_code == 400 and "fail" in bad.json()["errors"]


# -- secrets masked by parsing, whatever quotes come before them ------------------------------------------------
ODD_QUOTE = ('<cluster name="a" config_version="2"><!-- note=" --><fencedevices><fencedevice passwd="TOPSECRET" '
             'name="f" agent="fence_apc"/></fencedevices></cluster>')


def test_an_odd_quote_in_a_comment_does_not_unmask_a_secret_and_the_mask_put_back_keeps_it() -> None:
    from luci_web.clusters import documents

    masked = documents.masked_xml(ODD_QUOTE)
    assert "TOPSECRET" not in masked
    assert masked == ODD_QUOTE.replace("TOPSECRET", "********")  # comments and everything else as they were
    text = ('<?xml version="1.0"?>\n<!-- 19" rack; old passwd="PROLOGSECRET" -->\n<cluster name="a" '
            'config_version="2">\n  <!-- 19" rack <fencedevice name="old" password=\'OLD SECRET\' community=pub> '
            '-->\n  <fencedevices>\n    <fencedevice name="f" agent="fence_apc" login="l" passwd="TOPSECRET" '
            'passwd_script="/bin/pw" snmp_priv_passwd=""/>\n  </fencedevices>\n</cluster>\n'
            '<!-- passwd=EPILOGSECRET -->\n')
    masked = documents.masked_xml(text)
    for secret in ("PROLOGSECRET", "OLD SECRET", "community=pub", "TOPSECRET", "EPILOGSECRET"):
        assert secret not in masked, secret
    assert 'passwd="********"' in masked and 'passwd_script="/bin/pw"' in masked and 'snmp_priv_passwd=""' in masked
    assert '<!-- 19" rack; old passwd="********" -->' in masked and "<!-- passwd=******** -->" in masked
    assert masked.startswith('<?xml version="1.0"?>\n<!-- 19" rack') and masked.endswith("-->\n")
    # the masked document PUT back: the edit takes the secret from the current document
    current = ClusterConf.from_string(text)
    with current.transaction():
        documents.replace_with(ClusterConf.from_string(masked))(current)
    device = next(current.root.iter("fencedevice"))
    assert device.get("passwd") == "TOPSECRET" and device.get("passwd_script") == "/bin/pw"
    assert any('19" rack' in (c.text or "") for c in current.root.iter(etree.Comment))
    plain = '<cluster name="a" config_version="2"><!-- 19" --><clusternodes/></cluster>\n'
    assert documents.masked_xml(plain) == plain  # nothing secret: the text exactly as the nodes have it


def test_get_and_history_mask_a_secret_after_an_odd_quote_in_both_forms(lab, cluster, admin) -> None:  # type: ignore[no-untyped-def]
    version, text = _with_secret_device(cluster)
    conf = ClusterConf.from_string(text)
    with conf.transaction(bump=False):
        devices = conf.section("fencedevices")
        assert devices is not None
        devices.addnext(etree.Comment(f' <fencedevice name="old" passwd="{SECRET}-old"/> '))
        pdu = next((d for d in devices if d.get("name") == "pdu"), None)
        if pdu is None:  # its secret first: the old regex masking read `" 19 --><fencedevice passwd="` as a value
            devices.append(etree.Comment(' the pdu: rack unit=" 19 '))
            etree.SubElement(devices, "fencedevice", {"passwd": f"{SECRET}-pdu", "name": "pdu",
                                                      "agent": "fence_apc", "ipaddr": "10.0.0.10", "login": "pdu"})
    conf.mark_edited()
    answer = admin.put(_url(cluster), conf.to_string().encode(), content_type="application/xml",
                       HTTP_IF_MATCH=f'"{version}"')
    assert answer.status_code == 202, answer.content[:500]
    _done(answer.json()["id"])
    assert all(SECRET in n.config_path.read_text() for n in lab.nodes)
    pushed = version + 1

    for tail in ("", f"history/{pushed}/"):
        as_xml = admin.get(_url(cluster, tail), HTTP_ACCEPT="application/xml")
        as_json = admin.get(_url(cluster, tail))
        assert as_xml.status_code == as_json.status_code == 200, (tail, as_xml.content[:300])
        assert as_xml["ETag"] == as_json["ETag"] == f'"{pushed}"'
        for body in (as_xml.content.decode(), as_json.content.decode(), as_json.json()["xml"]):
            assert SECRET not in body, tail
        for xml in (as_xml.content.decode(), as_json.json()["xml"]):
            assert '<!-- the pdu: rack unit=" 19 --><fencedevice passwd="********" name="pdu"' in xml, tail
            assert xml.count("********") == 3, tail  # the two devices and the comment
        device = next(d for d in _walk(as_json.json()["document"]) if d["tag"] == "fencedevice" and
                      d["attributes"].get("name") == "apc")
        assert device["attributes"]["passwd"] == "********"

    # the masked XML PUT back as JSON keeps the secret and the comment on every node
    got = admin.get(_url(cluster))
    back = ClusterConf.from_string(got.json()["xml"])
    with back.transaction(bump=False):
        edit.set_cluster_attrs(back, {"alias": "odd-quote"})
    answer = admin.put(_url(cluster), {"xml": back.to_string()}, format="json", HTTP_IF_MATCH=got["ETag"])
    assert answer.status_code == 202, answer.content[:500]
    _done(answer.json()["id"])
    for node in lab.nodes:
        written = node.config_path.read_text()
        assert f'passwd="{SECRET}"' in written and f'passwd="{SECRET}-pdu"' in written
        assert '<!-- the pdu: rack unit=" 19 -->' in written and 'alias="odd-quote"' in written
