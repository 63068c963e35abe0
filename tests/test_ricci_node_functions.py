"""The agent functions that creating a cluster and the Nodes tab use: hello's client_key, node.trust,
cluster.set_authkey, node.fence, node.reboot — on real agents of a lab on loopback (no cluster daemons)."""
from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

paramiko = pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")

from ricci_agent import keys  # noqa: E402
from ricci_agent.lab import Lab  # noqa: E402
from ricci_agent.protocol import BAD_ARGUMENTS, RicciError  # noqa: E402
from tests.ricci_fixtures import running_lab  # noqa: E402


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from running_lab(tmp_path, ["node1", "node2"])


def call(lab: Lab, node: str, fn: str, args: dict | None = None) -> dict:
    with lab.client() as client:
        return client.call(*lab.node(node).endpoint, fn, args)


def refused(lab: Lab, node: str, fn: str, args: dict) -> RicciError:
    with pytest.raises(RicciError) as info:
        call(lab, node, fn, args)
    return info.value


def test_hello_gives_the_nodes_client_key(lab: Lab) -> None:
    answer = call(lab, "node1", "hello")
    line = (lab.node("node1").root / "etc/ricci/id_ed25519.pub").read_text().strip()
    assert answer["client_key"] == line
    assert keys.parse_public_key(answer["client_key"]).key_type == "ssh-ed25519"


def test_trust_authorises_keys_and_pins_host_keys(lab: Lab, tmp_path: Path) -> None:
    other = tmp_path / "other"
    new_client = keys.ensure_client_key(other)
    keys.ensure_host_key(other)
    host_line = keys.host_public_key(other)
    root = lab.node("node1").root
    answer = call(lab, "node1", "node.trust", {
        "authorize": [new_client], "pin": [{"host": "127.9.9.9", "port": 11112, "key": host_line},
                                           {"host": "newnode", "key": host_line}]})
    assert answer == {"authorized": 1, "pinned": 2}
    assert keys.load_authorized_keys(root).find(*new_client.split()[:2]) is not None
    assert keys.known_host_key(root, "127.9.9.9", 11112).line.split()[:2] == host_line.split()[:2]
    assert keys.known_host_key(root, "newnode", 11111) is not None
    # the same key again adds nothing; the key now logs in
    assert call(lab, "node1", "node.trust", {"authorize": [new_client]})["authorized"] == 0
    from ricci_agent.client import RicciClient

    with RicciClient.for_root(other) as client:
        keys.pin_host_key(other, *lab.node("node1").endpoint, keys.host_public_key(root))
        assert client.call(*lab.node("node1").endpoint, "hello")["node_name"] == "node1"


@pytest.mark.parametrize("args, where", [
    ({"authorize": ["ssh-ed25519 AAAA\nssh-ed25519 BBBB"]}, "authorize[1]"),
    ({"authorize": ["not a key"]}, "authorize[1]"),
    ({"authorize": "ssh-ed25519 AAAA"}, "'authorize'"),
    ({"pin": [{"host": "-oProxyCommand", "key": "x"}]}, "pin[0]"),
    ({"pin": [{"host": "h", "port": 0, "key": "x"}]}, "pin[0]"),
])
def test_trust_refuses_bad_entries_and_writes_nothing(lab: Lab, args: dict, where: str) -> None:
    root = lab.node("node2").root
    before = (root / keys.AUTHORIZED_KEYS).read_bytes(), (root / keys.KNOWN_HOSTS).read_bytes()
    good = keys.ensure_client_key(lab.directory / "spare")
    args = {**args, "authorize": [good, *args["authorize"]] if isinstance(args.get("authorize"), list)
            else args.get("authorize", [good])}
    error = refused(lab, "node2", "node.trust", args)
    assert error.code == BAD_ARGUMENTS and where in error.message
    assert "AAAA" not in error.message
    assert ((root / keys.AUTHORIZED_KEYS).read_bytes(), (root / keys.KNOWN_HOSTS).read_bytes()) == before


def test_set_authkey_writes_once_and_refuses_another_key(lab: Lab) -> None:
    root = lab.node("node1").root
    path = root / "etc/cluster/authkey"
    path.unlink()  # the lab gave it one: a bare node has none
    key = os.urandom(64)
    assert call(lab, "node1", "cluster.set_authkey", {"key_b64": base64.b64encode(key).decode()}) == {"changed": True}
    assert path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert call(lab, "node1", "cluster.set_authkey", {"key_b64": base64.b64encode(key).decode()}) == {"changed": False}
    error = refused(lab, "node1", "cluster.set_authkey", {"key_b64": base64.b64encode(os.urandom(64)).decode()})
    assert error.code == BAD_ARGUMENTS and "another cluster key" in error.message
    assert path.read_bytes() == key
    assert refused(lab, "node1", "cluster.set_authkey", {"key_b64": "!!"}).code == BAD_ARGUMENTS
    assert refused(lab, "node1", "cluster.set_authkey",
                   {"key_b64": base64.b64encode(b"short").decode()}).code == BAD_ARGUMENTS


def test_fence_reports_a_failed_fence_as_a_reply(lab: Lab) -> None:
    """The lab's test config fences with fence_virt, which has no host here: fence_node says failed."""
    answer = call(lab, "node1", "node.fence", {"node": "node2"})
    assert answer["ok"] is False and answer["exit"] != 0
    assert "fence node2" in answer["message"] or answer["message"]
    unknown = call(lab, "node1", "node.fence", {"node": "node9"})
    assert unknown["ok"] is False and "node9" in unknown["message"]
    assert refused(lab, "node1", "node.fence", {"node": "-U"}).code == BAD_ARGUMENTS
    assert refused(lab, "node1", "node.fence", {}).code == BAD_ARGUMENTS


def test_reboot_without_daemons_fails_cleanly(lab: Lab) -> None:
    """node.reboot = node.stop then node.start: with nothing running the stop is a no-op and cmand's start is
    tried; whatever it says, the reply or the error names the action."""
    try:
        answer = call(lab, "node1", "node.reboot")
    except RicciError as exc:
        assert exc.code == "daemon_failed" and exc.message.startswith("start of ")
    else:
        assert answer["action"] == "reboot"
        assert answer["stopped"]["cman"]["message"] == "cman is already stopped"
        call(lab, "node1", "node.stop")
