"""Every node's fence history (ricci `fence.history`: what `cman_tool fence --history` prints), merged across the
nodes that recorded it; shared by the console's Events tab and the REST API's fence-history endpoint."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from luci_web.audit.log import mask_text
from luci_web.clusters import gateway
from luci_web.clusters.models import Cluster

LIMIT = 200  # entries asked of each node (ricci takes 1..1000)


def fence_history(cluster: Cluster, since: float, until: float | None = None, node: str | None = None,
                  limit: int = LIMIT) -> tuple[list[dict[str, Any]], list[str]]:
    """Every node's fence history from `since` to `until` (epoch seconds; None: now), only of the victim `node`
    when given, merged (an entry every member recorded shows once, with the nodes that recorded it), newest first;
    and the nodes that did not answer. Each entry: when (a datetime), time, victim, action, status, actor, how,
    msg (secrets masked), recorded_on."""
    nodes = list(cluster.nodes.all())
    args: dict[str, Any] = {"limit": limit} | ({"node": node} if node is not None else {})
    answers = gateway.fan_out(nodes, "fence.history", args, timeout=gateway.STATUS_TIMEOUT * 2) if nodes else {}
    merged: dict[tuple, dict[str, Any]] = {}
    silent = []
    for name, answer in answers.items():
        if not answer.ok:
            silent.append(name)
            continue
        for entry in (answer.result or {}).get("entries") or []:
            when = entry.get("time")
            if not isinstance(when, (int, float)) or when < since or (until is not None and when > until):
                continue
            if node is not None and entry.get("node") != node:
                continue
            key = (round(float(when), 1), entry.get("node"), entry.get("action"), entry.get("status"))
            row = merged.setdefault(key, {
                "when": when_of(when), "time": float(when), "victim": str(entry.get("node") or ""),
                "action": str(entry.get("action") or ""), "status": str(entry.get("status") or ""),
                "actor": str(entry.get("actor") or ""),
                "how": " ".join(f"{k} {entry[k]}" for k in ("method", "device", "agent") if entry.get(k)),
                "msg": mask_text(str(entry.get("message") or "")), "recorded_on": []})
            row["recorded_on"].append(name)
    lines = sorted(merged.values(), key=lambda e: e["time"], reverse=True)
    return lines, sorted(silent)


def when_of(value: Any) -> datetime | None:
    """Epoch seconds as an aware datetime; None for nothing or anything unreadable."""
    try:
        return datetime.fromtimestamp(float(value), tz=UTC) if value else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None
