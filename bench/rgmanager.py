"""python -m bench.rgmanager: the service manager's latencies on lab clusters (issue 6, §4).

- failover: a 3-node lab (token 1000 ms, fence_lab with its default reboot) serving the lab's web service; each
  trial SIGKILLs every process of the node that serves it and times until the service answers HTTP from another
  node: detection, fencing, the RG-Master's plan and the start, all included. The killed node reboots and the
  service fails back to it before the next trial. Targets: p50 <= 1.5 s, p99 <= 2.0 s.
- relocation: `clusvcadm -r webservice -m NODE` (the real command) until it returns, the service started there.
- clustat: the real `clustat` as a process, on that 3-node lab, and on a 16-node lab with 1000 services
  (`<script file="/bin/true">`, autostart 0: the 1000 records without 1000 processes). Target <= 150 ms wall.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.__main__ import machine
from bench.cman import wait_for  # bounded polling, one way for both lab benchmarks
from cluster_conf import edit
from cluster_conf.document import ClusterConf
from cman import control
from rgmanager.endpoints import RG_SOCKET
from ricci_agent import lab_services
from ricci_agent.lab import Lab, free_block, lab_cluster_conf, node_names

TARGET_P50, TARGET_P99, TARGET_CLUSTAT = 1.5, 2.0, 0.150


def http(address: str) -> str | None:
    try:
        return urllib.request.urlopen(f"http://{address}:8080/", timeout=0.2).read().decode().strip()
    except OSError:
        return None


def rg_status(lab: Lab, node: str) -> dict | None:
    try:
        return control.request(lab.node(node).root, "status", timeout=2.0, socket_name=RG_SOCKET)
    except control.ControlError:
        return None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def web_lab(directory: Path) -> tuple[Lab, str]:
    lab = Lab(directory)
    first = free_block(3)
    lab.up(nodes=3, first_address=first)
    address = lab_services.web_address(first)
    wait_for(lambda: http(address) == "node1 server", 60, 0.1)
    return lab, address


def failover(lab: Lab, address: str, trials: int, log) -> list[float]:
    times = []
    for i in range(trials):
        owner = wait_for(lambda: (http(address) or "").split(" ")[0] or None, 60, 0.05)
        time.sleep(1.0)
        killed = time.monotonic()
        lab.kill(owner)
        moved = wait_for(lambda o=owner: (r := http(address)) is not None and not r.startswith(o + " ") and r, 30,
                         0.01)
        elapsed = time.monotonic() - killed
        times.append(elapsed)
        log(f"  failover {i + 1:2d}: {elapsed * 1000:7.1f} ms ({owner} -> {moved.split()[0]})")
        # the killed node was rebooted by the fence: wait until it is back and the service failed back to node1
        wait_for(lambda: http(address) == "node1 server" and all(
            (rg_status(lab, n) or {}).get("master") for n in ("node1", "node2", "node3")), 90, 0.1)
    return times


def relocation(lab: Lab, trials: int, log) -> list[float]:
    times = []
    env = lab.node("node2").environ()
    for i in range(trials):
        target = ("node2", "node3", "node1")[i % 3]
        started = time.monotonic()
        done = subprocess.run(["clusvcadm", "-r", "webservice", "-m", target], env=env, capture_output=True,
                              text=True, timeout=120)
        elapsed = time.monotonic() - started
        if done.returncode != 0:
            log(f"  relocation {i + 1} to {target} failed: {done.stdout.strip()} {done.stderr.strip()}")
            continue
        times.append(elapsed)
    return times


def clustat_times(lab: Lab, runs: int) -> list[float]:
    env = lab.node("node1").environ()
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        subprocess.run(["clustat"], env=env, stdout=subprocess.DEVNULL, check=True, timeout=30)
        times.append(time.perf_counter() - started)
    return times[1:]


def big_lab(directory: Path, nodes: int, services: int, log) -> Lab:
    lab = Lab(directory)
    names = node_names(nodes)
    conf = ClusterConf.from_bytes(lab_cluster_conf("big", names, 11111, lab.directory))
    edit.add_resource(conf, "script", {"name": "noop", "file": "/bin/true"})
    for i in range(services):
        edit.add_service(conf, f"svc{i:04d}", {"autostart": "0"})
        edit.add_child_resource(conf, f"svc{i:04d}", "script", {"ref": "noop"})
    conf.mark_edited()  # the edit helpers change the tree; to_bytes() serializes it only once marked
    lab.create(names, "big", free_block(nodes), 11111, config=conf.to_bytes(), services=False)
    started = time.monotonic()
    lab.up(timeout=120 + 2.0 * nodes)
    wait_for(lambda: len((rg_status(lab, "node1") or {}).get("services") or []) == services, 300, 0.5)
    # every rgmanager has initialized its services (it announces itself only then) and the cluster is quiet
    wait_for(lambda: all(m.get("rgmanager") for m in (rg_status(lab, "node1") or {}).get("members", [])), 600, 1.0)
    log(f"  {nodes} nodes, {services} services up in {time.monotonic() - started:.1f} s")
    time.sleep(5.0)
    return lab


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rgmanager", description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="failovers to time (default 20)")
    parser.add_argument("--relocations", type=int, default=9, help="relocations to time (default 9)")
    parser.add_argument("--big", default="16x1000", help="nodes x services of the clustat lab (default 16x1000; "
                                                          "'0' skips it)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    info = machine()
    print("Machine: " + "; ".join(f"{k}: {v}" for k, v in info))
    figures: dict = {"machine": dict(info)}
    with tempfile.TemporaryDirectory(prefix="bench-rg-") as tmp:
        lab, address = web_lab(Path(tmp) / "web")
        try:
            fail = failover(lab, address, args.trials, log)
            reloc = relocation(lab, args.relocations, log)
            small = clustat_times(lab, 20)
        finally:
            lab.down()
        figures.update(failover_s=fail, relocation_s=reloc, clustat_3_s=small)
        print(f"failover (kill -9 of the owner to HTTP from the new node, fencing included), {len(fail)} trials: "
              f"p50 {statistics.median(fail) * 1000:.0f} ms, p99 {percentile(fail, 99) * 1000:.0f} ms, "
              f"max {max(fail) * 1000:.0f} ms; targets p50 <= {TARGET_P50 * 1000:.0f}, p99 <= "
              f"{TARGET_P99 * 1000:.0f}: {'ok' if statistics.median(fail) <= TARGET_P50 else 'OVER'}/"
              f"{'ok' if percentile(fail, 99) <= TARGET_P99 else 'OVER'}")
        if reloc:
            print(f"relocation (clusvcadm -r -m until it returns), {len(reloc)} runs: p50 "
                  f"{statistics.median(reloc) * 1000:.0f} ms, max {max(reloc) * 1000:.0f} ms")
        print(f"clustat on the 3-node lab: median {statistics.median(small) * 1000:.0f} ms")
        if args.big != "0":
            nodes, services = (int(x) for x in args.big.split("x"))
            big = big_lab(Path(tmp) / "big", nodes, services, log)
            try:
                times = clustat_times(big, 20)
            finally:
                big.down()
            figures["clustat_big_s"] = times
            med = statistics.median(times)
            print(f"clustat on {nodes} nodes, {services} services: median {med * 1000:.0f} ms, max "
                  f"{max(times) * 1000:.0f} ms; target <= {TARGET_CLUSTAT * 1000:.0f} ms: "
                  f"{'ok' if med <= TARGET_CLUSTAT else 'OVER'}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
