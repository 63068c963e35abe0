"""`manage.py localcluster`: the local lab (ricci agents on loopback), a thin adapter over ricci_agent.lab.

    manage.py localcluster up [--nodes N | --node-names a,b,c] [--name CLUSTER] [--no-daemons] [--dir DIR]
    manage.py localcluster down|status|heal [--dir DIR]
    manage.py localcluster kill|start|pause|resume NODE [--dir DIR]
    manage.py localcluster partition node1 / node2,node3 [--dir DIR]
    manage.py localcluster exec NODE [--dir DIR] -- COMMAND...

Failures print one line `localcluster: <message>` and exit 1 (exec: the command's own exit status). docs/lab.md.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandParser

from ricci_agent.lab import DEFAULT_CLUSTER_NAME, DEFAULT_DIR, Lab, LabError, NodeStatus, parse_groups

PROG = "localcluster"
EXIT_NOT_ALL_UP = 3  # status: the lab exists but some agent is down or silent


class Command(BaseCommand):
    help = "Run a local lab cluster: one ricci agent per node on 127.0.0.11, .12, ... (see docs/lab.md)"
    requires_system_checks: ClassVar[list[str]] = []  # the lab needs no database and no app

    def add_arguments(self, parser: CommandParser) -> None:
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--dir", default=DEFAULT_DIR, help=f"the lab's folder (default {DEFAULT_DIR})")
        verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True, parser_class=CommandParser)

        up = verbs.add_parser("up", parents=[common], help="create the lab (or start it again) and wait for it")
        shape = up.add_mutually_exclusive_group()
        shape.add_argument("--nodes", type=int, metavar="N", help="node1..nodeN (default 3)")
        shape.add_argument("--node-names", metavar="A,B,C", help="comma-separated node names")
        up.add_argument("--name", default=DEFAULT_CLUSTER_NAME, help=f"cluster name (default {DEFAULT_CLUSTER_NAME})")
        up.add_argument("--port", type=int, default=None, help="agent port on every address (default 11111)")
        up.add_argument("--no-daemons", action="store_true", help="start the agents only, not the cluster daemons")

        verbs.add_parser("down", parents=[common], help="stop every node (SIGTERM, then SIGKILL) and heal")
        verbs.add_parser("status", parents=[common], help="each node's agent, configuration version and cman view")
        for verb, text in (
            ("kill", "SIGKILL every process of a node"),
            ("start", "start a node again (its agent, then its cluster daemons)"),
            ("pause", "SIGSTOP every process of a node (a hung node)"),
            ("resume", "SIGCONT the processes of a paused node"),
        ):
            sub = verbs.add_parser(verb, parents=[common], help=text)
            sub.add_argument("node")
            if verb == "start":
                sub.add_argument("--no-daemons", action="store_true", default=None,
                                 help="start the agent only (default: as the lab was brought up)")
        cut = verbs.add_parser("partition", parents=[common], help="drop packets between groups of nodes (root)")
        cut.add_argument("groups", nargs="+", metavar="GROUP", help="node names; groups separated by '/', e.g. "
                         "node1 / node2,node3 (nodes in no group form one more group)")
        verbs.add_parser("heal", parents=[common], help="remove the partition")
        run = verbs.add_parser("exec", parents=[common], help="run a command with the node's CLUSTER_ROOT")
        run.add_argument("node")
        run.add_argument("command", nargs="*", metavar="-- COMMAND", help="the command and its arguments, after --")

    exec_tail: list[str] = []  # noqa: RUF012 (set per run) the words after `exec ... --`, kept from argparse

    def run_from_argv(self, argv: list[str]) -> None:
        """Take `-- COMMAND...` away from argparse, which would mix the command's options with ours."""
        if "exec" in argv[2:3] and "--" in argv:
            cut = argv.index("--")
            self.exec_tail = argv[cut + 1 :]
            argv = argv[:cut]
        super().run_from_argv(argv)

    def handle(self, *args: Any, **options: Any) -> None:
        lab = Lab(options["dir"])
        try:
            code = getattr(self, f"_{options['verb']}")(lab, options)
        except LabError as exc:
            sys.stderr.write(f"{PROG}: {exc}\n")
            code = exc.exit_code
        except KeyboardInterrupt:
            code = 130
        if code:
            sys.stdout.flush()
            raise SystemExit(code)

    # -- verbs -------------------------------------------------------------------------------------------
    def _up(self, lab: Lab, options: dict[str, Any]) -> int:
        names = None
        if options["node_names"] is not None:
            names = [n for n in options["node_names"].split(",") if n.strip()]
        extra = {"port": options["port"]} if options["port"] is not None else {}
        nodes = lab.up(options["nodes"], names, options["name"], no_daemons=options["no_daemons"], **extra)
        self.stdout.write(f"Lab {lab.cluster_name} is up in {lab.directory} ({len(nodes)} nodes):")
        for node in nodes:
            self.stdout.write(f"  {node.name:<12} {node.key:<22} pid {node.pid:<8} {node.fingerprint}")
        return 0

    def _down(self, lab: Lab, options: dict[str, Any]) -> int:
        stopped = lab.down()
        self.stdout.write(f"Stopped {', '.join(stopped)}." if stopped else "No agent was running.")
        return 0

    def _status(self, lab: Lab, options: dict[str, Any]) -> int:
        statuses = lab.status()
        self.stdout.write(f"Cluster {lab.cluster_name}, {len(statuses)} nodes, in {lab.directory}")
        self.stdout.write(status_table(statuses))
        versions = {(s.config_version, s.config_hash) for s in statuses if s.answering}
        if len(versions) > 1:
            self.stdout.write("Drift: the running nodes do not all hold the same configuration.")
        partition = lab.partition_state()
        if partition:
            self.stdout.write(f"Partition: {' / '.join(', '.join(g) for g in partition)}")
        self.stdout.write("Cluster views:")
        for status in statuses:
            self.stdout.write(f"  {status.node.name}: {cman_view(status)}")
        return 0 if all(s.answering for s in statuses) else EXIT_NOT_ALL_UP

    def _kill(self, lab: Lab, options: dict[str, Any]) -> int:
        pid = lab.kill(options["node"])
        self.stdout.write(f"Killed {options['node']}" + (f" (agent pid {pid})." if pid else "."))
        return 0

    def _start(self, lab: Lab, options: dict[str, Any]) -> int:
        node = lab.start(options["node"], no_daemons=options["no_daemons"])
        self.stdout.write(f"Started {node.name} on {node.key} (pid {node.pid}).")
        return 0

    def _pause(self, lab: Lab, options: dict[str, Any]) -> int:
        pids = lab.pause(options["node"])
        self.stdout.write(f"Paused {options['node']} ({len(pids)} processes stopped).")
        return 0

    def _resume(self, lab: Lab, options: dict[str, Any]) -> int:
        pids = lab.resume(options["node"])
        self.stdout.write(f"Resumed {options['node']} ({len(pids)} processes continued).")
        return 0

    def _partition(self, lab: Lab, options: dict[str, Any]) -> int:
        groups = lab.partition(parse_groups(options["groups"]))
        self.stdout.write(f"Partitioned: {' / '.join(', '.join(g) for g in groups)}")
        return 0

    def _heal(self, lab: Lab, options: dict[str, Any]) -> int:
        self.stdout.write("Healed." if lab.heal() else "No partition.")
        return 0

    def _exec(self, lab: Lab, options: dict[str, Any]) -> int:
        command = list(options["command"]) + self.exec_tail
        sys.stdout.flush()
        return lab.exec(options["node"], command)


def status_table(statuses: list[NodeStatus]) -> str:
    rows = [("Node", "Address", "Pid", "Agent", "Config version", "Hash")]
    for s in statuses:
        agent = "paused" if s.paused else "answering" if s.answering else ("silent" if s.running else "stopped")
        version = str(s.config_version) if s.config_version is not None else "-"
        digest = (s.config_hash or "-")[:16]
        rows.append((s.node.name, s.node.key, str(s.node.pid or "-"), agent, version, digest))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def cman_view(status: NodeStatus) -> str:
    """One line: the node's view as its cman reports it (generation, members, quorum, fencing)."""
    if status.paused:
        return "paused"
    cman = status.cman
    if cman is None:
        return f"cman: {status.cman_problem or 'not running'}"
    names = {n.get("nodeid"): n.get("name") for n in cman.get("nodes", []) if isinstance(n, Mapping)}
    members = " ".join(str(names.get(m, m)) for m in cman.get("members", []))
    quorum = cman.get("quorum") or {}
    parts = [
        f"generation {cman.get('generation', '-')}",
        f"{cman.get('membership_state', '?')}",
        f"members {members or '-'}",
        "quorate" if quorum.get("quorate") else "Activity blocked",
    ]
    fencing = cman.get("fencing") or {}
    if fencing:
        states = []
        for victim, info in sorted(fencing.items()):
            info = info if isinstance(info, Mapping) else {}
            message = f" ({info['message']})" if info.get("message") else ""
            states.append(f"{victim} {info.get('state', '?')}{message}")
        parts.append("fencing " + "; ".join(states))
    return ", ".join(parts)
