"""The agent speaks plain SSH: OpenSSH's own client reaches the `ricci` subsystem with the node's keys, so
scripts can use `ssh -s HOST ricci` as well as `ricci call`; and it is refused like any client without them."""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH's client (ssh) is not installed")


def ssh(lab, address: str, port: int, requests: list[dict], *, key: str | None = None) -> subprocess.CompletedProcess:
    ricci = lab.client_root / "etc" / "ricci"
    argv = ["ssh", "-p", str(port), "-i", key or str(ricci / "id_ed25519"), "-F", "/dev/null",
            "-o", f"UserKnownHostsFile={ricci / 'known_hosts'}", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
            "-s", f"ricci@{address}", "ricci"]
    lines = "".join(json.dumps(r) + "\n" for r in requests)
    return subprocess.run(argv, input=lines, capture_output=True, text=True, timeout=60, check=False)


def test_openssh_client_talks_to_the_ricci_subsystem(lab) -> None:
    node = lab.node("node2")
    address, port = node.endpoint
    result = ssh(lab, address, port, [{"v": 1, "id": 1, "fn": "hello", "args": {}},
                                      {"v": 1, "id": "b", "fn": "cluster.versions", "args": {}}])
    assert result.returncode == 0, result.stderr  # the agent ends the session with exit status 0 after EOF
    first, second = (json.loads(line) for line in result.stdout.splitlines())
    assert (first["id"], first["ok"], first["result"]["node_name"]) == (1, True, "node2")
    assert (second["id"], second["ok"]) == ("b", True) and second["result"]["versions"]


def test_openssh_client_with_an_unauthorised_key_is_refused(lab, tmp_path) -> None:
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    address, port = lab.node("node1").endpoint
    result = ssh(lab, address, port, [{"v": 1, "id": 1, "fn": "hello", "args": {}}], key=str(key))
    assert result.returncode == 255 and result.stdout == ""
    assert "Permission denied (publickey)" in result.stderr
