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
from cluster_conf.cli.ccs_tool import main, secret_read, split_command
from cluster_conf.cli.common import NAME_RULE
from cluster_conf.schema import is_secret
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


SECRET_READING_QUERIES = [
    ('string(//fencedevice[@name="ipmi-a"]/@passwd)', "passwd"),
    ('concat("", //fencedevice[@name="ipmi-a"]/@passwd)', "passwd"),
    ('substring(//fencedevice[@name="ipmi-a"]/@passwd, 1, 1)', "passwd"),
    ("string-length(//fencedevice/@passwd)", "passwd"),
    ('//fencedevice[@passwd="hunter2"]', "passwd"),
    ('//fencedevice[starts-with(@passwd, "h")]/@name', "passwd"),
    ('//fencedevice/@passwd = "hunter2"', "passwd"),
    ('//fencedevice/attribute::passwd[. = "hunter2"]', "passwd"),
    ('//fencedevice/@ passwd [1]', "passwd"),
    ("(//device/@passwd)", "passwd"),
    ("string(//fencedevice/@*)", "@*, which can match passwd"),
    ('//fencedevice/@*[name() = "passwd"]', "@*, which can match passwd"),
    ('//fencedevice[@*[local-name() = "passwd"] = "hunter2"]', "@*, which can match passwd"),
    ('//fencedevice[attribute::node() = "hunter2"]', "@*, which can match passwd"),
]


@pytest.mark.parametrize(("xpath", "what"), SECRET_READING_QUERIES, ids=[x for x, _ in SECRET_READING_QUERIES])
def test_query_refuses_expressions_that_read_secrets(
    capsys: pytest.CaptureFixture[str], rich_file: Path, xpath: str, what: str
) -> None:
    rc, out, err = tool(capsys, "query", xpath, "-c", rich_file)
    assert (rc, out) == (1, "")
    assert err == (f"ccs_tool: Query failed: the expression reads a secret attribute ({what}); "
                   "add --show-secrets to allow it\n")
    assert "hunter2" not in err
    _, _, err = tool(capsys, "query", "--show-secrets", xpath, "-c", rich_file)
    assert "secret attribute" not in err


def test_query_show_secrets_allows_string_functions(capsys: pytest.CaptureFixture[str], rich_file: Path) -> None:
    rc, out, _ = tool(capsys, "query", "--show-secrets", 'string(//fencedevice[@name="ipmi-a"]/@passwd)',
                      "-c", rich_file)
    assert (rc, out) == (0, "hunter2\n")


@pytest.mark.parametrize(
    ("xpath", "expected"),
    [
        ("//fencedevice/@passwd", "********\n"),  # a plain path: masked, as before
        ('//fencedevice[@passwd]/@name', "ipmi-a\n"),  # only whether it has one
        ("//fencedevice[@name='ipmi-a']/@*", "ipmi-a\nfence_ipmilan\n10.1.0.1\nadmin\n********\n"),
        ("//fencedevice[@name='pdu']/@passwd_script", "/root/pdu.sh\n"),  # a path, not a secret
        ('//fencedevice[@name="passwd"]', None),  # "passwd" as a literal is no attribute read
        ('string(//fencedevice[@name="pdu"]/@login)', "apc\n"),
    ],
)
def test_query_still_allows_masked_and_harmless_expressions(
    capsys: pytest.CaptureFixture[str], rich_file: Path, xpath: str, expected: str | None
) -> None:
    rc, out, err = tool(capsys, "query", xpath, "-c", rich_file)
    assert "secret attribute" not in err
    if expected is not None:
        assert (rc, out) == (0, expected)


def test_query_wildcards_are_allowed_when_the_file_has_no_secrets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "cluster.conf"
    path.write_text(RICH_CONF.replace(' passwd="hunter2"', "").replace(' passwd="per-node-secret"', ""))
    rc, out, _ = tool(capsys, "query", "string(//fencedevice/@*)", "-c", path)
    assert (rc, out) == (0, "ipmi-a\n")


@pytest.mark.parametrize(
    ("xpath", "expected"),
    [
        ("//@passwd", None),
        ("//a/@passwd | //b/@login", None),
        ("//a[@passwd]", None),
        ("//a[attribute::passwd]", None),
        ("//a/@*", None),
        ("//a[@*]", None),
        ("//@secret_key", None),
        ("string(//@secret_key)", "secret_key"),
        ("string(//@hexadecimal_kg)", "hexadecimal_kg"),
        ("string(//@passwd_script)", None),
        ("string(//@x:passwd)", "passwd"),
        ("//a/@passwd * 2", "passwd"),
        ("//a/@passwd/..", "passwd"),
        ("//a[not(@passwd)]", "passwd"),
        ("count(//@node())", "@*, which can match passwd"),
        ("//a[@name = '@passwd']/@login", None),
        ("//attribute/passwd", None),  # elements named attribute and passwd
        ("//a[attribute = 'passwd']", None),
    ],
)
def test_secret_read(xpath: str, expected: str | None) -> None:
    assert secret_read(xpath, {"passwd"}) == expected
    if expected and expected.startswith("@*"):
        assert secret_read(xpath, set()) is None


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("passwd", True), ("password", True), ("snmp_priv_passwd", True), ("community", True),
        ("secret_key", True), ("client_secret", True), ("SECRET", True), ("hexadecimal_kg", True),
        ("passwd_script", False), ("secret_script", False), ("login", False), ("ipaddr", False),
    ],
)
def test_is_secret(name: str, secret: bool) -> None:
    assert is_secret(name) is secret


def test_new_secret_names_are_masked(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "cluster.conf"
    path.write_text(RICH_CONF.replace('passwd="hunter2"', 'hexadecimal_kg="ABCDEF0123" secret_key="k3y"'))
    for argv in (["lsfence", "-v"], ["lsfence", "--json"], ["query", "//fencedevice/@*"]):
        rc, out, _ = tool(capsys, *argv, "-c", path)
        assert rc == 0 and "ABCDEF0123" not in out and "k3y" not in out and "********" in out, argv
    rc, out, _ = tool(capsys, "lsfence", "-v", "-c", path)
    assert "passwd_script=/root/pdu.sh" in out


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
    # only multicast addresses, not any IP address
    (["addnodeids", "-m", "10.0.0.1"], "10.0.0.1 is not a valid multicast address"),
    (["addnodeids", "-m", "fe80::1"], "fe80::1 is not a valid multicast address"),
    # integers are ASCII digits only: int() would take all of these
    (["addnode", "n9", "-n", " 10", "-f", "apc"], "argument to n ( 10) is not an integer"),
    (["addnode", "n9", "-n", "10 ", "-f", "apc"], "argument to n (10 ) is not an integer"),
    (["addnode", "n9", "-n", "\u0661\u0660", "-f", "apc"], "argument to n (\u0661\u0660) is not an integer"),
    (["addnode", "n9", "-n", "1_0", "-f", "apc"], "argument to n (1_0) is not an integer"),
    (["addnode", "n9", "-n", "+9", "-f", "apc"], "argument to n (+9) is not an integer"),
    (["addnode", "n9", "-n", "9", "-v", "\uff11", "-f", "apc"], "argument to v (\uff11) is not an integer"),
    (["adddomainnode", "web", "n3", " 3"], "argument to priority ( 3) is not an integer"),
    (["adddomain", "db", "n1:\u0661"], "argument to priority (\u0661) is not an integer"),
    (["addnodeids", "-n", "\u0662"], "argument to n (\u0662) is not an integer"),
    # names and values the XML document cannot hold, refused before anything is loaded
    (["addfence", "x", "fence_apc", "bad attr=1"], "invalid attribute name 'bad attr': " + NAME_RULE),
    (["addfence", "x", "fence_apc", "1abc=1"], "invalid attribute name '1abc': " + NAME_RULE),
    (["addfence", "x", "fence_apc", "xmlns:foo=1"], "invalid attribute name 'xmlns:foo': " + NAME_RULE),
    (["addnode", "-n", "9", "-f", "apc", "n9", "--", "-x=1"], "invalid attribute name '-x': " + NAME_RULE),
    (["addservice", "db", "r\u00e9covery=x"], "invalid attribute name 'r\u00e9covery': " + NAME_RULE),
    (["addresource", "bad type", "name=x"], "invalid resource type 'bad type': " + NAME_RULE),
    (["addserviceresource", "--parent", "a:b=c", "www", "ip", "ref=10.0.0.50"],
     "invalid resource type 'a:b': " + NAME_RULE),
    (["addfence", "x", "fence_apc", "passwd=se\x01cret"], "the value of passwd contains a control character"),
    (["addfence", "x", "fence_apc", "secret_key=se\x01cret"], "the value of secret_key contains a control character"),
    (["addfence", "x", "fence_apc", "passwd=se\udcffcret"],
     "the value of passwd contains a byte that is not valid UTF-8"),
    (["addfence", "x", "fence_apc", "ipaddr=10\x0b1"], "the value of ipaddr ('10\\x0b1') contains a control character"),
    (["addfence", "x", "fence_apc", "a=\udcff"], "the value of a ('\\udcff') contains a byte that is not valid UTF-8"),
    (["addfence", "x", "fence_apc", "a=\ufffe"], "the value of a ('\\ufffe') contains a character XML does not allow"),
    (["addnode", "-n", "9", "-f", "apc", "n\x019"], "node name 'n\\x019' contains a control character"),
    (["addnode", "-n", "9", "-f", "apc", "-a", "hb\x00", "n9"], "altname 'hb\\x00' contains a control character"),
    (["addfence", "x\udcff", "fence_apc"], "name 'x\\udcff' contains a byte that is not valid UTF-8"),
    (["adddomain", "d", "n1\x1b:1"], "domain member 'n1\\x1b:1' contains a control character"),
    (["query", "//x[@name='\x07']"], "XPath expression '//x[@name='\\x07']' contains a control character"),
    (["create", "-o", "-", "a\x01"], "cluster name 'a\\x01' contains a control character"),
    (["create", "-o", "-", "a b"], "invalid cluster name 'a b'"),
    (["create", "-o", "-", ""], "invalid cluster name ''"),
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


def test_delnode_of_a_domain_member_warns(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "cluster.conf"
    path.write_text(SMALL_CONF.replace(
        "    </failoverdomains>",
        '      <failoverdomain name="db">\n        <failoverdomainnode name="n1"/>\n      </failoverdomain>\n'
        "    </failoverdomains>",
    ))
    rc, out, err = tool(capsys, "delnode", "n1", "-c", path)
    assert (rc, out) == (0, "")
    assert err == "ccs_tool: warning: node n1 was removed from failover domain(s): web, db\n"
    conf = ClusterConf.load(path)
    assert conf.root.find(".//failoverdomainnode[@name='n1']") is None
    assert conf.root.find("clusternodes/clusternode[@name='n1']") is None
    rc, out, err = tool(capsys, "delnode", "n3", "-c", path)  # not in any domain: nothing to say
    assert (rc, out, err) == (0, "", "")


@pytest.mark.parametrize("address", ["239.192.1.10", "224.0.0.251", "ff15::1", "FF02::1"])
def test_addnodeids_accepts_multicast_addresses(
    capsys: pytest.CaptureFixture[str], small_conf_file: Path, address: str
) -> None:
    rc, _, err = tool(capsys, "addnodeids", "-m", address, "-c", small_conf_file)
    assert (rc, err) == (0, "")
    assert ClusterConf.load(small_conf_file).root.find("cman/multicast").get("addr") == address


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


def test_create_nodes_without_an_agent_get_an_empty_single_method(
    capsys: pytest.CaptureFixture[str],
) -> None:
    rc, out, err = tool(capsys, "create", "-n", "3", "-o", "-", "big")
    assert (rc, err) == (0, "")
    nodes = list(ClusterConf.from_string(out).root.iter("clusternode"))
    assert len(nodes) == 3
    for node in nodes:
        methods = node.findall("fence/method")
        assert [(m.get("name"), len(m)) for m in methods] == [("single", 0)], node.get("name")


def test_create_allows_a_long_cluster_name(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = tool(capsys, "create", "-o", "-", "a-very-long-cluster-name")  # lint warns; cman refuses
    assert (rc, err) == (0, "") and ClusterConf.from_string(out).name == "a-very-long-cluster-name"


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


@pytest.mark.skipif(not SCRIPT.exists(), reason=f"console script {SCRIPT} is not installed")
def test_console_script_refuses_bad_argument_bytes(tmp_path: Path) -> None:
    path = tmp_path / "cluster.conf"
    path.write_text(SMALL_CONF)
    cases = [
        ([b"addfence", b"x", b"fence_apc", b"passwd=se\xffcret"], "the value of passwd contains a byte"),
        ([b"addfence", b"x", b"fence_apc", b"login=\xff"], "the value of login ('\\udcff') contains a byte"),
        ([b"addnode", b"-n", b"9", b"-f", b"apc", b"n\xff9"], "node name 'n\\udcff9' contains a byte"),
        ([b"addfence", b"x", b"fence_apc", b"passwd=se\x01cret"], "the value of passwd contains a control"),
    ]
    for argv, message in cases:
        result = subprocess.run([str(SCRIPT), *argv, b"-c", bytes(path)], capture_output=True, timeout=30)
        stderr = result.stderr.decode("utf-8", "backslashreplace")
        assert result.returncode == 1, argv
        assert stderr.startswith(f"ccs_tool: {message}") and stderr.count("\n") == 1, (argv, stderr)
        assert b"cret" not in result.stderr and result.stdout == b""
    assert path.read_text() == SMALL_CONF


def test_module_does_not_import_validation_or_edit_at_startup() -> None:
    code = (
        "import sys, cluster_conf.cli.ccs_tool; "
        "print(','.join(m for m in ('cluster_conf.edit', 'cluster_conf.validation', 'cluster_conf.diff') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    assert ccs_tool.COMMANDS  # the registry is filled at import
