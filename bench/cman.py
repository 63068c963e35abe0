"""python -m bench.cman: time from `kill -9` of a node to "fenced and new view installed" on the survivors
(issue 5, §6).

A lab of 3 nodes (default) runs on a free loopback block with token 1000 ms; the fence device powers the victim
off (fence_lab action=off, so "fenced" is the real power-off, not the reboot that follows in a default lab). Each
trial SIGKILLs every process of the last node (Lab.kill), then waits until
- every survivor has installed a view without the victim (`view_installed_at` in its status), and
- the fencer's history records the victim fenced (the time the daemon collected the agent's success);
the trial's time is the later of the two, minus the moment of the kill. The node is then started again and
rejoins before the next trial. Reported: p50, p90, p99 and max over the trials, and the two parts (detection and
view, fence after view). Target: p50 <= token + 300 ms. The detection floor is the token itself (corosync 3: 3.65 s
on 3 nodes with its defaults; cman's default token was 10 s).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import machine
from cluster_conf.document import ClusterConf
from cman import control
from cman.fence_agents import FenceHistory
from ricci_agent.lab import Lab, free_block, lab_cluster_conf, node_names

TOKEN_MS = 1000
TARGET_MARGIN_MS = 300
TRIAL_TIMEOUT = 30.0


def status(lab: Lab, name: str) -> dict | None:
    try:
        return control.request(lab.node(name).root, "status", timeout=1.0)
    except control.ControlError:
        return None


def wait_for(predicate, timeout: float, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise TimeoutError


def make_lab(directory: Path, nodes: int) -> Lab:
    lab = Lab(directory)
    names = node_names(nodes)
    conf = ClusterConf.from_bytes(lab_cluster_conf("benchcluster", names, 11111, lab.directory))
    for device in conf.root.iterfind("clusternodes/clusternode/fence/method/device"):
        device.set("action", "off")
    conf.mark_edited()
    lab.create(names, "benchcluster", free_block(nodes), 11111, config=conf.to_bytes())
    lab.up()
    for name in names:
        wait_for(lambda n=name: (s := status(lab, n)) and len(s["members"]) == nodes, 30.0)
    return lab


def trial(lab: Lab, victim: str, survivors: list[str]) -> tuple[float, float, float]:
    victim_id = lab.node(victim).nodeid
    fencer = survivors[0]  # the lowest nodeid of the new view fences
    before = len([e for e in FenceHistory(lab.node(fencer).root).entries(node=victim, limit=1000)
                  if e.get("status") == "success"])
    killed = time.time()
    lab.kill(victim)

    def views_done():
        times = []
        for name in survivors:
            s = status(lab, name)
            if s is None or victim_id in s["members"] or s["view_installed_at"] is None:
                return None
            times.append(s["view_installed_at"])
        return max(times)

    def fenced():
        entries = [e for e in FenceHistory(lab.node(fencer).root).entries(node=victim, limit=1000)
                   if e.get("status") == "success"]
        return entries[-1]["time"] if len(entries) > before else None

    view_at = wait_for(views_done, TRIAL_TIMEOUT)
    fenced_at = wait_for(fenced, TRIAL_TIMEOUT)
    return max(view_at, fenced_at) - killed, view_at - killed, fenced_at - view_at


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cman", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=3, help="lab size (default 3)")
    parser.add_argument("--trials", type=int, default=20, help="kills to time (default 20)")
    parser.add_argument("--json", metavar="FILE", help="also write the machine and the figures as JSON")
    args = parser.parse_args(argv)
    if args.nodes < 2 or args.trials < 1:
        parser.error("--nodes needs at least 2 and --trials at least 1")
    info = machine()
    print("Machine: " + "; ".join(f"{k}: {v}" for k, v in info))
    names = node_names(args.nodes)
    victim, survivors = names[-1], names[:-1]
    totals: list[float] = []
    detections: list[float] = []
    fences: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-cman-") as tmp:
        lab = make_lab(Path(tmp) / "lab", args.nodes)
        try:
            for i in range(args.trials):
                time.sleep(1.0)  # a settled cluster: heartbeats flowing, the rejoin long done
                total, detection, fence = trial(lab, victim, survivors)
                totals.append(total)
                detections.append(detection)
                fences.append(fence)
                print(f"  trial {i + 1:2d}: {total * 1000:7.1f} ms (view {detection * 1000:7.1f} ms, "
                      f"fence +{fence * 1000:6.1f} ms)", file=sys.stderr, flush=True)
                lab.start(victim)
                wait_for(lambda: all(lab.node(victim).nodeid in ((status(lab, n) or {}).get("members") or [])
                                     for n in survivors), TRIAL_TIMEOUT)
        finally:
            lab.down()
    target = TOKEN_MS + TARGET_MARGIN_MS
    p50 = statistics.median(totals) * 1000
    print()
    print(f"kill -9 to fenced and new view installed, {args.nodes} nodes, token {TOKEN_MS} ms, "
          f"{len(totals)} trials:")
    print(f"  p50 {p50:.0f} ms   p90 {percentile(totals, 90) * 1000:.0f} ms   p99 {percentile(totals, 99) * 1000:.0f}"
          f" ms   max {max(totals) * 1000:.0f} ms   target p50 <= {target} ms: {'ok' if p50 <= target else 'OVER'}")
    print(f"  view installed after the kill: p50 {statistics.median(detections) * 1000:.0f} ms, "
          f"p99 {percentile(detections, 99) * 1000:.0f} ms; fence done after the view: p50 "
          f"{statistics.median(fences) * 1000:.0f} ms, p99 {percentile(fences, 99) * 1000:.0f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "machine": dict(info), "nodes": args.nodes, "token_ms": TOKEN_MS, "totals_s": totals,
            "view_s": detections, "fence_after_view_s": fences, "p50_ms": p50,
            "p99_ms": percentile(totals, 99) * 1000}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
