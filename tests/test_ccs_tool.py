"""ccs_tool: layouts (golden files), messages and exit codes of rhcs-facts §4.3, edits, JSON shapes, secrets.

Most tests call main(argv) in-process; a few run the installed console script to prove that bad input never
ends in a traceback. Regenerate the golden files with `UPDATE_GOLDEN=1 pytest tests/test_ccs_tool.py`.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cluster_conf import ClusterConf
from cluster_conf.cli import ccs_tool
from cluster_conf.cli.ccs_tool import main, split_command
from tests.conftest import SMALL_CONF

GOLDEN = Path(__file__).parent / "golden" / "ccs_tool"
SCRIPT = Path(sys.executable).parent / "ccs_tool"

# A node with an altname and a secret in its device parameters; a vm; nested inline resources; multicast.
RICH_CONF = """<?xml version="1.0"?>
<cluster name="beta" config_version="12">
  <cman expected_votes="1" two_node="1">
    <multicast addr="239.192.1.10"/>
  </cman>
  <clusternodes>
    <clusternode name="node-a.example.com" nodeid="1" votes="1" weight="2">
      <altname name="node-a-hb" port="5406"/>
      <fence>
        <method name="ipmi">
          <device name="ipmi-a" lanplus="1"/>
        </method>
        <method name="pdu">
          <device name="pdu" port="1"/>
        </method>
      </fence>
    </clusternode>
    <clusternode name="node-b.example.com" nodeid="2">
      <fence>
        <method name="pdu">
          <device name="pdu" port="2" passwd="per-node-secret"/>
        </method>
      </fence>
    </clusternode>
  </clusternodes>
  <fencedevices>
    <fencedevice name="ipmi-a" agent="fence_ipmilan" ipaddr="10.1.0.1" login="admin" passwd="hunter2"/>
    <fencedevice name="pdu" agent="fence_apc" ipaddr="10.1.0.9" login="apc" passwd_script="/root/pdu.sh"/>
  </fencedevices>
  <rm>
    <failoverdomains>
      <failoverdomain name="prefer-a" ordered="1" restricted="1" nofailback="0">
        <failoverdomainnode name="node-a.example.com" priority="1"/>
        <failoverdomainnode name="node-b.example.com" priority="2"/>
      </failoverdomain>
      <failoverdomain name="anywhere">
        <failoverdomainnode name="node-a.example.com"/>
        <failoverdomainnode name="node-b.example.com"/>
      </failoverdomain>
    </failoverdomains>
    <resources>
      <ip address="10.1.0.50" monitor_link="1"/>
      <fs name="data" device="/dev/vg0/data" mountpoint="/srv/data" fstype="ext4"/>
    </resources>
    <service name="nfs" domain="prefer-a" autostart="1" exclusive="0" recovery="relocate" max_restarts="3">
      <fs ref="data">
        <nfsexport name="exports">
          <nfsclient name="world" target="*" options="ro"/>
        </nfsexport>
      </fs>
      <ip ref="10.1.0.50"/>
    </service>
    <vm name="guest1" domain="anywhere" autostart="0" exclusive="1" recovery="restart" path="/etc/xen"/>
  </rm>
</cluster>
"""


@pytest.fixture
def rich_file(tmp_path: Path) -> Path:
    path = tmp_path / "rich.conf"
    path.write_text(RICH_CONF)
    return path


def tool(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"golden file {path} is missing; run with UPDATE_GOLDEN=1"
    assert text == path.read_text()


def version_of(path: Path) -> int | None:
    return ClusterConf.load(path).config_version


# -- layouts -----------------------------------------------------------------------------------------------
LAYOUTS = [
    ("lsnode.txt", "small", ["lsnode"]),
    ("lsnode-v.txt", "small", ["lsnode", "-v"]),
    ("lsnode-rich.txt", "rich", ["lsnode"]),
    ("lsnode-rich-v.txt", "rich", ["lsnode", "-v"]),
    ("lsfence.txt", "rich", ["lsfence"]),
    ("lsfence-v.txt", "rich", ["lsfence", "-v"]),
    ("lsdomain.txt", "rich", ["lsdomain"]),
    ("lsdomain-v.txt", "rich", ["lsdomain", "-v"]),
    ("lsresource.txt", "rich", ["lsresource"]),
    ("lsresource-v.txt", "rich", ["lsresource", "-v"]),
    ("lsservice.txt", "rich", ["lsservice"]),
    ("lsservice-v.txt", "rich", ["lsservice", "-v"]),
    ("lsnode.json", "rich", ["lsnode", "--json"]),
    ("lsfence.json", "rich", ["lsfence", "--json"]),
    ("lsdomain.json", "rich", ["lsdomain", "--json"]),
    ("lsresource.json", "rich", ["lsresource", "--json"]),
    ("lsservice.json", "rich", ["lsservice", "--json"]),
]


@pytest.mark.parametrize(("golden", "which", "argv"), LAYOUTS, ids=[g for g, _, _ in LAYOUTS])
def test_list_layouts_match_golden_files(
    capsys: pytest.CaptureFixture[str], small_conf_file: Path, rich_file: Path, golden: str, which: str,
    argv: list[str],
) -> None:
    path = small_conf_file if which == "small" else rich_file
    rc, out, err = tool(capsys, *argv, "-c", path)
    assert (rc, err) == (0, "")
    check_golden(golden, out)
    if golden.endswith(".json"):
        json.loads(out)


def test_lsnode_layout_is_the_originals(capsys: pytest.CaptureFixture[str], rich_file: Path) -> None:
    _, out, _ = tool(capsys, "lsnode", "-c", rich_file)
    lines = out.split("\n")
    assert lines[:5] == [
        "",
        "Cluster name: beta, config_version: 12",
        "",
        "Multicast address for cluster: 239.192.1.10",
        "",
    ]
    assert lines[5] == "Nodename                        Votes Nodeid Fencetype"
    assert lines[6] == "%-32s %3d  %3d    %s" % ("node-a.example.com", 1, 1, "ipmi-a")  # noqa: UP031 (the C format)


def test_lsnode_defaults_votes_to_1_and_nodeid_to_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "c.conf"
    path.write_text('<cluster name="x" config_version="1"><clusternodes><clusternode name="a"/></clusternodes>'
                    "</cluster>")
    _, out, _ = tool(capsys, "lsnode", "-c", path)
    assert out.splitlines()[-1] == f"{'a':<32} {1:3d}  {0:3d}    "


def test_json_shapes(capsys: pytest.CaptureFixture[str], rich_file: Path) -> None:
    _, out, _ = tool(capsys, "lsnode", "--json", "-c", rich_file)
    data = json.loads(out)
    assert set(data) == {"cluster", "config_version", "multicast_addr", "nodes"}
    assert set(data["nodes"][0]) == {
        "name", "nodeid", "votes", "fence_type", "altnames", "attrs", "fence_methods", "unfence",
    }
    _, out, _ = tool(capsys, "lsfence", "--json", "-c", rich_file)
    assert set(json.loads(out)["fence_devices"][0]) == {"name", "agent", "params", "used_by"}
    _, out, _ = tool(capsys, "lsservice", "--json", "-c", rich_file)
    service = json.loads(out)["services"][0]
    assert set(service) == {"id", "kind", "name", "domain", "autostart", "exclusive", "recovery", "attrs", "resources"}
    assert set(service["resources"][0]) == {"type", "ref", "key", "attrs", "children"}


# -- secrets -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["lsfence", "-v"],
        ["lsfence", "--json"],
        ["lsnode", "-v"],
        ["lsnode", "--json"],
        ["query", "//fencedevice/@passwd"],
        ["query", "//fencedevice"],
        ["query", "//device[@passwd]"],
    ],
)
def test_secrets_are_masked(capsys: pytest.CaptureFixture[str], rich_file: Path, argv: list[str]) -> None:
    rc, out, _ = tool(capsys, *argv, "-c", rich_file)
    assert rc == 0
    assert "hunter2" not in out and "per-node-secret" not in out
    assert "********" in out


def test_query_show_secrets_reveals_on_request(capsys: pytest.CaptureFixture[str], rich_file: Path) -> None:
    _, out, _ = tool(capsys, "query", "--show-secrets", "//fencedevice[@name='ipmi-a']/@passwd", "-c", rich_file)
    assert out == "hunter2\n"


# -- query -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("xpath", "expected"),
    [
        ("/cluster/@config_version", "12\n"),
        ("/cluster/clusternodes/clusternode/@name", "node-a.example.com\nnode-b.example.com\n"),
        ("count(//clusternode)", "2\n"),
        ("boolean(//vm)", "true\n"),
        ("/cluster/cman/multicast", "multicast addr=239.192.1.10\n"),
    ],
)
def test_query_prints_values(capsys: pytest.CaptureFixture[str], rich_file: Path, xpath: str, expected: str) -> None:
    rc, out, _ = tool(capsys, "query", xpath, "-c", rich_file)
    assert (rc, out) == (0, expected)


def test_query_n_accepts_xpath_lite_only(capsys: pytest.CaptureFixture[str], rich_file: Path) -> None:
    rc, out, _ = tool(capsys, "query", "-n", '/cluster/clusternodes/clusternode[@name="node-b.example.com"]/@nodeid',
                      "-c", rich_file)
    assert (rc, out) == (0, "2\n")
    rc, _, err = tool(capsys, "query", "-n", "count(//clusternode)", "-c", rich_file)
    assert rc == 1 and err.startswith("ccs_tool: Query failed: ")


@pytest.mark.parametrize("xpath", ["/cluster/@nothing", "//[", "/cluster/totem"])
def test_query_failures(capsys: pytest.CaptureFixture[str], rich_file: Path, xpath: str) -> None:
    rc, out, err = tool(capsys, "query", xpath, "-c", rich_file)
    assert (rc, out) == (1, "")
    assert err.startswith("ccs_tool: Query failed: ") and err.count("\n") == 1


# -- the original's messages and exit codes ----------------------------------------------------------------
ERRORS = [
    (["addnode", "n1", "-n", "9", "-f", "apc"], "node n1 already exists in {file}"),
    (["addnode", "n9", "-f", "apc"], "nodeid not specified"),
    (["addnode", "n9", "-n", "2", "-f", "apc"], "nodeid 2 already in use"),
    (["addnode", "n9", "-n", "9", "-f", "nosuch"], "fence type 'nosuch' not known"),
    (["addnode", "n9", "-n", "9", "-f", "apc", "name=x"], 'Can\'t use "name" as a fence argument name'),
    (["addnode", "n9", "-n", "9", "-f", "apc", "port"], "option 'port' is not opt=value pair"),
    (["addnode", "n9", "-n", "x", "-f", "apc"], "argument to n (x) is not an integer"),
    (["addnode", "n9", "-n", "-3", "-f", "apc"], "argument to n cannot be negative"),
    (["addnode", "n9", "-n", "9", "-v", "many", "-f", "apc"], "argument to v (many) is not an integer"),
    (["delnode", "nosuch"], "node nosuch does not exist in {file}"),
    (["addfence", "apc", "fence_apc"], "fence type apc already exists"),
    (["delfence", "nosuch"], "fence type nosuch does not exist"),
    (["create", "again"], "{file} already exists"),
    (["addnodeids", "-m", "not-an-address"], "not-an-address is not a valid multicast address"),
]


@pytest.mark.parametrize(("argv", "message"), ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_error_messages_and_exit_code(
    capsys: pytest.CaptureFixture[str], small_conf_file: Path, argv: list[str], message: str
) -> None:
    before = small_conf_file.read_bytes()
    rc, out, err = tool(capsys, *argv, "-c", small_conf_file)
    assert rc == 1
    assert out == ""
    assert err == f"ccs_tool: {message.format(file=small_conf_file)}\n"
    assert small_conf_file.read_bytes() == before
    assert not Path(f"{small_conf_file}.old").exists()


USAGE_ERRORS = [
    ["nosuchcommand"],
    ["lsnode", "--bogus"],
    ["addnode"],
    ["delnode"],
    ["addfence", "onlyname"],
    ["query"],
    ["create"],
    ["lsnode", "-c"],
    ["-c", "x"],
]


@pytest.mark.parametrize("argv", USAGE_ERRORS, ids=[" ".join(a) for a in USAGE_ERRORS])
def test_usage_errors_exit_1_with_one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, out, err = tool(capsys, *argv)
    assert (rc, out) == (1, "")
    assert err.startswith("ccs_tool: ") and err.count("\n") == 1


@pytest.mark.parametrize("argv", [["-h"], ["help"], ["help", "addnode"], ["lsnode", "-h"], ["addnode", "--help"]])
def test_help_exits_0(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, out, _ = tool(capsys, *argv)
    assert rc == 0 and ("Usage" in out or "usage" in out)


def test_no_command_prints_usage_to_stderr_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = tool(capsys)
    assert (rc, out) == (1, "") and "Usage" in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = tool(capsys, "-V")
    assert rc == 0 and out.startswith("ccs_tool ")


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["lsnode"], ("lsnode", [], [])),
        (["-c", "f", "lsnode", "-v"], ("lsnode", ["-c", "f"], ["-v"])),
        (["-o", "-", "-c", "f", "addnode", "n"], ("addnode", ["-o", "-", "-c", "f"], ["n"])),
        (["-cf", "lsfence"], ("lsfence", ["-cf"], [])),
        (["-v"], (None, ["-v"], [])),
    ],
)
def test_split_command(argv: list[str], expected: tuple[object, ...]) -> None:
    assert split_command(argv) == expected


def test_bad_files_give_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.conf"
    bad.write_text("<cluster name='x' config_version='1'><clusternodes></cluster>")
    for path, code in ((tmp_path / "missing.conf", "FILE_NOT_FOUND"), (tmp_path, "FILE_UNREADABLE"),
                       (bad, "XML_MALFORMED")):
        rc, out, err = tool(capsys, "lsnode", "-c", path)
        assert (rc, out) == (1, "")
        assert err.startswith(f"ccs_tool: {path}") and f"error {code}:" in err and err.count("\n") == 1


# -- editing -----------------------------------------------------------------------------------------------
def test_addnode_writes_the_originals_structure(capsys: pytest.CaptureFixture[str], small_conf_file: Path) -> None:
    rc, out, err = tool(capsys, "addnode", "n4", "-n", "4", "-a", "n4-hb", "-f", "apc", "port=4", "-c",
                        small_conf_file)
    assert (rc, out, err) == (0, "", "")
    conf = ClusterConf.load(small_conf_file)
    node = conf.root.find("clusternodes/clusternode[@name='n4']")
    assert node is not None and dict(node.attrib) == {"name": "n4", "votes": "1", "nodeid": "4"}
    assert node.find("altname").get("name") == "n4-hb"
    device = node.find("fence/method[@name='single']/device")
    assert dict(device.attrib) == {"name": "apc", "port": "4"}


def test_options_before_the_command(capsys: pytest.CaptureFixture[str], small_conf_file: Path) -> None:
    rc, _, _ = tool(capsys, "-c", small_conf_file, "addnode", "-n", "4", "n4", "-f", "apc")
    assert rc == 0 and version_of(small_conf_file) == 4


@pytest.mark.parametrize(
    "argv",
    [
        ["addnode", "n4", "-n", "4", "-f", "apc", "port=4"],
        ["delnode", "n3"],
        ["addfence", "ipmi", "fence_ipmilan", "ipaddr=10.0.0.1", "passwd=x"],
        ["addnodeids", "-m", "239.192.0.1"],
        ["adddomain", "--ordered", "d2", "n1:1", "n2:2"],
        ["adddomainnode", "web", "n3", "3"],
        ["deldomainnode", "web", "n2"],
        ["addresource", "fs", "name=data", "device=/dev/sdb1", "mountpoint=/data"],
        ["addservice", "db", "domain=web", "recovery=relocate"],
        ["addserviceresource", "www", "ip", "address=10.0.0.51"],
        ["addserviceresource", "--parent", "ip=10.0.0.50", "www", "script", "name=s2", "file=/etc/init.d/s2"],
    ],
    ids=lambda argv: argv[0] + ("-" + argv[1] if argv[0] == "addserviceresource" else ""),
)
def test_each_edit_bumps_version_by_one_and_keeps_old(
    capsys: pytest.CaptureFixture[str], small_conf_file: Path, argv: list[str]
) -> None:
    before = small_conf_file.read_text()
    rc, out, err = tool(capsys, *argv, "-c", small_conf_file)
    assert rc == 0, err
    assert out == ""
    assert version_of(small_conf_file) == 4
    assert Path(f"{small_conf_file}.old").read_text() == before
    assert "hand-written note that must survive edits" in small_conf_file.read_text()


def test_output_dash_writes_to_stdout_and_leaves_the_file(
    capsys: pytest.CaptureFixture[str], small_conf_file: Path
) -> None:
    before = small_conf_file.read_bytes()
    rc, out, _ = tool(capsys, "addfence", "-o", "-", "ipmi", "fence_ipmilan", "-c", small_conf_file)
    assert rc == 0
    assert ClusterConf.from_string(out).config_version == 4
    assert 'name="ipmi"' in out
    assert small_conf_file.read_bytes() == before
    assert not Path(f"{small_conf_file}.old").exists()


def test_output_file_elsewhere(capsys: pytest.CaptureFixture[str], small_conf_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "new.conf"
    rc, _, _ = tool(capsys, "delnode", "n3", "-c", small_conf_file, "-o", target)
    assert rc == 0
    assert version_of(target) == 4 and version_of(small_conf_file) == 3


def test_cluster_root_default_path(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc" / "cluster"
    etc.mkdir(parents=True)
    (etc / "cluster.conf").write_text(SMALL_CONF)
    monkeypatch.setenv("CLUSTER_ROOT", str(tmp_path))
    rc, out, _ = tool(capsys, "lsnode")
    assert rc == 0 and "Cluster name: alpha" in out
    rc, _, _ = tool(capsys, "delnode", "n3")
    assert rc == 0 and version_of(etc / "cluster.conf") == 4 and (etc / "cluster.conf.old").exists()


def test_default_path_without_cluster_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLUSTER_ROOT", raising=False)
    from cluster_conf.cli.common import default_config_path

    assert default_config_path() == "/etc/cluster/cluster.conf"


def test_delfence_in_use_is_allowed_with_a_warning(capsys: pytest.CaptureFixture[str], small_conf_file: Path) -> None:
    rc, out, err = tool(capsys, "delfence", "apc", "-c", small_conf_file)
    assert (rc, out) == (0, "")
    assert err == "ccs_tool: warning: fence device apc is still used by n1, n2, n3; add it back or change them\n"
    assert version_of(small_conf_file) == 4


def test_edit_introducing_an_error_is_refused(capsys: pytest.CaptureFixture[str], small_conf_file: Path) -> None:
    before = small_conf_file.read_bytes()
    rc, out, err = tool(capsys, "addservice", "db", "depend=service:nosuch", "-c", small_conf_file)
    assert (rc, out) == (1, "")
    first, *details = err.splitlines()
    assert first == f"ccs_tool: not writing {small_conf_file}: the change would make the configuration invalid"
    assert details and all(re.match(rf"  {re.escape(str(small_conf_file))}(:\d+)?: error [A-Z_]+: ", d)
                           for d in details)
    assert small_conf_file.read_bytes() == before


def test_an_already_broken_file_can_still_be_edited(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "cluster.conf"
    path.write_text(SMALL_CONF.replace('name="n3" nodeid="3"', 'name="n3" nodeid="2"'))  # duplicate nodeid
    rc, _, err = tool(capsys, "addfence", "ipmi", "fence_ipmilan", "-c", path)
    assert rc == 0, err
    assert version_of(path) == 4


def test_addnodeids_numbers_nodes_and_warns_without_multicast(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "cluster.conf"
    path.write_text(SMALL_CONF.replace(' nodeid="2"', "").replace(' nodeid="3"', ""))
    rc, out, err = tool(capsys, "addnodeids", "-v", "-c", path)
    assert (rc, out) == (0, "")
    assert "WARNING: The cluster does not have a multicast address." in err
    assert "Node n2 now has id 2\nNode n3 now has id 3\n" in err
    assert [n.get("nodeid") for n in ClusterConf.load(path).root.iter("clusternode")] == ["1", "2", "3"]


def test_create(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "cluster.conf"
    rc, out, err = tool(capsys, "create", "-2", "mycl", "-c", path)
    assert (rc, out, err) == (0, "", "")
    conf = ClusterConf.load(path)
    assert (conf.name, conf.config_version) == ("mycl", 1)
    assert dict(conf.root.find("cman").attrib) == {"two_node": "1", "expected_votes": "1"}
    assert conf.root.find("rm/failoverdomains") is not None and conf.root.find("rm/resources") is not None
    rc, out, _ = tool(capsys, "create", "-n", "3", "-f", "fence_ipmilan", "-o", "-", "big")
    names = [n.get("name") for n in ClusterConf.from_string(out).root.iter("clusternode")]
    assert rc == 0 and names == ["NEEDNAME-01", "NEEDNAME-02", "NEEDNAME-03"]


# -- update ------------------------------------------------------------------------------------------------
def test_update_installs_a_newer_file(capsys: pytest.CaptureFixture[str], small_conf_file: Path,
                                      tmp_path: Path) -> None:
    proposed = tmp_path / "proposed.conf"
    proposed.write_text(SMALL_CONF.replace('config_version="3"', 'config_version="7"'))
    rc, out, err = tool(capsys, "update", proposed, "-c", small_conf_file)
    assert (rc, err) == (0, "")
    assert out == "Config file updated from version 3 to 7\n\nUpdate complete.\n"
    assert small_conf_file.read_bytes() == proposed.read_bytes()
    assert Path(f"{small_conf_file}.old").read_text() == SMALL_CONF


def test_update_refuses_an_older_version(capsys: pytest.CaptureFixture[str], small_conf_file: Path,
                                         tmp_path: Path) -> None:
    proposed = tmp_path / "proposed.conf"
    proposed.write_text(SMALL_CONF)
    rc, out, err = tool(capsys, "update", proposed, "-c", small_conf_file)
    assert (rc, out) == (1, "")
    assert err == (
        "ccs_tool: Proposed updated config file does not have greater version number.\n"
        "  Current config_version :: 3\n  Proposed config_version:: 3\n"
    )


def test_update_refuses_an_invalid_file(capsys: pytest.CaptureFixture[str], small_conf_file: Path,
                                        tmp_path: Path) -> None:
    proposed = tmp_path / "proposed.conf"
    proposed.write_text(SMALL_CONF.replace('config_version="3"', 'config_version="9"')
                        .replace('name="n3" nodeid="3"', 'name="n3" nodeid="2"'))
    rc, _, err = tool(capsys, "update", proposed, "-c", small_conf_file)
    assert rc == 1 and err.startswith(f"ccs_tool: proposed config file {proposed} is invalid; not updating\n")
    assert version_of(small_conf_file) == 3


# -- diff and validate -------------------------------------------------------------------------------------
def test_diff(capsys: pytest.CaptureFixture[str], small_conf_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.conf"
    other.write_text(SMALL_CONF.replace('config_version="3"', 'config_version="4"').replace("s3cret", "n3w"))
    rc, out, _ = tool(capsys, "diff", small_conf_file, other)
    assert rc == 0 and "config_version: 3 -> 4" in out
    assert "s3cret" not in out and "n3w" not in out
    rc, out, _ = tool(capsys, "diff", "--json", small_conf_file, other)
    assert rc == 0 and json.loads(out)["config_version"] == {"old": "3", "new": "4"}


def test_validate_alias(capsys: pytest.CaptureFixture[str], small_conf_file: Path) -> None:
    rc, out, _ = tool(capsys, "validate", "-c", small_conf_file)
    assert rc == 0 and out.endswith("Configuration validates\n")


# -- the real console script -------------------------------------------------------------------------------
def run_script(*argv: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *map(str, argv)], capture_output=True, text=True, timeout=30,
        env={**os.environ, **(env or {})},
    )


@pytest.mark.skipif(not SCRIPT.exists(), reason=f"console script {SCRIPT} is not installed")
def test_console_script_never_prints_a_traceback(tmp_path: Path) -> None:
    malformed = tmp_path / "malformed.conf"
    malformed.write_text("<cluster><oops></cluster>")
    unreadable = tmp_path / "unreadable.conf"
    unreadable.write_text(SMALL_CONF)
    unreadable.chmod(0)
    cases = [
        ["lsnode", "-c", tmp_path / "missing.conf"],
        ["lsnode", "-c", malformed],
        ["lsnode", "-c", tmp_path],
        ["nosuchcommand"],
        ["addnode", "-c", malformed, "-n", "x", "n"],
        ["lsfence", "--bogus"],
        ["query", "-c", malformed],
    ]
    if os.geteuid() != 0:
        cases.append(["lsnode", "-c", unreadable])
    for argv in cases:
        result = run_script(*argv)
        assert result.returncode == 1, argv
        assert "Traceback" not in result.stderr, argv
        assert result.stderr.startswith("ccs_tool: ") and result.stderr.count("\n") == 1, (argv, result.stderr)
        assert result.stdout == ""


@pytest.mark.skipif(not SCRIPT.exists(), reason=f"console script {SCRIPT} is not installed")
def test_console_script_lsnode_and_edit(tmp_path: Path) -> None:
    etc = tmp_path / "etc" / "cluster"
    etc.mkdir(parents=True)
    (etc / "cluster.conf").write_text(SMALL_CONF)
    env = {"CLUSTER_ROOT": str(tmp_path)}
    result = run_script("lsnode", env=env)
    assert result.returncode == 0 and result.stdout == (GOLDEN / "lsnode.txt").read_text()
    result = run_script("addnode", "-n", "4", "n4", "-f", "apc", "port=4", env=env)
    assert result.returncode == 0, result.stderr
    assert version_of(etc / "cluster.conf") == 4


def test_module_does_not_import_validation_or_edit_at_startup() -> None:
    code = (
        "import sys, cluster_conf.cli.ccs_tool; "
        "print(','.join(m for m in ('cluster_conf.edit', 'cluster_conf.validation', 'cluster_conf.diff') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert ccs_tool.COMMANDS  # the registry is filled at import
