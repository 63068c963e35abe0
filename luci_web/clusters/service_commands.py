"""Service commands (clusvcadm's, through ricci): start, restart, disable, relocate, migrate, freeze, unfreeze, ...
of one service group, run synchronously (the node bounds a request at 28 s) and audited with their outcome.

The request goes to a member that answers, the RG-Master first (it decides anyway, so no forwarding), then the
service's owner, then the other members rgmanager runs on (per the last status the watcher stored on the
Cluster). A node that cannot be reached is skipped; any other answer, a refusal included, is the outcome: a
request that reached a node is never sent again elsewhere (it may still be running there).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from luci_web.audit.log import record
from luci_web.clusters import gateway
from luci_web.clusters.models import Cluster, Node
from ricci_agent.protocol import UNREACHABLE, RicciError

COMMANDS = ("enable", "disable", "relocate", "restart", "stop", "freeze", "unfreeze", "migrate", "convalesce")
TAKES_TARGET = frozenset({"enable", "relocate", "migrate"})
SUCCESS = 0
ALREADY_RUNNING = -10  # clusvcadm exits 0 on it too (rhcs-facts §2.11)
RAN_AND_FAILED = frozenset({-1, -2, -17})  # Failure, Aborted, running on original owner: audited "failed", the
# other codes are refusals (frozen, quorum, dependency, ...) audited "refused"

# what the result line says after a success, by command (relocate/enable/restart/migrate name the owner)
_DONE = {"disable": "is disabled", "stop": "is stopped", "freeze": "is frozen", "unfreeze": "is unfrozen",
         "convalesce": "has its non-critical resources started again"}
_VERB = {"enable": "Start", "disable": "Disable", "relocate": "Relocate", "restart": "Restart", "stop": "Stop",
         "freeze": "Freeze", "unfreeze": "Unfreeze", "migrate": "Migrate", "convalesce": "Convalesce"}


class BadCommand(ValueError):
    """The request itself is wrong (unknown command, migrate of a non-VM, missing target): one line."""


@dataclass(frozen=True)
class ServiceResult:
    ok: bool
    command: str
    service: str
    target: str | None
    code: int | None  # the RG code (0 success), None when no node answered
    text: str  # the RG code's string, or the transport error
    owner: str | None  # where the service ended, as rgmanager says
    node: str | None  # the node that carried the request
    message: str  # the line shown to the user
    warning: bool = False  # a success that ended elsewhere than the target asked for


def full_name(service: str) -> str:
    """`web` -> `service:web`; `vm:guest` and `service:web` unchanged (clusvcadm's rule)."""
    return service if ":" in service else f"service:{service}"


def candidates(cluster: Cluster, service: str) -> list[Node]:
    """The nodes to ask, best first: RG-Master, owner, other members running rgmanager, then every other node."""
    status = cluster.status or {}
    members = {m.get("name"): m for m in status.get("members") or []}
    owner = next((s.get("owner") for s in status.get("services") or [] if s.get("name") == service), None)

    def rank(node: Node) -> int:
        m = members.get(node.name) or {}
        usable = m.get("state") == "online" and m.get("rgmanager")
        if usable:
            return 0 if m.get("master") else 1 if node.name == owner else 2
        return 3 if m.get("state") != "unknown" else 4

    nodes = list(cluster.nodes.all())
    return sorted(nodes, key=rank)  # sorted is stable: luci's node order within a rank


def result_line(command: str, service: str, target: str | None, code: int, text: str, owner: str | None,
                detail: str) -> tuple[bool, str, bool]:
    """(ok, the line shown, warning) for rgmanager's reply."""
    if code == SUCCESS:
        if command in _DONE:
            return True, f"{service} {_DONE[command]}", False
        where = owner or target
        if not where:
            return True, f"{_VERB[command]} {service}: {text}", False
        elsewhere = bool(target) and owner is not None and owner != target
        return True, f"{'Warning: ' if elsewhere else ''}{service} is now running on {where}", elsewhere
    if code == ALREADY_RUNNING:
        return True, f"{service}: {text}" + (f" on {owner}" if owner else ""), False
    to = f" to {target}" if target and command in ("relocate", "migrate") else f" on {target}" if target else ""
    return False, f"{_VERB[command]} {service}{to}: {text}" + (f" ({detail})" if detail else ""), False


def run(cluster: Cluster, user: Any, service: str, command: str, target: str | None = None) -> ServiceResult:
    """Carry out `command` on `service` (optionally towards the node `target`) and audit it once."""
    if command not in COMMANDS:
        raise BadCommand(f"unknown service command {command!r}")
    service = full_name(service)
    target = target or None
    if command == "migrate" and not service.startswith("vm:"):
        raise BadCommand(f"only virtual machines migrate; {service} is not a vm")
    if command == "migrate" and not target:
        raise BadCommand("migration requires a target cluster member")
    args: dict[str, Any] = {"service": service}
    if target:
        args["target"] = target
    detail: dict[str, Any] = {"command": command, "target": target}
    unreachable: list[str] = []
    for node in candidates(cluster, service):
        try:
            reply = gateway.call(node, f"service.{command}", args)
        except RicciError as exc:
            if exc.code == UNREACHABLE:  # nothing was sent: the next node may carry it
                unreachable.append(f"{node.name}: {exc.message}")
                continue
            message = f"{_VERB[command]} {service}: {node.name}: {exc.message}"
            record(user, f"service.{command}", cluster=cluster, target=service, detail={**detail, "node": node.name},
                   result="failed", message=message)
            return ServiceResult(False, command, service, target, None, exc.code, None, node.name, message)
        code = int(reply.get("code", -1))
        text = str(reply.get("text") or "")
        owner = reply.get("owner") or None
        ok, line, warning = result_line(command, service, target, code, text, owner, str(reply.get("message") or ""))
        record(user, f"service.{command}", cluster=cluster, target=service,
               detail={**detail, "node": node.name, "code": code, "owner": owner},
               result="ok" if ok else "failed" if code in RAN_AND_FAILED else "refused", message=line)
        return ServiceResult(ok, command, service, target, code, text, owner, node.name, line, warning)
    message = f"{_VERB[command]} {service}: no node answered" + (f" ({unreachable[0]})" if unreachable else "")
    record(user, f"service.{command}", cluster=cluster, target=service, detail=detail, result="failed",
           message=message)
    return ServiceResult(False, command, service, target, None, "unreachable", None, None, message)
