"""The acting half of a node's rgmanager: it runs the resource agents for the actions the coordinator hands this
node, checks the status of the services it runs, and remembers what it runs (its *local truth*, which a new
coordinator reads to rebuild the service table).

Every service has a lock: two actions on one service never overlap on a node. The agents themselves are the
step-2 ones (`rgmanager.runner`, `rgmanager.agents`): values reach programs as argv or environment only, and every
program inherits this daemon's environment (CLUSTER_ROOT included, so the lab's fence_lab reaches services too).
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cluster_conf.document import atomic_write
from rgmanager.agents import agent_for
from rgmanager.restree import ResourceNode, ResourceTrees, build_trees, non_critical_subtrees
from rgmanager.runner import make_agent, run_agent, run_service

LOCAL_FILE = Path("var/lib/cluster/rgmanager/local.json")
RUNNING, PARTIAL = "started", "partial"


@dataclass(slots=True)
class Check:
    """When each (resource, depth) status check last ran, per service."""

    last: dict[tuple[str, int], float] = field(default_factory=dict)
    failures: int = 0


def status_plan(node: ResourceNode, poll: float) -> list[tuple[int, float]]:
    """(depth, interval) of a resource's status checks: its <action name="status|monitor" depth= interval=>
    children, else depth 0 every `poll` seconds (<rm status_poll_interval>)."""
    plans: list[tuple[int, float]] = []
    for action in node.actions:
        if action.get("name") not in ("status", "monitor"):
            continue
        try:
            depth = int(action.get("depth", "0")) if action.get("depth") not in (None, "*") else 0
            interval = float(str(action.get("interval", poll)).rstrip("s") or poll)
        except ValueError:
            continue
        plans.append((depth, max(interval, 1.0)))
    return plans or [(0, poll)]


class LocalServices:
    """This node's services: what it runs, and the agents that start, stop and check them."""

    def __init__(self, root: Path, node: str, *, log: Callable[[str], None], poll: float = 10.0) -> None:
        self.root = root
        self.node = node
        self.log = log
        self.poll = poll
        self.conf: Any = None
        self.trees: ResourceTrees | None = None
        self.locks: dict[str, threading.Lock] = {}
        self.guard = threading.Lock()
        self.running: dict[str, dict[str, Any]] = self._load()
        self.checks: dict[str, Check] = {}
        self.reported: set[str] = set()  # services whose status failure was reported and not acted on yet

    # -- configuration and local truth ----------------------------------------------------------------------
    def set_config(self, conf: Any) -> None:
        trees = build_trees(conf)
        for warning in trees.warnings:
            self.log(warning)
        with self.guard:
            self.conf, self.trees = conf, trees

    def tree(self, service: str) -> ResourceNode | None:
        return self.trees.tree(service) if self.trees is not None else None

    def services(self) -> list[str]:
        return [f"{t.type}:{t.primary}" for t in self.trees.trees] if self.trees is not None else []

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads((self.root / LOCAL_FILE).read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def _save(self) -> None:
        path = self.root / LOCAL_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with self.guard:
            data = json.dumps(self.running, sort_keys=True).encode()
        atomic_write(path, data, keep_old=False)

    def _mark(self, service: str, state: str | None) -> None:
        self.reported.discard(service)
        with self.guard:
            if state is None:
                self.running.pop(service, None)
                self.checks.pop(service, None)
            else:
                self.running[service] = {"state": state, "since": time.time()}
        self._save()

    def truth(self) -> dict[str, dict[str, Any]]:
        """What this node runs now (the coordinator's rebuild reads it)."""
        with self.guard:
            return {k: dict(v) for k, v in self.running.items()}

    def lock(self, service: str) -> threading.Lock:
        with self.guard:
            return self.locks.setdefault(service, threading.Lock())

    # -- acting ----------------------------------------------------------------------------------------------
    def _run(self, tree: ResourceNode, op: str, service: str, *, start=None, stop=None) -> int:
        lines: list[str] = []

        def log(line: str) -> None:
            lines.append(line)

        result = run_service(self.conf, tree, op, log=log, start_sequence=start, stop_sequence=stop,
                             agent_factory=agent_for)
        for line in lines:
            if "[" in line and ("failed" in line or "error" in line.lower() or result):
                self.log(f"{service}: {line}")
        return result

    def start(self, service: str) -> dict[str, Any]:
        tree = self.tree(service)
        if tree is None:
            return {"ok": False, "message": f"{service} is not in this node's configuration"}
        with self.lock(service):
            self._mark(service, "starting")
            if self._run(tree, "start", service) == 0:
                self._mark(service, RUNNING)
                self.log(f"Service {service} started")
                return {"ok": True}
            self.log(f"#68: Failed to start {service}; return value: 1")
            # Leave nothing half-started: stop (recovery) before reporting the failure.
            stopped = self._run(tree, "stop", service) == 0
            self._mark(service, None if stopped else "failed")
            return {"ok": False, "stop_ok": stopped, "message": f"failed to start {service}"}

    def stop(self, service: str, *, reason: str = "stop") -> dict[str, Any]:
        tree = self.tree(service)
        if tree is None:
            self._mark(service, None)
            return {"ok": True, "message": f"{service} is not configured here any more"}
        with self.lock(service):
            self._mark(service, "stopping")
            if self._run(tree, "stop", service) == 0:
                self._mark(service, None)
                self.log(f"Service {service} is stopped ({reason})")
                return {"ok": True}
            self._mark(service, "failed")
            self.log(f"#12: RG {service} failed to stop; intervention required")
            return {"ok": False, "message": f"{service} failed to stop"}

    def subtree(self, service: str, resource: str, op: str) -> dict[str, Any]:
        """Inline recovery (stop then start) or a stop (non-critical: partial) of the subtree `resource`."""
        tree = self.tree(service)
        node = next((n for n in tree.walk() if n.id == resource), None) if tree is not None else None
        if node is None:
            return {"ok": False, "message": f"{resource} is not in {service}"}
        with self.lock(service):
            if op == "recover":
                self.log(f"Some independent resources in {service} failed; Attempting inline recovery")
                ok = self._run(node, "stop", service) == 0 and self._run(node, "start", service) == 0
                if ok:
                    self.log(f"Inline recovery of {service} complete")
                return {"ok": ok}
            ok = self._run(node, "stop", service) == 0
            if ok:
                self._mark(service, PARTIAL)
                self.log("Note: Some non-critical resources were stopped during recovery.")
                self.log(f"Run 'clusvcadm -c {service}' to restore them to operation.")
            return {"ok": ok}

    def convalesce(self, service: str) -> dict[str, Any]:
        tree = self.tree(service)
        if tree is None:
            return {"ok": False, "message": f"{service} is not configured"}
        with self.lock(service):
            ok = all(self._run(n, "start", service) == 0 for n in non_critical_subtrees(tree))
            if ok:
                self._mark(service, RUNNING)
            return {"ok": ok}

    def reconfigure(self, service: str, stop_ids: list[str], start_ids: list[str]) -> dict[str, Any]:
        """A new configuration inside a running service: stop the changed resources, start them again (the
        engine's delta said which), in the §2.8 orders."""
        tree = self.tree(service)
        if tree is None:
            return {"ok": False, "message": f"{service} is not configured"}
        stops, starts = set(stop_ids), set(start_ids)

        def only(ids: set[str], sequence):
            return lambda root: [n for n in sequence(root) if n.id in ids]

        from rgmanager.restree import start_sequence, stop_sequence

        with self.lock(service):
            ok = True
            if stops:
                ok = self._run(tree, "stop", service, start=start_sequence, stop=only(stops, stop_sequence)) == 0
            if ok and starts:
                ok = self._run(tree, "start", service, start=only(starts, start_sequence), stop=stop_sequence) == 0
            self.log(f"Reconfiguring {service}: stopped {sorted(stops)}, started {sorted(starts)}: "
                     f"{'done' if ok else 'failed'}")
            return {"ok": ok}

    def emergency_stop_all(self, why: str) -> list[str]:
        """Stop every service this node runs, without asking anyone (quorum lost, cman gone): return those
        whose stop failed."""
        failed = []
        for service in list(self.truth()):
            if not self.stop(service, reason=why)["ok"]:
                failed.append(service)
        return failed

    def initialize(self) -> None:
        """At start-up every configured service is stopped here first ("Initializing Services"), so nothing a
        previous life of this daemon started keeps running unknown."""
        self.log("Initializing Services")

        def stop(service: str) -> None:
            tree = self.tree(service)
            if tree is not None:
                with self.lock(service):
                    self._run(tree, "stop", service)

        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="rg-init") as pool:
            list(pool.map(stop, self.services()))
        with self.guard:
            self.running.clear()
        self._save()
        self.log("Services Initialized")

    # -- status checks ---------------------------------------------------------------------------------------
    def check_due(self, now: float, frozen: set[str]) -> list[dict[str, Any]]:
        """Run the status checks that are due on the services this node runs (not frozen ones): the deepest due
        depth per resource. Return one failure report per failed service (the first failing resource)."""
        failures = []
        for service, info in self.truth().items():
            if info.get("state") not in (RUNNING, PARTIAL) or service in frozen or service in self.reported:
                continue  # a failure already reported is not reported again until the service is acted on
            tree = self.tree(service)
            if tree is None:
                continue
            lock = self.lock(service)
            if not lock.acquire(blocking=False):
                continue  # an action is running on it: check later
            try:
                failed = self._check(service, tree, now)
            finally:
                lock.release()
            if failed is not None:
                self.reported.add(service)
                failures.append({"service": service, "resource": failed})
        return failures

    def _check(self, service: str, tree: ResourceNode, now: float) -> str | None:
        check = self.checks.setdefault(service, Check())
        from rgmanager.restree import start_sequence

        skip: set[str] = set()
        if self.truth().get(service, {}).get("state") == PARTIAL:
            for sub in non_critical_subtrees(tree):
                skip |= {n.id for n in sub.walk()}
        for node in start_sequence(tree):
            if node.id in skip:
                continue
            due = [(depth, interval) for depth, interval in status_plan(node, self.poll)
                   if now - check.last.get((node.id, depth), 0.0) >= interval]
            if not due:
                continue
            depth = max(d for d, _ in due)
            for d, _ in due:
                check.last[(node.id, d)] = now
            result = run_agent(make_agent(node, agent_for, {}, lambda _line: None, depth), "status", depth)
            if not result.ok:
                self.log(f"status of {node.id} in {service} failed: {result.message or result.rc}")
                return node.id
        return None
