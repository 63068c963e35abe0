"""One reading of a cluster's status through ricci, in the shape every page, the watcher and the API share.

    {"cluster": {name, id, generation}, "quorum": {quorate, groupmember}, "rgmanager": running|not_running|...,
     "members": [clustat's member rows + "state": online|offline|unknown, "config_version", "agent": bool],
     "services": [clustat's service rows], "reported_by": node name or None, "at": epoch seconds,
     "config_version": the highest accepted version, "drift": bool, "unreachable": [names], "message": str}

The members' and services' rows are `clustat --json`'s (rgmanager.cli.clustat.as_json), read from the first
node that answers (a member of a quorate partition preferred). Every node is asked `hello` in parallel with a
1.5 s bound, so a hung node shows as "unknown" within 2 s and never blocks the reading.
"""
from __future__ import annotations

import time
from typing import Any

from luci_web.clusters import gateway
from rgmanager.cli.clustat import as_json, snapshot_from
from ricci_agent.protocol import RicciError

UNKNOWN, ONLINE, OFFLINE = "unknown", "online", "offline"


def read_status(nodes: list[Any], cluster_name: str = "") -> dict[str, Any]:
    """Ask `nodes` (Node rows) and return the status dict described in the module docstring."""
    started = time.time()
    hellos = gateway.fan_out(nodes, "hello", timeout=gateway.STATUS_TIMEOUT) if nodes else {}
    answering = [n for n in nodes if hellos[n.name].ok]
    versions = {n.name: (hellos[n.name].result or {}).get("config_version") for n in answering}
    hashes = {(hellos[n.name].result or {}).get("config_hash") for n in answering}
    local_edits = [n.name for n in answering if (hellos[n.name].result or {}).get("local_edit")]
    reading: dict[str, Any] | None = None
    reporter = None
    message = ""
    for node in answering:  # the first node whose cmand answers reports; a quorate one is preferred below
        try:
            cman = gateway.call(node, "cman.status", timeout=gateway.STATUS_TIMEOUT)
        except RicciError as exc:
            message = exc.message
            continue
        if not cman.get("running"):
            message = str(cman.get("message") or "cman is not running")
            continue
        try:
            rg = gateway.call(node, "rgmanager.status", timeout=gateway.STATUS_TIMEOUT)
        except RicciError:
            rg = {"running": False}
        rg_state = "running" if rg.get("running") else "not_running"
        snap = as_json(snapshot_from(cman, rg if rg.get("running") else None, rg_state))
        reading, reporter = snap, node.name
        if snap["quorum"]["quorate"]:
            break
    by_name = {n.name: n for n in nodes}
    members = []
    seen = set()
    for row in (reading or {}).get("members") or []:
        row = dict(row)
        name = row["name"]
        seen.add(name)
        if name in by_name:
            answered = hellos[name].ok
            row["agent"] = answered
            row["state"] = (ONLINE if row["online"] else OFFLINE) if answered else UNKNOWN
            row["config_version"] = versions.get(name)
            row["message"] = "" if answered else (hellos[name].message or "no answer")
        else:
            row.update(agent=False, state=ONLINE if row["online"] else OFFLINE, config_version=None, message="")
        members.append(row)
    for node in nodes:  # nodes luci knows that no member list named (no cmand answered anywhere)
        if node.name not in seen:
            answered = hellos[node.name].ok
            members.append({"name": node.name, "nodeid": None, "online": False, "local": False, "rgmanager": False,
                            "master": False, "estranged": False, "qdisk": False, "agent": answered,
                            "state": OFFLINE if answered else UNKNOWN, "config_version": versions.get(node.name),
                            "message": "" if answered else (hellos[node.name].message or "no answer")})
    known_versions = [v for v in versions.values() if isinstance(v, int)]
    return {
        "cluster": (reading or {}).get("cluster") or {"name": cluster_name, "id": None, "generation": None},
        "quorum": (reading or {}).get("quorum") or {"quorate": None, "groupmember": False},
        "rgmanager": (reading or {}).get("rgmanager") or UNKNOWN,
        "members": members,
        "services": (reading or {}).get("services") or [],
        "reported_by": reporter,
        "at": round(started, 3),
        "config_version": max(known_versions) if known_versions else None,
        "drift": len(hashes) > 1 or bool(local_edits),
        "edited_locally": local_edits,
        "unreachable": [n.name for n in nodes if not hellos[n.name].ok],
        "message": "" if reading is not None else (message or "no node answered"),
    }


def summary(status: dict[str, Any]) -> dict[str, Any]:
    """The overview row's figures: quorum, nodes online/total, services started/failed."""
    members = [m for m in status.get("members") or [] if not m.get("qdisk")]
    services = status.get("services") or []
    return {
        "quorate": (status.get("quorum") or {}).get("quorate"),
        "online": sum(1 for m in members if m.get("state") == ONLINE),
        "unknown": sum(1 for m in members if m.get("state") == UNKNOWN),
        "total": len(members),
        "started": sum(1 for s in services if s.get("state_str") == "started"),
        "failed": sum(1 for s in services if s.get("state_str") in ("failed", "recoverable")),
        "services": len(services),
    }
