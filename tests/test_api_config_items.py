"""The REST API's failover domains, fence devices, global resources and cluster-wide settings against a real lab
(ricci agents on a free 127.x block, no cluster daemons; Celery eager): every write reaches each node's
cluster.conf as version N+1; reads carry the version as ETag; a stale If-Match is 412 with current_version; a bad
value is 400 or 422; a duplicate 409, a missing item 404; fence passwords never leave luci (answers, audit) and a
write that does not name one keeps it; a viewer gets 403 on writes, a user without a grant 404."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cluster_conf import ClusterConf
from cluster_conf.model import view
from tests.luci_fixtures import registered, token_client, user_with

pytestmark = [pytest.mark.slow, pytest.mark.django_db]
pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")

PROBLEM = "application/problem+json"
SECRET = "Fence-pw-9f3k"
FAST_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.ricci_fixtures import lab_up

    with lab_up(tmp_path_factory.mktemp("apiitems") / "lab", 2, no_daemons=True) as lab:
        yield lab


@pytest.fixture
def cluster(lab, settings, tmp_path: Path) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    settings.PASSWORD_HASHERS = FAST_HASHERS
    with registered(lab, settings, tmp_path / "luci") as cluster:
        yield cluster


@pytest.fixture
def admin(cluster) -> Any:  # type: ignore[no-untyped-def]
    return token_client(user_with("itemsadmin", cluster, {"view", "config"}))


def _url(cluster: Any, tail: str) -> str:
    return f"/api/v1/clusters/{cluster.name}/{tail}"


def _versions(lab: Any) -> list[int]:
    return [ClusterConf.load(n.config_path).config_version for n in lab.nodes]


def _views(lab: Any) -> list[Any]:
    return [view(ClusterConf.load(n.config_path)) for n in lab.nodes]


def _pushed(answer: Any, lab: Any, version: int) -> None:
    """A 202 whose task is done, and every node at `version`."""
    from luci_web.clusters.models import Operation

    assert answer.status_code == 202, answer.content[:1000]
    assert answer["Location"] == f"/api/v1/tasks/{answer.json()['id']}/"
    op = Operation.objects.get(pk=answer.json()["id"])
    assert op.state == Operation.DONE, op.message
    assert _versions(lab) == [version] * len(lab.nodes)


def _problem(answer: Any, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.content[:1000]
    assert answer["Content-Type"].startswith(PROBLEM)
    body = answer.json()
    assert body["code"] == code, body
    return body


def _version(client: Any, cluster: Any, tail: str = "settings/") -> int:
    answer = client.get(_url(cluster, tail))
    assert answer.status_code == 200, answer.content[:500]
    return int(answer["ETag"].strip('"'))


# -- failover domains ------------------------------------------------------------------------------------------
def test_domains_create_update_delete_through_every_node(lab, cluster, admin) -> None:  # type: ignore[no-untyped-def]
    n1, n2 = (n.name for n in lab.nodes)
    listed = admin.get(_url(cluster, "domains/"))
    assert listed.status_code == 200
    version = int(listed["ETag"].strip('"'))
    assert version == _versions(lab)[0] and "pref" not in [d["name"] for d in listed.json()]

    body = {"name": "pref", "ordered": True, "members": [{"node": n2, "priority": 1}, {"node": n1, "priority": 2}]}
    _pushed(admin.post(_url(cluster, "domains/"), body, format="json", HTTP_IF_MATCH=f'"{version}"'), lab,
            version + 1)
    for cv in _views(lab):
        domain = cv.domain("pref")
        assert domain is not None and (domain.ordered, domain.restricted, domain.nofailback) == (True, False, False)
        assert [(m.name, m.priority) for m in domain.nodes] == [(n2, 1), (n1, 2)]
    got = admin.get(_url(cluster, "domains/pref/"))
    assert got["ETag"] == f'"{version + 1}"'
    assert got.json() == {"name": "pref", "url": f"/api/v1/clusters/{cluster.name}/domains/pref/", "ordered": True,
                          "restricted": False, "nofailback": False,
                          "members": [{"node": n2, "priority": 1}, {"node": n1, "priority": 2}]}

    # the same POST on the old version: 412 with the current version, nothing changed; without If-Match: 409
    stale = _problem(admin.post(_url(cluster, "domains/"), body | {"name": "other"}, format="json",
                                HTTP_IF_MATCH=f'"{version}"'), 412, "CONFIG_CONFLICT")
    assert stale["current_version"] == version + 1 and stale["base_version"] == version
    _problem(admin.post(_url(cluster, "domains/"), body, format="json"), 409, "DOMAIN_EXISTS")
    assert _versions(lab) == [version + 1] * 2

    # PATCH: flags and members, what is not named stays
    _pushed(admin.patch(_url(cluster, "domains/pref/"), {"restricted": True, "members": [{"node": n1}]},
                        format="json", HTTP_IF_MATCH=f'"{version + 1}"'), lab, version + 2)
    domain = _views(lab)[1].domain("pref")
    assert (domain.ordered, domain.restricted) == (True, True)
    assert [(m.name, m.priority) for m in domain.nodes] == [(n1, None)]
    # PUT: the whole domain (absent flags false)
    _pushed(admin.put(_url(cluster, "domains/pref/"), {"nofailback": True, "members": [{"node": n2, "priority": 5}]},
                      format="json"), lab, version + 3)
    assert all(cv.quorumd is None for cv in _views(lab))
    domain = _views(lab)[0].domain("pref")
    assert (domain.ordered, domain.restricted, domain.nofailback) == (False, False, True)
    assert [(m.name, m.priority) for m in domain.nodes] == [(n2, 5)]

    # bad values: a priority out of range (400, the field named), a member that is not a node (422), a rename
    bad = _problem(admin.patch(_url(cluster, "domains/pref/"), {"members": [{"node": n1, "priority": 500}]},
                               format="json"), 400, "BAD_REQUEST")
    assert "priority" in str(bad["errors"]["members"])
    unknown = _problem(admin.patch(_url(cluster, "domains/pref/"), {"members": [{"node": "nowhere"}]},
                                   format="json"), 422, "INVALID_CONFIG")
    assert "nowhere" in unknown["reports"][0]["message"]
    _problem(admin.put(_url(cluster, "domains/pref/"), {"name": "renamed"}, format="json"), 400, "BAD_REQUEST")
    _problem(admin.patch(_url(cluster, "domains/pref/"), {"colour": "red"}, format="json"), 400, "BAD_REQUEST")
    assert _versions(lab) == [version + 3] * 2

    _pushed(admin.delete(_url(cluster, "domains/pref/")), lab, version + 4)
    assert all(cv.domain("pref") is None for cv in _views(lab))
    _problem(admin.get(_url(cluster, "domains/pref/")), 404, "NOT_FOUND")
    _problem(admin.delete(_url(cluster, "domains/pref/")), 404, "DOMAIN_NOT_FOUND")
    _problem(admin.patch(_url(cluster, "domains/pref/"), {"ordered": True}, format="json"), 404, "DOMAIN_NOT_FOUND")
    assert _versions(lab) == [version + 4] * 2


def test_viewer_gets_403_on_writes_and_no_grant_404(lab, cluster) -> None:  # type: ignore[no-untyped-def]
    viewer = token_client(user_with("itemsviewer", cluster, {"view"}))
    stranger = token_client(user_with("itemsstranger"))
    version = _versions(lab)[0]
    for tail in ("domains/", "fence-devices/", "resources/", "settings/"):
        assert viewer.get(_url(cluster, tail)).status_code == 200, tail
        _problem(stranger.get(_url(cluster, tail)), 404, "NOT_FOUND")
    _problem(viewer.post(_url(cluster, "domains/"), {"name": "v"}, format="json"), 403, "PERMISSION_DENIED")
    _problem(viewer.patch(_url(cluster, "settings/"), {"totem": {"token": "20000"}}, format="json"), 403,
             "PERMISSION_DENIED")
    _problem(viewer.delete(_url(cluster, "fence-devices/x/")), 403, "PERMISSION_DENIED")
    _problem(viewer.post(_url(cluster, "resources/"), {"type": "ip", "attrs": {"address": "127.1.1.1"}},
                         format="json"), 403, "PERMISSION_DENIED")
    _problem(stranger.post(_url(cluster, "domains/"), {"name": "v"}, format="json"), 404, "NOT_FOUND")
    _problem(stranger.patch(_url(cluster, "settings/"), {}, format="json"), 404, "NOT_FOUND")
    assert _versions(lab) == [version] * 2


# -- fence devices ---------------------------------------------------------------------------------------------
def test_fence_device_password_is_write_only(lab, cluster, admin) -> None:  # type: ignore[no-untyped-def]
    from luci_web.audit.models import AuditEntry

    version = _versions(lab)[0]
    body = {"name": "apc", "agent": "fence_apc", "params": {"ipaddr": "10.0.0.9", "login": "apc", "passwd": SECRET}}
    _pushed(admin.post(_url(cluster, "fence-devices/"), body, format="json"), lab, version + 1)
    assert all(SECRET in n.config_path.read_text() for n in lab.nodes)
    _problem(admin.post(_url(cluster, "fence-devices/"), body, format="json"), 409, "FENCE_DEVICE_EXISTS")

    listed = admin.get(_url(cluster, "fence-devices/"))
    got = admin.get(_url(cluster, "fence-devices/apc/"))
    for answer in (listed, got):
        assert answer.status_code == 200 and SECRET not in answer.content.decode()
    assert got.json() == {"name": "apc", "url": f"/api/v1/clusters/{cluster.name}/fence-devices/apc/",
                          "agent": "fence_apc", "params": {"ipaddr": "10.0.0.9", "login": "apc"},
                          "secrets_set": ["passwd"]}
    assert got["ETag"] == f'"{version + 1}"'

    # PATCH without the password: kept; PUT without it: kept, the parameters not named removed
    _pushed(admin.patch(_url(cluster, "fence-devices/apc/"), {"params": {"login": "apc2"}}, format="json",
                        HTTP_IF_MATCH=got["ETag"]), lab, version + 2)
    for cv in _views(lab):
        assert cv.fence_device("apc").params == {"ipaddr": "10.0.0.9", "login": "apc2", "passwd": SECRET}
    _pushed(admin.put(_url(cluster, "fence-devices/apc/"), {"params": {"ipaddr": "10.0.0.10"}}, format="json"),
            lab, version + 3)
    for cv in _views(lab):
        assert cv.fence_device("apc").params == {"ipaddr": "10.0.0.10", "passwd": SECRET}
    # a new password replaces it; null removes it
    _pushed(admin.patch(_url(cluster, "fence-devices/apc/"), {"params": {"passwd": SECRET + "2"}}, format="json"),
            lab, version + 4)
    assert _views(lab)[0].fence_device("apc").params["passwd"] == SECRET + "2"

    # refusals never echo the secret
    stale = admin.patch(_url(cluster, "fence-devices/apc/"), {"params": {"passwd": SECRET}}, format="json",
                        HTTP_IF_MATCH=f'"{version}"')
    _problem(stale, 412, "CONFIG_CONFLICT")
    bad = admin.patch(_url(cluster, "fence-devices/apc/"), {"params": {"passwd": SECRET + "\x01"}}, format="json")
    _problem(bad, 400, "BAD_REQUEST")
    for answer in (stale, bad):
        assert SECRET not in answer.content.decode()
    _problem(admin.patch(_url(cluster, "fence-devices/apc/"), {"params": {"name": "x"}}, format="json"), 400,
             "BAD_REQUEST")
    _problem(admin.post(_url(cluster, "fence-devices/"), body | {"agent": "rm -rf"}, format="json"), 400,
             "BAD_REQUEST")
    _problem(admin.get(_url(cluster, "fence-devices/nope/")), 404, "NOT_FOUND")
    _problem(admin.patch(_url(cluster, "fence-devices/nope/"), {"params": {}}, format="json"), 404, "NOT_FOUND")

    entries = list(AuditEntry.objects.filter(action__startswith="fence_device."))
    assert {e.result for e in entries} >= {"ok", "refused"} and len(entries) >= 6
    assert not any(SECRET in f"{e.detail} {e.message} {e.target}" for e in AuditEntry.objects.all())
    assert any(e.detail.get("params") == ["ipaddr", "login", "passwd"] for e in entries)

    _pushed(admin.delete(_url(cluster, "fence-devices/apc/")), lab, version + 5)
    assert all(cv.fence_device("apc") is None for cv in _views(lab))
    assert not any(SECRET in n.config_path.read_text() for n in lab.nodes)


def test_fence_device_values_checked_against_the_agents_metadata(lab, cluster, admin) -> None:  # type: ignore[no-untyped-def]
    from luci_web.clusters import fence_metadata

    form = fence_metadata.agent_form("fence_ipmilan")
    if form.generic or form.param("lanplus") is None or form.param("method") is None:
        pytest.skip(f"fence_ipmilan's metadata is not available on this host ({form.problem or 'no lanplus'})")
    version = _versions(lab)[0]
    body = {"name": "bmc", "agent": "fence_ipmilan",
            "params": {"ip": "127.0.0.1", "lanplus": "perhaps", "method": "explode", "password": SECRET}}
    bad = _problem(admin.post(_url(cluster, "fence-devices/"), body, format="json"), 400, "BAD_REQUEST")
    assert set(bad["errors"]["params"]) == {"lanplus", "method"} and "onoff" in str(bad["errors"]["params"])
    assert "perhaps" not in bad["detail"] and SECRET not in str(bad)
    assert _versions(lab) == [version] * 2
    body["params"].update(lanplus="1", method="cycle")
    _pushed(admin.post(_url(cluster, "fence-devices/"), body, format="json"), lab, version + 1)
    _problem(admin.patch(_url(cluster, "fence-devices/bmc/"), {"params": {"ipport": "six"}}, format="json"), 400,
             "BAD_REQUEST")  # the agent comes from the configuration when the body does not name it
    _pushed(admin.delete(_url(cluster, "fence-devices/bmc/")), lab, version + 2)


# -- global resources ------------------------------------------------------------------------------------------
def test_resources_by_type_and_key_with_dots_and_slashes(lab, cluster, admin) -> None:  # type: ignore[no-untyped-def]
    version = _versions(lab)[0]
    _pushed(admin.post(_url(cluster, "resources/"), {"type": "ip", "attrs": {"address": "127.9.9.9",
                                                                              "monitor_link": "1"}}, format="json"),
            lab, version + 1)
    _pushed(admin.post(_url(cluster, "resources/"), {"type": "fs", "attrs": {
        "name": "/srv/data", "device": "/dev/sdb1", "mountpoint": "/srv/data", "fstype": "ext4"}}, format="json"),
        lab, version + 2)
    listed = admin.get(_url(cluster, "resources/"), {"type": "fs"})
    assert [r["key"] for r in listed.json()] == ["/srv/data"]
    url = listed.json()[0]["url"]
    assert url == f"/api/v1/clusters/{cluster.name}/resources/fs//srv/data/"
    got = admin.get(url)
    assert got.status_code == 200 and got.json()["attrs"]["device"] == "/dev/sdb1" and got.json()["key_attr"] == "name"
    ip = admin.get(_url(cluster, "resources/ip/127.9.9.9/"))
    assert ip.json()["attrs"] == {"address": "127.9.9.9", "monitor_link": "1"} and ip["ETag"] == f'"{version + 2}"'

    _pushed(admin.patch(url, {"attrs": {"fstype": "xfs", "options": None}}, format="json"), lab, version + 3)
    assert all(cv.quorumd is None for cv in _views(lab))
    fs = next(r for r in _views(lab)[1].resources if r.key == "/srv/data")
    assert fs.attrs["fstype"] == "xfs" and fs.attrs["device"] == "/dev/sdb1"
    _pushed(admin.put(_url(cluster, "resources/ip/127.9.9.9/"), {"attrs": {"sleeptime": "10"}}, format="json"),
            lab, version + 4)
    assert next(r for r in _views(lab)[0].resources if r.key == "127.9.9.9").attrs == {"address": "127.9.9.9",
                                                                                       "sleeptime": "10"}
    _problem(admin.patch(url, {"attrs": {"name": "/elsewhere"}}, format="json"), 400, "BAD_REQUEST")
    _problem(admin.post(_url(cluster, "resources/"), {"type": "ip", "attrs": {"address": "127.9.9.9"}},
                        format="json"), 409, "RESOURCE_EXISTS")
    _problem(admin.post(_url(cluster, "resources/"), {"type": "service", "attrs": {"name": "x"}}, format="json"),
             400, "BAD_REQUEST")
    _problem(admin.post(_url(cluster, "resources/"), {"type": "ip", "attrs": {}}, format="json"), 400, "BAD_REQUEST")
    _problem(admin.get(_url(cluster, "resources/ip/127.0.0.254/")), 404, "NOT_FOUND")
    stale = _problem(admin.delete(url, HTTP_IF_MATCH=f'"{version}"'), 412, "CONFIG_CONFLICT")
    assert stale["current_version"] == version + 4
    _pushed(admin.delete(url), lab, version + 5)
    _pushed(admin.delete(_url(cluster, "resources/ip/127.9.9.9/")), lab, version + 6)
    assert not [r for r in _views(lab)[0].resources if r.key in ("127.9.9.9", "/srv/data")]
    _problem(admin.delete(url), 404, "RESOURCE_NOT_FOUND")


# -- cluster-wide settings -------------------------------------------------------------------------------------
def test_settings_patch_applies_what_it_names(lab, cluster, admin) -> None:  # type: ignore[no-untyped-def]
    version = _version(admin, cluster)
    before = admin.get(_url(cluster, "settings/")).json()
    assert set(before) == {"cman", "totem", "quorumd", "fence_daemon", "logging"}
    assert "heuristics" in before["quorumd"] and "daemons" in before["logging"]
    change = {"totem": {"token": 21000}, "fence_daemon": {"post_join_delay": "20"},
              "cman": {"multicast_addr": "239.192.0.9"},
              "quorumd": {"label": "qd", "votes": "1", "heuristics": [{"program": "ping -c1 127.0.0.1", "score": 2}]},
              "logging": {"debug": "on", "daemons": {"rgmanager": {"debug": "on"}}}}
    _pushed(admin.patch(_url(cluster, "settings/"), change, format="json", HTTP_IF_MATCH=f'"{version}"'), lab,
            version + 1)
    for cv in _views(lab):
        assert cv.totem["token"] == "21000" and cv.fence_daemon["post_join_delay"] == "20"
        assert cv.multicast_addr == "239.192.0.9" and cv.quorumd.attrs["label"] == "qd"
        assert [(h.program, h.score) for h in cv.quorumd.heuristics] == [("ping -c1 127.0.0.1", 2)]
    after = admin.get(_url(cluster, "settings/"))
    assert after["ETag"] == f'"{version + 1}"'
    body = after.json()
    assert body["totem"]["token"] == "21000" and body["cman"]["multicast_addr"] == "239.192.0.9"
    assert body["quorumd"]["heuristics"] == [{"program": "ping -c1 127.0.0.1", "score": "2"}]
    assert body["logging"]["daemons"] == {"rgmanager": {"debug": "on"}} and body["logging"]["debug"] == "on"
    assert body["cman"] == before["cman"] | {"multicast_addr": "239.192.0.9"}  # the rest of cman untouched

    # null removes; a daemon's settings merge; the heuristics list is left alone when not named
    _pushed(admin.patch(_url(cluster, "settings/"), {"totem": {"token": None}, "cman": {"multicast_addr": None},
                                                      "logging": {"daemons": {"rgmanager": None}}}, format="json"),
            lab, version + 2)
    cv = _views(lab)[0]
    assert "token" not in (cv.totem or {}) and cv.multicast_addr is None and len(cv.quorumd.heuristics) == 1
    assert "logging_daemon" not in lab.nodes[0].config_path.read_text()

    _problem(admin.patch(_url(cluster, "settings/"), {"totem": {"tokne": "1"}}, format="json"), 400, "BAD_REQUEST")
    _problem(admin.patch(_url(cluster, "settings/"), {"quorumd": {"device": "/dev/sdc", "label": "qd"}},
                         format="json"), 400, "BAD_REQUEST")
    invalid = _problem(admin.patch(_url(cluster, "settings/"), {"fence_daemon": {"post_join_delay": "soon"}},
                                   format="json"), 422, "INVALID_CONFIG")
    assert any("post_join_delay" in r["message"] for r in invalid["reports"])
    _problem(admin.patch(_url(cluster, "settings/"), {"totem": {"token": "1"}}, format="json",
                         HTTP_IF_MATCH=f'"{version}"'), 412, "CONFIG_CONFLICT")
    assert _versions(lab) == [version + 2] * 2
    # a section given as null is removed (the quorum disk goes, with its heuristics)
    _pushed(admin.patch(_url(cluster, "settings/"), {"quorumd": None, "logging": {"debug": None}}, format="json"),
            lab, version + 3)
    assert all(cv.quorumd is None for cv in _views(lab))
