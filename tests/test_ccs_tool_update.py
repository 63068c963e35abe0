"""`ccs_tool update FILE` through the local ricci agent, on a real lab (three agents on loopback).

The original (RHEL5) validated the file, refused a version that was not greater, then ran a two-phase update to
every member and printed `Config file updated from version N to M` and `Update complete.` (rhcs-facts §4.3).
The local-only forms (-c another file, -o, -C) are covered here and in test_ccs_tool.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster_conf.cli import ccs_tool
from ricci_agent.lab import Lab, LabNode

pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")

BIN = Path(sys.executable).parent
NOT_GREATER = "ccs_tool: Proposed updated config file does not have greater version number.\n"


def run_as(node: LabNode, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "ccs_tool"), *args], env=node.environ(), capture_output=True, text=True,
                          timeout=120, check=False)


def versions(lab: Lab) -> dict[str, tuple[int | None, str | None]]:
    return {s.node.name: (s.config_version, s.config_hash) for s in lab.status()}


def current_version(lab: Lab) -> int:
    found = {v for v, _ in versions(lab).values()}
    assert len(found) == 1, f"the lab drifted: {versions(lab)}"
    return found.pop()  # type: ignore[return-value]


def proposal(lab: Lab, tmp_path: Path, version: int, *, tweak: str = "") -> Path:
    """The live configuration of node1 with another config_version (and, with `tweak`, one more domain)."""
    text = lab.node("node1").config_path.read_text()
    text = text.replace(f'config_version="{current_version(lab)}"', f'config_version="{version}"', 1)
    if tweak:
        text = text.replace("<failoverdomains>", f'<failoverdomains>\n      <failoverdomain name="{tweak}"/>', 1)
    path = tmp_path / f"proposed-{version}{tweak}.conf"
    path.write_text(text)
    return path


def wait_for(predicate, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def test_update_propagates_to_every_node(lab: Lab, tmp_path: Path) -> None:
    old = current_version(lab)
    proposed = proposal(lab, tmp_path, old + 1, tweak="pushed")
    result = run_as(lab.node("node2"), "update", str(proposed))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        f"Config file updated from version {old} to {old + 1}\n"
        "  node1: updated\n  node2: updated\n  node3: updated\n\nUpdate complete.\n"
    )
    for node in lab.nodes:
        assert node.config_path.read_bytes() == proposed.read_bytes(), node.name
        history = [json.loads(line) for line in (node.root / "var/lib/cluster/history.jsonl").read_text().splitlines()]
        assert history[-1]["version"] == old + 1


def test_the_same_update_again_is_an_idempotent_success(lab: Lab, tmp_path: Path) -> None:
    old = current_version(lab)
    proposed = proposal(lab, tmp_path, old + 1)
    assert run_as(lab.node("node1"), "update", str(proposed)).returncode == 0
    again = run_as(lab.node("node3"), "update", str(proposed))
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout == (
        f"Config file is already at version {old + 1}\n"
        "  node1: already had it\n  node2: already had it\n  node3: already had it\n\nUpdate complete.\n"
    )


def test_a_version_that_is_not_greater_is_refused_with_the_original_message(lab: Lab, tmp_path: Path) -> None:
    before = versions(lab)
    current = current_version(lab)
    for version, tweak in ((current - 1, ""), (current, "other")):  # older; same version, other content
        proposed = proposal(lab, tmp_path, version, tweak=tweak)
        result = run_as(lab.node("node1"), "update", str(proposed))
        assert (result.returncode, result.stdout) == (1, "")
        assert result.stderr == (
            f"{NOT_GREATER}  Current config_version :: {current}\n  Proposed config_version:: {version}\n"
        )
    assert versions(lab) == before


def test_an_invalid_file_is_refused_before_it_reaches_the_agent(lab: Lab, tmp_path: Path) -> None:
    before = versions(lab)
    proposed = proposal(lab, tmp_path, current_version(lab) + 1)
    proposed.write_text(proposed.read_text().replace('nodeid="2"', 'nodeid="1"', 1))
    result = run_as(lab.node("node1"), "update", str(proposed))
    assert result.returncode == 1
    assert result.stderr.startswith(f"ccs_tool: proposed config file {proposed} is invalid; not updating\n")
    assert "NODEID" in result.stderr
    assert versions(lab) == before


def test_a_node_that_is_down_is_named_and_catches_up_when_it_is_back(lab: Lab, tmp_path: Path) -> None:
    old = current_version(lab)
    proposed = proposal(lab, tmp_path, old + 1, tweak="whiledown")
    lab.kill("node3")
    try:
        result = run_as(lab.node("node1"), "update", str(proposed))
    finally:
        lab.start("node3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [f"Config file updated from version {old} to {old + 1}", "  node1: updated",
                         "  node2: updated"]
    assert lines[3].startswith("  node3: unreachable (") and lines[-1] == "Update complete."
    assert result.stderr == (
        f"ccs_tool: warning: node3 did not get version {old + 1} (unreachable); it catches up when its agent is back\n"
    )
    node3 = lab.node("node3").config_path
    assert wait_for(lambda: node3.read_bytes() == proposed.read_bytes()), "node3 did not catch up"


def test_no_ccs_installs_on_this_node_only(lab: Lab, tmp_path: Path) -> None:
    old = current_version(lab)
    proposed = proposal(lab, tmp_path, old + 1, tweak="localonly")
    result = run_as(lab.node("node2"), "update", "-C", str(proposed))
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == f"Config file updated from version {old} to {old + 1}\n\nUpdate complete.\n"
    assert lab.node("node2").config_path.read_bytes() == proposed.read_bytes()
    # Installed behind the agent's back: a local edit, advertised by nobody and pulled by nobody...
    time.sleep(3.0)  # three catch-up polls
    assert current_version_or_none(lab) == old
    assert all(n.config_path.read_bytes() != proposed.read_bytes() for n in lab.nodes if n.name != "node2")
    # ...until `cman_tool version -r -S` makes node2 run it; then the others pull it by catch-up.
    reload = subprocess.run([str(BIN / "cman_tool"), "version", "-r", "-S"], env=lab.node("node2").environ(),
                            capture_output=True, text=True, timeout=120, check=False)
    assert (reload.returncode, reload.stderr) == (0, "")
    assert wait_for(lambda: current_version_or_none(lab) == old + 1)


def current_version_or_none(lab: Lab) -> int | None:
    found = {v for v, _ in versions(lab).values()}
    return found.pop() if len(found) == 1 else None


def test_an_agent_that_is_not_running_is_one_clear_line(lab: Lab, tmp_path: Path) -> None:
    proposed = proposal(lab, tmp_path, current_version(lab) + 1)
    node = lab.node("node1")
    lab.kill("node1")
    try:
        result = run_as(node, "update", str(proposed))
    finally:
        lab.start("node1")
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith(f"ccs_tool: cannot reach the local ricci agent at {node.key}: ")
    assert result.stderr.endswith("; is 'ricci serve' running?\n") and result.stderr.count("\n") == 1


def test_two_simultaneous_updates_of_one_version_have_exactly_one_winner(lab: Lab, tmp_path: Path) -> None:
    target = current_version(lab) + 1
    first = proposal(lab, tmp_path, target, tweak="racea")
    second = proposal(lab, tmp_path, target, tweak="raceb")
    runs = [
        subprocess.Popen([str(BIN / "ccs_tool"), "update", str(path)], env=lab.node(name).environ(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, path in (("node1", first), ("node2", second))
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    codes = [run.returncode for run in runs]
    assert sorted(codes) == [0, 1], outputs
    loser = outputs[codes.index(1)][1]
    assert loser in (
        "ccs_tool: Warning:: Simultaneous update requests detected. You have lost the race.\n",
        f"{NOT_GREATER}  Current config_version :: {target}\n  Proposed config_version:: {target}\n",
    )
    winner = (first, second)[codes.index(0)]
    assert wait_for(lambda: all(n.config_path.read_bytes() == winner.read_bytes() for n in lab.nodes))


def test_a_node_without_an_agent_installs_locally_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], small_conf_text: str
) -> None:
    conf = tmp_path / "etc/cluster/cluster.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(small_conf_text)
    proposed = tmp_path / "new.conf"
    proposed.write_text(small_conf_text.replace('config_version="3"', 'config_version="4"'))
    monkeypatch.setenv("CLUSTER_ROOT", str(tmp_path))
    assert ccs_tool.main(["update", str(proposed)]) == 0
    out, err = capsys.readouterr()
    assert out == "Config file updated from version 3 to 4\n\nUpdate complete.\n"
    assert err == (f"ccs_tool: warning: this node has no ricci agent ({tmp_path}/etc/ricci/ricci.json is missing): "
                   "installing on this node only\n")
    assert conf.read_bytes() == proposed.read_bytes()
