"""The service manager running on real lab clusters: ricci agents, cmand, rgmanager on every node, services that are
real processes (the lab's web service answering HTTP, ledger services recording every start and stop), driven with
the real `clusvcadm` and watched with `clustat` and the ledger.

Every scenario builds its own lab on a free 127.x block (token 1000 ms, status checks every second) and tears it
down; every wait is bounded.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from cluster_conf import edit
from cluster_conf.document import ClusterConf
from cman import control
from rgmanager.endpoints import RG_SOCKET
from tests.ricci_fixtures import tear_down, wait_until

pytestmark = pytest.mark.slow
paramiko = pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")

from ricci_agent import lab_services  # noqa: E402
from ricci_agent.lab import Lab, free_block, lab_cluster_conf, node_names  # noqa: E402


def wait_for(what: str, predicate: Callable[[], object], timeout: float = 30.0, step: float = 0.1):
    return wait_until(what, predicate, timeout, step)


def rg_status(lab: Lab, node: str) -> dict | None:
    try:
        return control.request(lab.node(node).root, "status", timeout=2.0, socket_name=RG_SOCKET)
    except control.ControlError:
        return None


def service(lab: Lab, name: str, node: str = "node2") -> dict:
    status = rg_status(lab, node) or {}
    for entry in status.get("services", []):
        if entry["name"] == f"service:{name}":
            return entry
    return {}


def owner(lab: Lab, name: str, node: str = "node2") -> str | None:
    entry = service(lab, name, node)
    return entry.get("owner") if entry.get("state_str") == "started" else None


def clusvcadm(lab: Lab, node: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["clusvcadm", *args], env=lab.node(node).environ(), capture_output=True, text=True,
                          timeout=150, check=False)


def http(address: str) -> str | None:
    try:
        return urllib.request.urlopen(f"http://{address}:8080/", timeout=0.5).read().decode().strip()
    except OSError:
        return None


def running_on(ledger: Path, name: str) -> set[str]:
    """Nodes whose last ledger record for `name` is a start or alive (not a stop)."""
    last: dict[str, str] = {}
    for record in lab_services.read_ledger(ledger):
        if record.get("service") == name and record.get("event") in ("start", "stop"):
            last[record["node"]] = record["event"]
    return {node for node, event in last.items() if event == "start"}


def starts(ledger: Path, name: str) -> list[str]:
    return [r["node"] for r in lab_services.read_ledger(ledger) if r.get("service") == name and r["event"] == "start"]


def kill_keeper(root: Path, name: str) -> None:
    """The service's process dies (as a crashed daemon would): its status check fails next."""
    import json

    pid = json.loads(lab_services.pid_file(root, name).read_text())["pid"]
    os.kill(pid, 9)


@pytest.fixture
def make_lab(tmp_path: Path):
    labs: list[Lab] = []

    def make(count: int = 3, services: list | None = None, change: Callable[[ClusterConf, Lab], None] | None = None,
             web: bool = True) -> Lab:
        lab = Lab(tmp_path / f"lab{len(labs)}")
        labs.append(lab)
        names = node_names(count)
        first = free_block(count)
        chosen = list(services or [])
        if web:
            chosen.insert(0, lab_services.web_service(lab_services.web_address(first)))
        conf = ClusterConf.from_bytes(lab_cluster_conf("labcluster", names, 11111, lab.directory, services=chosen))
        edit.set_section_attrs(conf, "rm", {"status_poll_interval": "1"})
        if change is not None:
            change(conf, lab)
        conf.mark_edited()
        lab.create(names, "labcluster", first, 11111, config=conf.to_bytes(), services=chosen)
        lab.up()
        wait_for("an RG-Master", lambda: (rg_status(lab, "node1") or {}).get("master"), timeout=30)
        return lab

    yield make
    for lab in labs:
        tear_down(lab)


def web_address(lab: Lab) -> str:
    return lab_services.web_address(lab.node("node1").address)


# -- relocation, locks, enable/disable, freeze ---------------------------------------------------------------------
def test_relocate_lock_disable_enable_and_freeze_the_web_service(make_lab):
    lab = make_lab(3)
    address = web_address(lab)
    wait_for("webservice on node1", lambda: owner(lab, "webservice") == "node1")
    assert http(address) == "node1 server"

    out = clusvcadm(lab, "node2", "-r", "webservice", "-m", "node3")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["Trying to relocate service:webservice to node3...Success",
                                       "service:webservice is now running on node3"]
    assert http(address) == "node3 server"

    out = clusvcadm(lab, "node2", "-r", "webservice")  # no target: the best other node of the ordered domain
    assert out.returncode == 0 and out.stdout.startswith("Trying to relocate service:webservice...Success")
    assert owner(lab, "webservice") == "node1" and http(address) == "node1 server"

    assert clusvcadm(lab, "node2", "-l").stdout.strip() == "Resource groups locked"
    refused = clusvcadm(lab, "node2", "-r", "webservice", "-m", "node2")
    assert refused.returncode == 250, refused.stdout  # -6 mod 256: Temporary failure; try again
    assert "Temporary failure; try again" in refused.stdout
    assert owner(lab, "webservice") == "node1"
    assert clusvcadm(lab, "node2", "-u").stdout.strip() == "Resource groups unlocked"
    assert clusvcadm(lab, "node2", "-r", "webservice", "-m", "node2").returncode == 0
    assert http(address) == "node2 server"

    out = clusvcadm(lab, "node1", "-d", "webservice")
    assert out.returncode == 0 and out.stdout.strip() == "Local machine disabling service:webservice...Success"
    assert service(lab, "webservice")["state_str"] == "disabled" and http(address) is None
    out = clusvcadm(lab, "node3", "-e", "webservice")
    assert out.returncode == 0 and "service:webservice is now running on node1" in out.stdout
    assert http(address) == "node1 server"

    out = clusvcadm(lab, "node3", "-Z", "webservice")
    assert out.returncode == 0 and service(lab, "webservice")["flags_str"] == "frozen"
    frozen = clusvcadm(lab, "node3", "-r", "webservice", "-m", "node2")
    assert frozen.returncode == 245 and "Failure: Service is frozen" in frozen.stdout  # -11
    text = subprocess.run(["clustat"], env=lab.node("node2").environ(), capture_output=True, text=True,
                          timeout=10).stdout
    assert "RG-Master" in text and any(line.split()[-2:] == ["started", "[Z]"] for line in text.splitlines()
                                       if "service:webservice" in line)  # §4.1: the state padded, then [Z]
    assert clusvcadm(lab, "node3", "-U", "webservice").returncode == 0
    assert service(lab, "webservice")["flags_str"] == ""

    # Through ricci, as the console drives it: the agent forwards service.* and status to rgmanager.
    with lab.client() as client:
        reply = client.call(*lab.node("node2").endpoint, "service.relocate", {"service": "webservice",
                                                                               "target": "node3"})
        assert (reply["code"], reply["text"], reply["owner"]) == (0, "Success", "node3")
        status = client.call(*lab.node("node1").endpoint, "rgmanager.status")
        assert status["running"] and status["master"] == "node1"
        assert [s["owner"] for s in status["services"] if s["name"] == "service:webservice"] == ["node3"]
    assert http(address) == "node3 server"


# -- failure of the owner, failback ------------------------------------------------------------------------------------
def test_killed_owner_is_fenced_then_its_service_runs_on_the_next_node_then_fails_back(make_lab):
    lab = make_lab(3)
    address = web_address(lab)
    wait_for("webservice on node1", lambda: http(address) == "node1 server")
    killed = time.monotonic()
    lab.kill("node1")
    wait_for("webservice on node2", lambda: http(address) == "node2 server", timeout=20)
    failover = time.monotonic() - killed
    fence = [e for e in fence_history(lab, "node2") if e.get("node") == "node1" and e.get("status") == "success"]
    assert fence, "the service moved before its owner was fenced"
    assert failover < 10
    # fence_lab rebooted node1: it rejoins, and the service fails back to the better node of the ordered domain.
    wait_for("webservice back on node1", lambda: http(address) == "node1 server", timeout=40)
    # HTTP answers as soon as the server listens; the table says started once the start action returned
    wait_for("node3's table to show it", lambda: owner(lab, "webservice", "node3") == "node1", timeout=10)


def fence_history(lab: Lab, node: str) -> list[dict]:
    from cman.fence_agents import FenceHistory

    return FenceHistory(lab.node(node).root).entries(limit=1000)


# -- domains: nofailback, restricted; exclusive; depend ---------------------------------------------------------------
def test_nofailback_restricted_domain_and_dependencies(make_lab, tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    svcs = lab_services.ledger_services(3, ledger)  # svc1 (nofailback domain), svc2 (restricted to node3), svc3

    def domains(conf: ClusterConf, lab: Lab) -> None:
        edit.add_domain(conf, "stay", ordered=True, nofailback=True, members=[("node1", 1), ("node2", 2)])
        edit.add_domain(conf, "only3", restricted=True, members=[("node3", 1)])
        rm = conf.root.find("rm")
        for svc in rm.iterfind("service"):
            if svc.get("name") == "svc1":
                svc.set("domain", "stay")
            elif svc.get("name") == "svc2":
                svc.set("domain", "only3")
            elif svc.get("name") == "svc3":
                svc.set("depend", "service:svc1")

    lab = make_lab(3, svcs, domains, web=False)
    wait_for("svc1 on node1", lambda: owner(lab, "svc1") == "node1")
    wait_for("svc2 on node3", lambda: owner(lab, "svc2") == "node3")
    wait_for("svc3 running", lambda: owner(lab, "svc3"))

    # depend: disabling svc1 stops svc3; enabling it again lets svc3 start
    assert clusvcadm(lab, "node2", "-d", "svc1").returncode == 0
    wait_for("svc3 stopped with its dependency", lambda: service(lab, "svc3").get("state_str") == "stopped")
    assert not running_on(ledger, "svc3")
    assert clusvcadm(lab, "node2", "-e", "svc1", "-m", "node1").returncode == 0
    wait_for("svc3 started again", lambda: owner(lab, "svc3"))

    # restricted domain with its only member down: stopped, not failed
    lab.stop("node3")
    wait_for("svc2 stopped", lambda: service(lab, "svc2", "node1").get("state_str") == "stopped", timeout=30)
    assert service(lab, "svc2", "node1").get("owner") is None and running_on(ledger, "svc2") == set()
    lab.start("node3")
    wait_for("svc2 back on node3", lambda: owner(lab, "svc2", "node1") == "node3", timeout=40)

    # nofailback: svc1 moves to node2 when node1 dies and stays there when node1 returns
    lab.kill("node1")
    wait_for("svc1 on node2", lambda: owner(lab, "svc1", "node2") == "node2", timeout=30)
    wait_for("node1 back", lambda: (rg_status(lab, "node1") or {}).get("master") is not None, timeout=40)
    time.sleep(3.0)
    assert owner(lab, "svc1", "node2") == "node2", "nofailback: svc1 went back to node1"
    assert running_on(ledger, "svc1") == {"node2"}


def test_exclusive_service_runs_alone(make_lab, tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    svcs = lab_services.ledger_services(3, ledger)

    def exclusive(conf: ClusterConf, lab: Lab) -> None:
        for svc in conf.root.find("rm").iterfind("service"):
            svc.attrib.pop("domain", None)
            if svc.get("name") == "svc3":
                svc.set("exclusive", "1")

    lab = make_lab(3, svcs, exclusive, web=False)
    wait_for("all three running", lambda: all(owner(lab, s) for s in ("svc1", "svc2", "svc3")))
    where = {s: owner(lab, s) for s in ("svc1", "svc2", "svc3")}
    assert where["svc3"] not in (where["svc1"], where["svc2"]), where
    refused = clusvcadm(lab, "node1", "-r", "svc1", "-m", where["svc3"])
    assert refused.returncode != 0 and owner(lab, "svc1") == where["svc1"]


# -- status checks and the restart policy ---------------------------------------------------------------------------
def test_restart_policy_thresholds_then_relocation(make_lab, tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    svcs = lab_services.ledger_services(1, ledger)

    def restart_twice(conf: ClusterConf, lab: Lab) -> None:
        svc = conf.root.find("rm/service")
        svc.set("recovery", "restart")
        svc.set("max_restarts", "2")
        svc.set("restart_expire_time", "300")

    lab = make_lab(3, svcs, restart_twice, web=False)
    wait_for("svc1 on node1", lambda: owner(lab, "svc1") == "node1")
    for attempt in range(3):
        before = len(starts(ledger, "svc1"))
        kill_keeper(lab.node(owner(lab, "svc1") or "node1").root, "svc1")
        wait_for(f"restart {attempt + 1}", lambda b=before: len(starts(ledger, "svc1")) > b, timeout=30)
    history = starts(ledger, "svc1")
    assert history[:3] == ["node1", "node1", "node1"], history  # two local restarts within the threshold
    assert history[3] != "node1", f"the third failure should relocate: {history}"
    wait_for("svc1 started elsewhere", lambda: owner(lab, "svc1") not in (None, "node1"))


# -- configuration change ------------------------------------------------------------------------------------------
def test_config_change_restarts_only_the_changed_resource(make_lab, tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    parts = lab_services.ledger_services(2, ledger, prefix="part")

    def one_service(conf: ClusterConf, lab: Lab) -> None:
        rm = conf.root.find("rm")
        services = list(rm.iterfind("service"))
        keep, other = services
        for child in list(other):
            keep.append(child)  # part2's script joins part1's service
        rm.remove(other)
        keep.set("name", "multi")

    lab = make_lab(3, parts, one_service, web=False)
    wait_for("multi running", lambda: owner(lab, "multi"))
    before = {name: len(starts(ledger, name)) for name in ("part1", "part2")}
    root = lab.node("node1").root
    # part2's script moves to another file (the same program): the delta restarts part2 only.
    original = lab_services.script_path(lab.directory, "part2")
    moved = original.with_name("part2-v2")
    shutil.copy2(original, moved)
    conf = ClusterConf.load(root / "etc/cluster/cluster.conf")
    with conf.transaction():
        edit.set_resource_attrs(conf, "script", "part2", {"file": str(moved)})
    conf.save(root / "etc/cluster/cluster.conf")
    reload = subprocess.run(["cman_tool", "version", "-r"], env=lab.node("node1").environ(), capture_output=True,
                            text=True, timeout=60)
    assert reload.returncode == 0, reload.stderr
    wait_for("part2 restarted", lambda: len(starts(ledger, "part2")) > before["part2"], timeout=20)
    time.sleep(3.0)
    after = {name: len(starts(ledger, name)) for name in ("part1", "part2")}
    assert after["part1"] == before["part1"], "the unchanged resource was restarted"
    assert owner(lab, "multi") is not None


# -- quorum loss ------------------------------------------------------------------------------------------------
def test_quorum_loss_stops_every_service(make_lab, tmp_path):
    ledger = tmp_path / "ledger.jsonl"
    svcs = lab_services.ledger_services(2, ledger)

    def on_node1(conf: ClusterConf, lab: Lab) -> None:
        edit.add_domain(conf, "one", restricted=True, members=[("node1", 1)])
        for svc in conf.root.find("rm").iterfind("service"):
            svc.set("domain", "one")

    lab = make_lab(3, svcs, on_node1, web=False)
    wait_for("both on node1", lambda: owner(lab, "svc1") == "node1" and owner(lab, "svc2") == "node1")
    lab.stop("node2")
    lab.stop("node3")  # node1 alone: 1 vote of 3, "Activity blocked"
    wait_for("everything stopped on node1", lambda: not running_on(ledger, "svc1") and not running_on(ledger, "svc2"),
             timeout=20)
    log = (lab.node("node1").root / "var/log/cluster/rgmanager.log").read_text()
    assert "#1: Quorum Dissolved" in log
    text = subprocess.run(["clustat"], env=lab.node("node1").environ(), capture_output=True, text=True,
                          timeout=10).stdout
    assert "Member Status: Inquorate" in text
