"""`cman_tool version` and `cman_tool version -r [-S]` (rhcs-facts §4.4) on a real lab, and their exit codes:
0 success, 1 failure, 253 no new config version, 254 not newer than the running config."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cman.cli import cman_tool
from ricci_agent.lab import Lab, LabNode

pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")

BIN = Path(sys.executable).parent
NOT_NEWER = "cman_tool: Not reloading, config version older or equal the running config\n"


def run_as(node: LabNode, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], env=node.environ(), capture_output=True, text=True,
                          timeout=120, check=False)


def history(node: LabNode) -> list[int]:
    path = node.root / "var/lib/cluster/history.jsonl"
    return [json.loads(line)["version"] for line in path.read_text().splitlines()]


def live_versions(lab: Lab) -> set[int | None]:
    return {s.config_version for s in lab.status()}


def wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def hand_edit(lab: Lab, name: str, domain: str) -> int:
    """Change a node's live file the RHEL6 way (edit, raise config_version), without telling anyone."""
    result = run_as(lab.node(name), "ccs_tool", "adddomain", domain, name)
    assert result.returncode == 0, result.stderr
    return max(history(lab.node(name))) + 1


def test_version_prints_the_suite_version_and_the_running_config(lab: Lab) -> None:
    from importlib import metadata

    result = run_as(lab.node("node1"), "cman_tool", "version")
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"{metadata.version('rhcs-py')} config {max(history(lab.node('node1')))}\n"


def test_reload_takes_a_hand_edited_file_and_distributes_it(lab: Lab) -> None:
    node = lab.node("node1")
    new = hand_edit(lab, "node1", "reloaded")
    assert run_as(node, "cman_tool", "version").stdout.endswith(f" config {new - 1}\n")  # not running it yet
    result = run_as(node, "cman_tool", "version", "-r")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert run_as(node, "cman_tool", "version").stdout.endswith(f" config {new}\n")
    assert wait_for(lambda: live_versions(lab) == {new})
    for peer in lab.nodes:
        assert peer.config_path.read_bytes() == node.config_path.read_bytes(), peer.name
        assert new in history(peer)


def call(node: LabNode, target: LabNode, function: str) -> dict:
    """`ricci call` from `node` (its client key) to `target`'s agent: the JSON reply."""
    result = run_as(node, "ricci", "call", target.key, function)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_hand_edit_is_not_pulled_by_the_others_until_cman_tool_version_r(lab: Lab) -> None:
    """The lead's reproduction: an edit of node1's live file stays on node1 (reported as a local edit) through
    several catch-up polls (ccsd_poll 1 s in the lab), until `cman_tool version -r` distributes it."""
    node, others = lab.node("node1"), [n for n in lab.nodes if n.name != "node1"]
    running = max(history(node))
    before = {peer.name: peer.config_path.read_bytes() for peer in others}
    result = run_as(node, "ccs_tool", "addnode", "-n", "4", "-f", "labfence", "node4")
    assert result.returncode == 0, result.stderr
    edited = node.config_path.read_bytes()
    time.sleep(3.5)  # three poll intervals and more
    for peer in others:
        assert peer.config_path.read_bytes() == before[peer.name], f"{peer.name} pulled the unfinished edit"
        assert running + 1 not in history(peer)
    assert live_versions(lab) == {running}  # every agent advertises its accepted version
    assert run_as(node, "cman_tool", "version").stdout.endswith(f" config {running}\n")
    hello = call(node, node, "hello")
    assert hello["config_version"] == running
    assert hello["local_edit"]["version"] == running + 1
    assert hello["local_edit"]["note"] == "edited locally, not distributed: run cman_tool version -r"
    status = call(others[0], others[0], "cluster.status")
    assert status["drift"] is True and status["edited_locally"] == ["node1"]
    assert status["nodes"]["node1"]["local_edit"]["version"] == running + 1
    assert "cman_tool version -r" in status["nodes"]["node1"]["message"]
    assert call(others[0], node, "cluster.get_config")["version"] == running  # what a peer would pull

    result = run_as(node, "cman_tool", "version", "-r")
    assert result.returncode == 0, result.stderr
    assert result.stderr == (f"cman_tool: warning: node4 did not get config version {running + 1} (unreachable); "
                             "it catches up when its agent is back\n")  # node4 has no agent in this lab
    assert wait_for(lambda: live_versions(lab) == {running + 1})
    for peer in others:
        assert peer.config_path.read_bytes() == edited, peer.name
    assert call(node, node, "hello")["local_edit"] is None
    # leave the module's lab as it was: without the node that does not exist
    assert run_as(node, "ccs_tool", "delnode", "node4").returncode == 0
    assert run_as(node, "cman_tool", "version", "-r").returncode == 0
    assert wait_for(lambda: live_versions(lab) == {running + 2})


def test_reload_of_a_version_that_is_not_newer_exits_254(lab: Lab) -> None:
    node = lab.node("node2")
    running = max(history(node))
    result = run_as(node, "cman_tool", "version", "-r")
    assert (result.returncode, result.stdout) == (254, "")
    assert result.stderr == f"{NOT_NEWER}  running config_version {running}, {node.config_path} has {running}\n"


def test_reload_with_S_takes_the_file_on_this_node_only(lab: Lab) -> None:
    node = lab.node("node3")
    new = hand_edit(lab, "node3", "nosync")
    result = run_as(node, "cman_tool", "version", "-r", "-S")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert history(node)[-1] == new
    assert run_as(node, "cman_tool", "version").stdout.endswith(f" config {new}\n")
    assert wait_for(lambda: live_versions(lab) == {new})  # the others pull it by themselves (catch-up)


def test_an_invalid_file_is_not_reloaded(lab: Lab) -> None:
    node = lab.node("node1")
    good = node.config_path.read_bytes()
    running = max(history(node))
    broken = good.decode().replace(f'config_version="{running}"', f'config_version="{running + 1}"')
    broken = broken.replace('nodeid="2"', 'nodeid="1"', 1)
    try:
        node.config_path.write_text(broken)
        result = run_as(node, "cman_tool", "version", "-r")
    finally:
        node.config_path.write_bytes(good)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"cman_tool: {node.config_path} is not valid; not reloading\n")
    assert max(history(node)) == running


def test_the_local_agent_down_is_one_clear_line(lab: Lab) -> None:
    node = lab.node("node2")
    lab.kill("node2")
    try:
        result = run_as(node, "cman_tool", "version")
    finally:
        lab.start("node2")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"cman_tool: cannot reach the local ricci agent at {node.key}: ")
    assert result.stderr.count("\n") == 1


# -- without a lab: exit codes and usage -----------------------------------------------------------------------
def _root_with_agent_settings(tmp_path: Path) -> Path:
    (tmp_path / "etc/ricci").mkdir(parents=True)
    (tmp_path / "etc/ricci/ricci.json").write_text('{"node_name": "n1", "address": "127.0.0.1", "port": 1}')
    return tmp_path


def test_no_file_to_reload_exits_253(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = _root_with_agent_settings(tmp_path)
    monkeypatch.setenv("CLUSTER_ROOT", str(root))
    assert cman_tool.main(["version", "-r"]) == 253
    conf = root / "etc/cluster/cluster.conf"
    assert capsys.readouterr().err == (
        f"cman_tool: Unable to retrive the new config version\n  {conf}: no such file\n"
    )
    conf.parent.mkdir(parents=True)
    conf.write_text('<cluster name="a"><clusternodes/></cluster>\n')
    assert cman_tool.main(["version", "-r", "-S"]) == 253
    assert capsys.readouterr().err == (
        f"cman_tool: Unable to retrive the new config version\n  {conf}: <cluster> has no integer config_version\n"
    )


def test_no_agent_on_this_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLUSTER_ROOT", str(tmp_path))
    assert cman_tool.main(["version"]) == 1
    assert capsys.readouterr().err == (
        f"cman_tool: this node has no ricci agent ({tmp_path}/etc/ricci/ricci.json is missing); "
        "cannot tell the running config version\n"
    )


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["version", "-r", "7"], 1, "cman_tool: -r takes no version number here (got 7): raise config_version in "
                                    "the file, then run 'cman_tool version -r'\n"),
        (["version", "-S"], 1, "cman_tool: -S only goes with -r (cman_tool version -r -S)\n"),
        (["frobnicate"], 1, "cman_tool: Unknown command, frobnicate. Try 'cman_tool -h' for help.\n"),
    ],
)
def test_usage_errors(argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cman_tool.main(argv) == code
    assert capsys.readouterr() == ("", message)


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cman_tool.main(["-h"]) == 0
    assert "version\n  -r" in capsys.readouterr().out
    assert cman_tool.main(["-V"]) == 0
    assert capsys.readouterr().out.startswith("cman_tool ")
    assert cman_tool.main([]) == 1


def test_the_console_script_is_installed() -> None:
    assert shutil.which("cman_tool", path=str(BIN)), "run: .venv/bin/pip install --no-deps -e ."
