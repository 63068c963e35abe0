"""python -m bench.engine: time the rgmanager planner on generated clusters.

Cases (issue 3 §5; Pacemaker's crm_simulate 2.1.5 baseline from field-anchors §3.4 in brackets):
- initial placement: `QuorumFormed` on an empty state table, every service placed [16 x 4000: 328 s];
- node-failure replan: `NodeDown` of the node running the most services, on the steady state the initial placement
  produced [32 x 2000: 10.8 s];
- both over several sizes, with the time per (service x domain size), to show how the cost grows;
- resource trees: `restree.build_trees` on services of 3-4 resources each (ip, fs, script, every other one a
  nested nfsexport), and the reconfiguration `delta` after 1% of the services changed one attribute.

The shape: ordered failover domains of 4-8 consecutive nodes (every third restricted, every fifth nofailback),
each service in domain i % domains, one exclusive service per 8 nodes (each in a different domain), every 20th
service depending (hard) on the one before it. The config is built once per size; the catalog compile (cached per
config by the planner) is timed on its own, and the plan timings use the warm cache as the daemon would.
"""
from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.__main__ import Row, machine, measure, table
from cluster_conf import ClusterConf
from cluster_conf.model import ClusterView, view
from rgmanager.placement import compile_config
from rgmanager.planner import Plan, plan
from rgmanager.reconfig import delta
from rgmanager.restree import build_trees
from rgmanager.snapshot import Membership, NodeDown, QuorumFormed, ServiceTable

TARGETS_MS = {("replan", 32, 2000): 100.0, ("initial", 16, 4000): 1000.0}
PACEMAKER_S = {("replan", 32, 2000): 10.8, ("initial", 16, 4000): 328.0, ("replan", 16, 4000): 15.2,
               ("initial", 32, 2000): 247.0, ("replan", 16, 1000): 1.9, ("initial", 16, 1000): 3.5}


@dataclass(frozen=True, slots=True)
class Shape:
    nodes: int
    services: int

    @property
    def domains(self) -> int:
        return max(1, self.nodes // 2)


def domain_members(d: int, nodes: int) -> list[int]:
    size = 4 + d % 5  # 4..8 nodes
    start = (d * 3) % nodes
    return [(start + k) % nodes + 1 for k in range(min(size, nodes))]


def generate(shape: Shape) -> str:
    lines = ['<?xml version="1.0"?>', '<cluster name="bench" config_version="1">', "<clusternodes>"]
    lines += [f'<clusternode name="node{n:03d}" nodeid="{n}"/>' for n in range(1, shape.nodes + 1)]
    lines += ["</clusternodes>", "<rm>", "<failoverdomains>"]
    for d in range(shape.domains):
        restricted = "1" if d % 3 == 0 else "0"
        nofailback = "1" if d % 5 == 0 else "0"
        lines.append(f'<failoverdomain name="dom{d:03d}" ordered="1" restricted="{restricted}" '
                     f'nofailback="{nofailback}">')
        for prio, n in enumerate(domain_members(d, shape.nodes), 1):
            lines.append(f'<failoverdomainnode name="node{n:03d}" priority="{prio}"/>')
        lines.append("</failoverdomain>")
    lines.append("</failoverdomains>")
    exclusive_every = max(1, shape.services // max(1, shape.nodes // 8))
    for s in range(shape.services):
        domain = s % shape.domains
        exclusive = s % exclusive_every == exclusive_every - 1
        if exclusive:  # spread the exclusive services over different domains
            domain = (s // exclusive_every * 7 + 1) % shape.domains
        attrs = f'name="svc{s:05d}" domain="dom{domain:03d}" recovery="relocate"'
        if exclusive:
            attrs += ' exclusive="1"'
        if s % 20 == 19:
            attrs += f' depend="service:svc{s - 1:05d}"'
        lines.append(f'<service {attrs}><script name="s{s}" file="/etc/init.d/s{s}"/></service>')
    lines += ["</rm>", "</cluster>"]
    return "\n".join(lines)


def build(shape: Shape) -> ClusterView:
    return view(ClusterConf.from_string(generate(shape)))


def mean_domain_size(shape: Shape) -> float:
    return statistics.mean(len(domain_members(d, shape.nodes)) for d in range(shape.domains))


def cases(shape: Shape, runs: int, label: str = "") -> tuple[list[Row], dict[str, object]]:
    config = build(shape)
    membership = Membership.from_config(config)
    compile_stats = measure(lambda: compile_config(config), runs)
    empty = ServiceTable()
    initial: list[Plan] = []
    init_stats = measure(lambda: initial.append(plan(config, membership, empty, QuorumFormed(now=10))), runs)
    steady = initial[-1]
    per_node = Counter(steady.placement.values())
    victim = min(per_node, key=lambda n: (-per_node[n], n))
    replans: list[Plan] = []
    replan_stats = measure(lambda: replans.append(plan(config, steady.membership, steady.table,
                                                       NodeDown(victim, now=20))), runs)
    result = replans[-1]
    moved = sum(1 for a in result.actions if a.kind.value == "start")
    unit = shape.services * mean_domain_size(shape)
    size = f"{shape.nodes} x {shape.services}"
    rows = [
        Row(f"{label}{size}: compile config (once per config)", None, compile_stats),
        Row(f"{label}{size}: initial placement (quorum formed)", TARGETS_MS.get(("initial", shape.nodes,
                                                                                  shape.services)), init_stats,
            _note(("initial", shape), f"{len(steady.placement)} started, {len(steady.pending)} waiting", init_stats,
                  unit)),
        Row(f"{label}{size}: node-failure replan", TARGETS_MS.get(("replan", shape.nodes, shape.services)),
            replan_stats,
            _note(("replan", shape), f"{victim} ran {per_node[victim]}; {len(result.actions)} actions, "
                  f"{moved} starts", replan_stats, unit)),
    ]
    facts = {"nodes": shape.nodes, "services": shape.services, "mean_domain_size": mean_domain_size(shape),
             "initial_ms": round(init_stats.median * 1000, 2), "replan_ms": round(replan_stats.median * 1000, 2),
             "compile_ms": round(compile_stats.median * 1000, 2), "failed_node_services": per_node[victim]}
    return rows, facts


def _note(key: tuple[str, Shape], text: str, stats: object, unit: float) -> str:
    kind, shape = key
    per_unit = stats.median * 1e9 / unit  # type: ignore[attr-defined]
    note = f"{text}; {per_unit:.0f} ns per service x domain node"
    baseline = PACEMAKER_S.get((kind, shape.nodes, shape.services))
    if baseline is not None:
        note += f"; crm_simulate {baseline:g} s ({baseline * 1000 / (stats.median * 1000):,.0f}x)"  # type: ignore
    return note


def tree_config(services: int, changed_every: int = 0) -> ClusterConf:
    """Services of 3-4 resources; with changed_every=k, every k-th service's script points at another file."""
    lines = ['<?xml version="1.0"?>', '<cluster name="trees" config_version="1">', "<clusternodes>",
             '<clusternode name="n1" nodeid="1"/>', "</clusternodes>", "<rm>"]
    for s in range(services):
        script = f"/etc/init.d/app{s}" + (".new" if changed_every and s % changed_every == 0 else "")
        export = f'<nfsexport name="e{s}"/>' if s % 2 else ""
        lines.append(f'<service name="svc{s:05d}"><ip address="10.{s // 65536}.{s // 256 % 256}.{s % 256}"/>'
                     f'<fs name="fs{s}" device="/dev/vg/lv{s}" mountpoint="/srv/{s}">{export}</fs>'
                     f'<script name="app{s}" file="{script}"/></service>')
    lines += ["</rm>", "</cluster>"]
    return ClusterConf.from_string("\n".join(lines))


def tree_cases(services: int, runs: int) -> list[Row]:
    old, new = tree_config(services), tree_config(services, changed_every=100)
    trees = build_trees(old)
    resources = sum(len(list(t.walk())) - 1 for t in trees.trees)
    build_stats = measure(lambda: build_trees(old), runs)
    new_trees = build_trees(new)
    delta_stats = measure(lambda: delta(trees, new_trees), runs)
    result = delta(trees, new_trees)
    return [
        Row(f"{services} services: build resource trees", 1000.0 if services == 5000 else None, build_stats,
            f"{resources} resources"),
        Row(f"{services} services: reconfiguration delta (1% changed)", None, delta_stats,
            f"{len(result.changed)} services changed"),
    ]


TREE_SIZES = (1000, 5000, 10000)
SIZES = (Shape(8, 500), Shape(16, 1000), Shape(16, 4000), Shape(32, 2000), Shape(32, 8000), Shape(64, 16000))
SMALL = (Shape(8, 100), Shape(16, 200))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.engine", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per case (default 5)")
    parser.add_argument("--small", action="store_true", help="small sizes only (a smoke run)")
    parser.add_argument("--json", metavar="FILE", help="also write the machine and the figures as JSON")
    args = parser.parse_args(argv)
    runs = max(1, min(args.runs, 100))
    info = machine()
    for key, value in info:
        print(f"{key + ':':14} {value}")
    print(f"{'runs:':14} {runs} timed runs per case after one warm-up\n")
    rows: list[Row] = []
    facts = []
    for shape in SMALL if args.small else SIZES:
        shape_rows, shape_facts = cases(shape, runs)
        rows += shape_rows
        facts.append(shape_facts)
    for services in (200,) if args.small else TREE_SIZES:
        rows += tree_cases(services, runs)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": dict(info), "sizes": facts,
                                               "rows": [r.to_dict() for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
