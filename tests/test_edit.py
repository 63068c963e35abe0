"""The editing API: each element type, refusals with codes, and edits that lose nothing else."""
from __future__ import annotations

import difflib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster_conf import ClusterConf, ConfigError, edit
from cluster_conf.model import view
from tests.conftest import SMALL_CONF


@pytest.fixture
def conf(small_conf_text: str) -> ClusterConf:
    return ClusterConf.from_string(small_conf_text, "cluster.conf")


def _code(exc: pytest.ExceptionInfo[ConfigError]) -> str:
    return exc.value.report.code


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]


def test_add_node_with_fence_method(conf: ClusterConf, small_conf_text: str) -> None:
    with conf.transaction():
        edit.add_node(conf, "n4", nodeid=4, votes=1, fence_device="apc", device_params={"port": "4"})
    v = view(conf)
    n4 = v.node("n4")
    assert n4 is not None and n4.nodeid == 4 and n4.fence_type == "apc"
    assert n4.methods[0].name == "single" and n4.methods[0].devices[0].params == {"port": "4"}
    assert conf.config_version == 4
    diff = changed_lines(small_conf_text, conf.to_string())
    # Only the version line changes, plus the new node's 7 lines, indented like its siblings.
    assert diff[0:2] == ['-<cluster name="alpha" config_version="3">', '+<cluster name="alpha" config_version="4">']
    assert diff[2] == '+    <clusternode name="n4" votes="1" nodeid="4">'
    assert len(diff) == 2 + 7


@pytest.mark.parametrize(
    ("kwargs", "code", "message"),
    [
        ({"name": "n1", "nodeid": 9}, "NODE_EXISTS", "node n1 already exists in cluster.conf"),
        ({"name": "n9", "nodeid": 2}, "NODEID_IN_USE", "nodeid 2 already in use"),
        ({"name": "n9", "nodeid": 9, "fence_device": "ipmi"}, "FENCE_DEVICE_NOT_FOUND", "fence type 'ipmi' not known"),
        (
            {"name": "n9", "nodeid": 9, "fence_device": "apc", "device_params": {"name": "x"}},
            "BAD_ARGUMENT",
            'Can\'t use "name" as a fence argument name',
        ),
        ({"name": "n9", "nodeid": 9, "votes": 256}, "BAD_ARGUMENT", "votes must be between 0 and 255, not 256"),
    ],
)
def test_add_node_refusals_match_ccs_tool(conf: ClusterConf, kwargs: dict, code: str, message: str) -> None:
    before = conf.to_bytes()
    with pytest.raises(ConfigError) as exc, conf.transaction():
        edit.add_node(conf, **kwargs)
    assert _code(exc) == code
    assert exc.value.report.message == message
    assert conf.to_bytes() == before


def test_remove_node_keeps_neighbours_layout(conf: ClusterConf, small_conf_text: str) -> None:
    with conf.transaction():
        domains = edit.remove_node(conf, "n2")
    assert domains == ["web"]
    out = conf.to_string()
    assert "x-extension" not in out and 'name="n2"' not in out
    diff = changed_lines(small_conf_text, out)
    assert all(line.startswith("-") for line in diff[2:])  # only removals besides the version
    ClusterConf.from_string(out)  # still well-formed
    with pytest.raises(ConfigError) as exc:
        edit.remove_node(conf, "n2")
    assert exc.value.report.message == "node n2 does not exist in cluster.conf"


def test_fence_devices(conf: ClusterConf) -> None:
    with conf.transaction():
        edit.add_fence_device(conf, "ipmi1", "fence_ipmilan", {"ipaddr": "10.0.0.21", "lanplus": "1"})
        edit.add_method_device(conf, "n1", "backup", "ipmi1", {"action": "off"})
        edit.add_unfence_device(conf, "n1", "ipmi1")
    n1 = view(conf).node("n1")
    assert [m.name for m in n1.methods] == ["power", "backup"]
    assert n1.unfence[0].params == {"action": "on"}
    with pytest.raises(ConfigError) as exc:
        edit.add_fence_device(conf, "apc", "fence_apc")
    assert exc.value.report.message == "fence type apc already exists"
    with conf.transaction():
        users = edit.remove_fence_device(conf, "apc")
    assert users == ["n1", "n2", "n3"]
    with pytest.raises(ConfigError) as exc:
        edit.remove_fence_device(conf, "apc")
    assert exc.value.report.message == "fence type apc does not exist"
    with conf.transaction():
        edit.remove_method_device(conf, "n1", "backup", "ipmi1")
        edit.remove_fence_method(conf, "n1", "backup")
    assert [m.name for m in view(conf).node("n1").methods] == ["power"]


def test_add_node_ids(conf: ClusterConf) -> None:
    with conf.transaction():
        edit.add_node(conf, "a")
        edit.add_node(conf, "b")
        assigned = edit.add_node_ids(conf)
    assert assigned == [("a", 4), ("b", 5)]


def test_domains(conf: ClusterConf) -> None:
    with conf.transaction():
        edit.add_domain(conf, "db", ordered=True, restricted=True, members=[("n2", 1), ("n3", 2)])
        edit.set_domain_attrs(conf, "db", nofailback=True)
    d = view(conf).domain("db")
    assert (d.ordered, d.restricted, d.nofailback) == (True, True, True)
    assert [(m.name, m.priority) for m in d.nodes] == [("n2", 1), ("n3", 2)]
    with pytest.raises(ConfigError) as exc:
        edit.add_domain_node(conf, "db", "n2")
    assert exc.value.report.message == "Node n2 defined multiple times in domain db"
    with pytest.raises(ConfigError) as exc:
        edit.add_domain_node(conf, "db", "n1", priority=101)
    assert _code(exc) == "BAD_ARGUMENT"
    with conf.transaction():
        edit.remove_domain_node(conf, "db", "n3")
        services = edit.remove_domain(conf, "web")
    assert services == ["www"]
    assert view(conf).domain("web") is None


def test_resources_and_service_trees(conf: ClusterConf) -> None:
    with conf.transaction():
        edit.add_resource(conf, "fs", {"name": "data", "device": "/dev/sdb1", "mountpoint": "/srv", "fstype": "ext4"})
        edit.add_service(conf, "nfs", {"domain": "web", "recovery": "restart"})
        edit.add_child_resource(conf, "nfs", "fs", {"ref": "data"})
        edit.add_child_resource(conf, "nfs", "nfsexport", {"name": "exp"}, parent_path=[("fs", "data")])
        edit.add_child_resource(
            conf, "nfs", "nfsclient", {"name": "world", "target": "*", "options": "ro"},
            parent_path=[("fs", "data"), ("nfsexport", "exp")],
        )
        edit.add_child_resource(conf, "nfs", "ocf", {"name": "d1", "provider": "heartbeat", "type": "Dummy"})
    svc = view(conf).service("service:nfs")
    assert svc is not None and svc.domain == "web"
    fs = svc.children[0]
    assert fs.type == "fs" and fs.ref == "data"
    assert fs.children[0].children[0].attrs["target"] == "*"
    assert svc.children[1].type == "ocf"
    # ocf has no child rules, so it may hold anything; ip forbids nfsclient.
    with conf.transaction():
        edit.add_child_resource(conf, "nfs", "ip", {"address": "10.0.0.77"})
    with pytest.raises(ConfigError) as exc:
        edit.add_child_resource(
            conf, "nfs", "nfsclient", {"name": "c2", "target": "x"}, parent_path=[("ip", "10.0.0.77")]
        )
    assert _code(exc) == "CHILD_FORBIDDEN"
    with pytest.raises(ConfigError) as exc:
        edit.add_child_resource(conf, "nfs", "fs", {"ref": "nope"})
    assert _code(exc) == "RESOURCE_NOT_FOUND"
    with conf.transaction():
        users = edit.remove_resource(conf, "script", "httpd")
    assert users == ["www"]
    with conf.transaction():
        edit.remove_child_resource(conf, "nfs", [("fs", "data"), ("nfsexport", "exp")])
    assert view(conf).service("nfs").children[0].children == ()
    with conf.transaction():
        edit.add_service(conf, "guest1", {"recovery": "restart"}, kind="vm")
        edit.set_service_attrs(conf, "www", {"depend": "vm:guest1", "recovery": None})
        dependents = edit.remove_service(conf, "vm:guest1")
    assert dependents == ["www"]
    assert "recovery" not in view(conf).service("www").attrs


def test_sections_and_quorum_disk(conf: ClusterConf) -> None:
    with conf.transaction():
        edit.set_section_attrs(conf, "totem", {"token": "20000"})
        edit.set_section_attrs(conf, "cman", {"expected_votes": None, "port": "5405"})
        edit.set_multicast(conf, "239.192.1.1")
        edit.set_section_attrs(conf, "quorumd", {"label": "qdisk", "votes": "2"})
        edit.add_heuristic(conf, "ping -c1 10.0.0.1", score=1, interval=2, tko=3)
        edit.set_section_attrs(conf, "fence_daemon", {"post_join_delay": "20"})
        edit.set_section_attrs(conf, "logging", {"to_syslog": "yes"})
        edit.set_logging_daemon(conf, "rgmanager", {"debug": "on"})
    v = view(conf)
    assert v.totem == {"token": "20000"} and v.cman == {"port": "5405"} and v.multicast_addr == "239.192.1.1"
    assert v.quorumd is not None and v.quorumd.heuristics[0].tko == 3
    assert conf.root.find("logging/logging_daemon").get("debug") == "on"
    with pytest.raises(ConfigError) as exc:
        edit.set_section_attrs(conf, "clusternodes", {"x": "1"})
    assert _code(exc) == "BAD_ARGUMENT"
    with conf.transaction():
        edit.remove_heuristic(conf, "ping -c1 10.0.0.1")
        edit.remove_section(conf, "quorumd")
        edit.set_multicast(conf, None)
    assert view(conf).quorumd is None and view(conf).multicast_addr is None


def test_events(conf: ClusterConf) -> None:
    with conf.transaction():
        edit.add_event(conf, "on-node-down", {"class": "node", "node_state": "0"}, script="notice(\"down\");")
    assert conf.root.find("rm/events/event").text == 'notice("down");'
    with conf.transaction():
        edit.remove_event(conf, "on-node-down")
    assert conf.root.find("rm/events/event") is None


def test_new_cluster_like_ccs_tool_create() -> None:
    conf = edit.new_cluster("mycl", two_node=True, nodes=2, fence_agent="fence_manual")
    v = view(conf)
    assert v.name == "mycl" and v.config_version == 1 and v.two_node
    assert [(n.name, n.nodeid, n.votes, n.fence_type) for n in v.nodes] == [
        ("NEEDNAME-01", 1, 1, "fence_manual"),
        ("NEEDNAME-02", 2, 1, "fence_manual"),
    ]
    assert conf.root.find("rm/failoverdomains") is not None and conf.root.find("rm/resources") is not None


@settings(max_examples=60, deadline=None)
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(["add", "del"]), st.integers(min_value=4, max_value=12)), min_size=1, max_size=12
    )
)
def test_random_node_edits_keep_everything_else(ops: list[tuple[str, int]]) -> None:
    conf = ClusterConf.from_string(SMALL_CONF)
    present: set[str] = set()
    edits = 0
    for op, i in ops:
        name = f"x{i}"
        try:
            with conf.transaction():
                if op == "add":
                    edit.add_node(conf, name, nodeid=i, fence_device="apc")
                else:
                    edit.remove_node(conf, name)
        except ConfigError:
            continue
        edits += 1
        (present.add if op == "add" else present.discard)(name)
    again = ClusterConf.from_bytes(conf.to_bytes())
    v = view(again)
    assert {n.name for n in v.nodes} == {"n1", "n2", "n3"} | present
    assert again.config_version == 3 + edits
    assert "hand-written note" in again.to_string() and 'x-site="rack7"' in again.to_string()
    assert v.service("www") is not None and v.fence_device("apc").params["passwd"] == "s3cret"


def test_create_placeholders_have_a_single_method_even_without_a_fence_agent() -> None:
    conf = edit.new_cluster("c", nodes=3)
    nodes = view(conf).nodes
    assert [(n.name, n.nodeid, [m.name for m in n.methods]) for n in nodes] == [
        ("NEEDNAME-01", 1, ["single"]), ("NEEDNAME-02", 2, ["single"]), ("NEEDNAME-03", 3, ["single"])
    ]
    assert all(m.devices == () for n in nodes for m in n.methods)


def test_text_next_to_an_edited_element_is_kept() -> None:
    conf = ClusterConf.from_string(
        '<cluster name="c" config_version="1">\n  <fencedevices>\n'
        '    <fencedevice name="a" agent="fence_apc"/> keep-this-text\n  </fencedevices>\n</cluster>\n'
    )
    with conf.transaction():
        edit.add_fence_device(conf, "b", "fence_apc")
    assert "keep-this-text" in conf.to_string()
    with conf.transaction():
        edit.remove_fence_device(conf, "a")
    assert "keep-this-text" in conf.to_string()
    assert [d.get("name") for d in conf.root.iter("fencedevice")] == ["b"]


def test_an_edit_outside_a_transaction_still_reaches_the_bytes():
    from cluster_conf import edit as edit_module
    from cluster_conf.document import ClusterConf as Conf

    conf = Conf.from_bytes(b'<?xml version="1.0"?>\n<cluster name="c" config_version="1">\n'
                           b"  <clusternodes/>\n</cluster>\n")
    edit_module.set_section_attrs(conf, "totem", {"token": "1000"})
    edit_module.add_node(conf, "n1", nodeid=1)
    data = conf.to_bytes()
    assert b'<totem token="1000"/>' in data and b'name="n1"' in data
