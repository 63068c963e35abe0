"""python -m bench.ricci: configuration pushes through real ricci agents on loopback (issue 4, §6).

For each size (3, 16, 64 nodes) a lab is started (one `ricci serve` process per node on port 11111 of
127.A.B.11, .12, ..., a loopback block chosen free), then:
- push: the lab's client asks node1's agent to take a new config_version with propagate=true; node1 stages it on
  every node in parallel and commits it; the wall time runs until node1 answers, i.e. until every node has
  acknowledged the commit. The first push also opens node1's connections to its peers ("cold"); the next ones
  reuse them ("warm", the steady state). The first push also sets cman ccsd_poll to 60 s, so the agents'
  periodic catch-up neither steals CPU from the measures nor does part of the serial loop's work;
- serial: the classic `for node in ...; do ssh node ...; done`: for every node in turn, open a new connection
  (TCP, SSH handshake, authentication, channel), install the same new version (propagate=false: each agent
  validates it in full and installs it, as it would a copy an admin hands it), close. It runs in this process,
  so it saves the start of an `ssh` program per node that a real loop pays: the speed-up is a lower bound;
- ssh loop: the same loop written as an admin would, with OpenSSH's client: `for node in ...; do ssh -s node
  ricci < request; done` (one `ssh` process per node, the request on stdin, the agent's `ricci` subsystem).
  Skipped, with a note, when `ssh` is not installed;
- connect+auth: a new connection to one agent up to an open `ricci` channel (TCP, key exchange, host key check,
  public-key authentication, subsystem), measured as the first `hello` on a new client minus one request;
- request: one `hello` on an open channel;
- idle RSS of the agents (VmRSS) a second after the last push.

Targets (issue 4): 64-node push <= 1 s, >= 10x faster than the serial loop, the 64-node push at most 3x the
3-node push, connect+auth <= 15 ms, a request on an open channel <= 2 ms. Figures go to docs/performance.md.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.__main__ import Stats, machine
from ricci_agent.lab import Lab, free_block

SIZES = (3, 16, 64)
PUSH_TIMEOUT = 120.0  # seconds, per push: far above any target, so a hang shows as a failure, not a stall
# The agents' periodic catch-up (every ccsd_poll ms, 1 s by default) would steal CPU from the measures and, in
# the serial loop, copy the new version to the nodes the loop has not reached yet: the first push sets it to 60 s.
QUIET_POLL_MS = "60000"
SETTLE_S = 1.5
TARGET_PUSH_64_S = 1.0
TARGET_SPEEDUP = 10.0
TARGET_SCALING = 3.0
TARGET_CONNECT_MS = 15.0
TARGET_REQUEST_MS = 2.0


@dataclass(slots=True)
class SizeResult:
    nodes: int
    startup_s: float = 0.0
    cold_push_s: float = 0.0
    push_cpu_s: float = 0.0  # CPU the agents used per warm push (all of them together)
    serial_cpu_s: float = 0.0  # the same for one serial loop
    warm_push: Stats | None = None
    serial: Stats | None = None
    ssh_loop: Stats | None = None
    connect: Stats | None = None
    request: Stats | None = None
    rss_kib: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def ms(stats: Stats | None) -> dict[str, float] | None:
            if stats is None:
                return None
            return {"runs": stats.runs, "median_ms": round(stats.median * 1000, 2),
                    "min_ms": round(stats.low * 1000, 2), "max_ms": round(stats.high * 1000, 2)}

        return {
            "nodes": self.nodes, "startup_s": round(self.startup_s, 2),
            "cold_push_ms": round(self.cold_push_s * 1000, 1),
            "agents_cpu_ms_per_push": round(self.push_cpu_s * 1000), "agents_cpu_ms_per_serial_loop":
            round(self.serial_cpu_s * 1000),
            "warm_push": ms(self.warm_push), "serial": ms(self.serial),
            "ssh_loop": ms(self.ssh_loop), "connect_auth": ms(self.connect),
            "request": ms(self.request),
            "rss_kib": {"median": int(statistics.median(self.rss_kib)), "max": max(self.rss_kib)} if self.rss_kib
            else None,
        }


# -- the measured operations ---------------------------------------------------------------------------------
def next_config(lab: Lab, version: int, **cman: str) -> str:
    """node1's live cluster.conf raised to config_version `version` (one more than it holds), with `cman`
    attributes set if given."""
    from cluster_conf import ClusterConf, edit

    conf = ClusterConf.load(lab.node("node1").config_path)
    with conf.transaction():  # config_version + 1
        if cman:
            edit.set_section_attrs(conf, "cman", cman)
    if conf.config_version != version:
        raise RuntimeError(f"node1 holds version {conf.config_version - 1 if conf.config_version else None}, "
                           f"not {version - 1}")
    return conf.to_string()


def live_version(lab: Lab) -> int:
    with lab.client() as client:
        return int(client.call(*lab.node("node1").endpoint, "hello")["config_version"])


def push(lab: Lab, client: Any, version: int, **cman: str) -> float:
    """Wall time of one propagating push through node1; fails loudly unless every node took it."""
    xml = next_config(lab, version, **cman)
    start = time.perf_counter()
    reply = client.call(*lab.node("node1").endpoint, "cluster.set_config", {"xml": xml, "propagate": True},
                        timeout=PUSH_TIMEOUT)
    elapsed = time.perf_counter() - start
    outcomes = {name: o.get("outcome") for name, o in reply["nodes"].items()}
    # "already": the node had pulled this version by itself (catch-up) before its stage request arrived.
    bad = {name: o for name, o in outcomes.items() if o not in ("updated", "already")}
    if bad or len(outcomes) != len(lab.nodes):
        raise RuntimeError(f"push of version {version} did not reach every node: {bad or outcomes}")
    return elapsed


def serial_loop(lab: Lab, version: int) -> float:
    """Wall time of installing `version` node after node, a new connection for each (propagate=false)."""
    from ricci_agent.client import RicciClient

    xml = next_config(lab, version)
    start = time.perf_counter()
    for node in lab.nodes:
        with RicciClient.for_root(lab.client_root) as client:
            reply = client.call(*node.endpoint, "cluster.set_config", {"xml": xml, "propagate": False},
                                timeout=PUSH_TIMEOUT)
        if reply["nodes"][node.name]["outcome"] != "updated":
            raise RuntimeError(f"serial install of version {version} on {node.name}: {reply['nodes']}")
    return time.perf_counter() - start


def ssh_loop(lab: Lab, version: int) -> float:
    """Wall time of the same node-after-node install with OpenSSH's client: one `ssh` process per node."""
    xml = next_config(lab, version)
    request = json.dumps({"v": 1, "id": 1, "fn": "cluster.set_config", "args": {"xml": xml, "propagate": False}})
    ricci = lab.client_root / "etc" / "ricci"
    options = ["-F", "/dev/null", "-i", str(ricci / "id_ed25519"), "-o", f"UserKnownHostsFile={ricci / 'known_hosts'}",
               "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
               "-o", "IdentitiesOnly=yes"]
    start = time.perf_counter()
    for node in lab.nodes:
        result = subprocess.run(["ssh", "-p", str(node.port), *options, "-s", f"ricci@{node.address}", "ricci"],
                                input=request + "\n", capture_output=True, text=True, timeout=PUSH_TIMEOUT,
                                check=False)
        reply = json.loads(result.stdout or "{}")
        if result.returncode != 0 or not reply.get("ok") or \
                reply["result"]["nodes"][node.name]["outcome"] != "updated":
            raise RuntimeError(f"ssh install of version {version} on {node.name}: {result.stderr.strip() or reply}")
    return time.perf_counter() - start


def connect_and_request(lab: Lab, runs: int) -> tuple[Stats, Stats]:
    """(connect+auth, request on an open channel), against node1."""
    from ricci_agent.client import RicciClient

    target = lab.node("node1").endpoint
    requests: list[float] = []
    with RicciClient.for_root(lab.client_root) as client:
        client.call(*target, "hello")
        for _ in range(max(50, runs * 10)):
            start = time.perf_counter()
            client.call(*target, "hello")
            requests.append(time.perf_counter() - start)
    request = statistics.median(requests)
    connects: list[float] = []
    for i in range(runs + 1):
        with RicciClient.for_root(lab.client_root) as client:
            start = time.perf_counter()
            client.call(*target, "hello")
            elapsed = time.perf_counter() - start
        if i:
            connects.append(max(0.0, elapsed - request))
    return Stats.of(connects), Stats.of(requests)


def agents_cpu_s(lab: Lab) -> float:
    """CPU time (user + system) the lab's agents have used so far, in seconds."""
    import os

    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for node in lab.nodes:
        try:
            fields = Path(f"/proc/{node.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / ticks


def idle_rss_kib(lab: Lab) -> list[int]:
    sizes = []
    for node in lab.nodes:
        try:
            for line in Path(f"/proc/{node.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]))
        except (OSError, ValueError):
            continue
    return sizes


def run_size(nodes: int, runs: int, workdir: Path, log: Any) -> SizeResult:
    result = SizeResult(nodes)
    lab = Lab(workdir / f"lab{nodes}")
    start = time.perf_counter()
    try:
        lab.up(nodes=nodes, first_address=free_block(nodes), timeout=60 + 2.0 * nodes, no_daemons=True)
        result.startup_s = time.perf_counter() - start
        log(f"  {nodes} agents up in {result.startup_s:.1f} s")
        version = live_version(lab)
        with lab.client(long_request_timeout=PUSH_TIMEOUT) as client:
            version += 1
            result.cold_push_s = push(lab, client, version, ccsd_poll=QUIET_POLL_MS)
            time.sleep(SETTLE_S)  # every agent ends the catch-up wait it began under the old 1 s interval
            warm = []
            cpu_before = agents_cpu_s(lab)
            for _ in range(runs):
                version += 1
                warm.append(push(lab, client, version))
            result.push_cpu_s = (agents_cpu_s(lab) - cpu_before) / runs
            result.warm_push = Stats.of(warm)
        serial = []
        cpu_before = agents_cpu_s(lab)
        for _ in range(max(1, runs // 2)):
            version += 1
            serial.append(serial_loop(lab, version))
        result.serial_cpu_s = (agents_cpu_s(lab) - cpu_before) / len(serial)
        result.serial = Stats.of(serial)
        if shutil.which("ssh"):
            loops = []
            for _ in range(max(1, runs // 2)):
                version += 1
                loops.append(ssh_loop(lab, version))
            result.ssh_loop = Stats.of(loops)
        result.connect, result.request = connect_and_request(lab, runs)
        time.sleep(1.0)
        result.rss_kib = idle_rss_kib(lab)
    finally:
        if lab.exists():
            lab.down()
    return result


# -- report ----------------------------------------------------------------------------------------------------
def filesystem(path: str) -> str:
    """The type of the filesystem holding `path` (from /proc/mounts): fsync costs differ by orders of magnitude."""
    best, kind = "", "unknown"
    real = str(Path(path).resolve())
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) > 2 and (real == fields[1] or real.startswith(fields[1].rstrip("/") + "/")) \
                    and len(fields[1]) > len(best):
                best, kind = fields[1], fields[2]
    except OSError:
        pass
    return kind


def verdict(ok: bool) -> str:
    return "ok" if ok else "OVER"


def report(results: list[SizeResult]) -> list[str]:
    lines = [
        "| nodes | agents up | cold push | warm push (median, min-max) | agents' CPU per push | serial loop, new "
        "connection per node | agents' CPU per loop | speed-up | ssh loop (OpenSSH client per node) | speed-up | "
        "idle RSS per agent (median, max) |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        assert r.warm_push is not None and r.serial is not None
        speedup = r.serial.median / r.warm_push.median
        rss = f"{statistics.median(r.rss_kib) / 1024:.1f} MiB, {max(r.rss_kib) / 1024:.1f} MiB" if r.rss_kib else "?"
        loop = (f"{r.ssh_loop.median * 1000:.0f} ms | {r.ssh_loop.median / r.warm_push.median:.1f}x"
                if r.ssh_loop else "n/a (no ssh) | ")
        lines.append(
            f"| {r.nodes} | {r.startup_s:.1f} s | {r.cold_push_s * 1000:.0f} ms | "
            f"{r.warm_push.median * 1000:.0f} ms ({r.warm_push.low * 1000:.0f}-{r.warm_push.high * 1000:.0f}) | "
            f"{r.push_cpu_s * 1000:.0f} ms | {r.serial.median * 1000:.0f} ms | {r.serial_cpu_s * 1000:.0f} ms | "
            f"{speedup:.1f}x | {loop} | {rss} |"
        )
    lines.append("")
    by_size = {r.nodes: r for r in results}
    largest, smallest = max(by_size), min(by_size)
    big, small = by_size[largest], by_size[smallest]
    assert big.warm_push is not None and small.warm_push is not None and big.serial is not None
    connect = statistics.median(r.connect.median for r in results if r.connect)
    request = statistics.median(r.request.median for r in results if r.request)
    lines += [
        "| target | measured | |",
        "|---|---|---|",
        f"| {largest}-node push <= {TARGET_PUSH_64_S:g} s | {big.warm_push.median * 1000:.0f} ms warm, "
        f"{big.cold_push_s * 1000:.0f} ms cold | {verdict(big.warm_push.median <= TARGET_PUSH_64_S)} |",
        f"| >= {TARGET_SPEEDUP:g}x faster than the serial loop, in-process ({largest} nodes) | "
        f"{big.serial.median / big.warm_push.median:.1f}x | "
        f"{verdict(big.serial.median / big.warm_push.median >= TARGET_SPEEDUP)} |",
        *([f"| >= {TARGET_SPEEDUP:g}x faster than the ssh loop ({largest} nodes) | "
           f"{big.ssh_loop.median / big.warm_push.median:.1f}x | "
           f"{verdict(big.ssh_loop.median / big.warm_push.median >= TARGET_SPEEDUP)} |"] if big.ssh_loop else []),
        f"| {largest}-node push <= {TARGET_SCALING:g}x the {smallest}-node push | "
        f"{big.warm_push.median / small.warm_push.median:.1f}x | "
        f"{verdict(big.warm_push.median / small.warm_push.median <= TARGET_SCALING)} |",
        f"| connect+auth <= {TARGET_CONNECT_MS:g} ms | {connect * 1000:.1f} ms | "
        f"{verdict(connect * 1000 <= TARGET_CONNECT_MS)} |",
        f"| request on an open channel <= {TARGET_REQUEST_MS:g} ms | {request * 1000:.2f} ms | "
        f"{verdict(request * 1000 <= TARGET_REQUEST_MS)} |",
    ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ricci", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="node counts (default 3,16,64)")
    parser.add_argument("--runs", type=int, default=5, help="timed pushes per size (default 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the machine and the figures as JSON")
    parser.add_argument("--workdir", metavar="DIR", help="where the labs live (default: a temporary folder; "
                        "/dev/shm makes every fsync free, to tell disk time from the rest)")
    args = parser.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        parser.error(f"--sizes takes comma-separated node counts, not {args.sizes!r}")
    if not sizes or min(sizes) < 1 or args.runs < 1:
        parser.error("--sizes needs node counts >= 1 and --runs at least 1")

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    info = machine()
    print("Machine: " + "; ".join(f"{k}: {v}" for k, v in info))
    print(f"Labs in: {args.workdir or tempfile.gettempdir()} ({filesystem(args.workdir or tempfile.gettempdir())})")
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-ricci-", dir=args.workdir) as tmp:
        for nodes in sizes:
            log(f"{nodes} nodes ...")
            results.append(run_size(nodes, args.runs, Path(tmp), log))
    print()
    print("\n".join(report(results)))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": dict(info), "sizes": [r.to_dict() for r in results]},
                                              indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
