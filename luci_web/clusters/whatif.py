"""The What-if tab's adapter: the cluster as luci last read it (the configuration and Cluster.status) turned into the
engine's inputs, then the engine's own planner run on "these nodes fail, those return". Read-only and pure: it
never talks to the cluster.

The inputs are built as rg_test's STATE.json (rgmanager.cli.whatif.parse_state checks them), the events are the
planner's NodeDown / NodeUp (a failed node is taken as fenced: only then does rgmanager move its services), and
quorum after the change is cman's arithmetic (cluster_conf.quorum.compute): when the remaining members lose quorum
the planner gets QuorumLost, as rgmanager would. Failures are applied one at a time first, in membership order,
then returns; quorum is re-checked after each.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from cluster_conf import ClusterConf
from cluster_conf.model import ClusterView, view
from cluster_conf.quorum import compute
from rgmanager.cli.whatif import BadInput, parse_state, placement_rows
from rgmanager.placement import catalog_of
from rgmanager.planner import Plan, plan
from rgmanager.snapshot import Event, NodeDown, NodeUp, QuorumFormed, QuorumLost, describe_event
from rgmanager.states import ACTIVE_STATES, Flag, State

__all__ = ["BadInput", "Outcome", "nodes_of", "simulate", "state_of"]


@dataclass
class Outcome:
    """One what-if answer: per service where it is and where it would be, and the engine's plans step by step."""

    rows: list[dict[str, Any]] = field(default_factory=list)  # service, state, owner, new_state, new_owner, reason
    steps: list[dict[str, Any]] = field(default_factory=list)  # event, actions [text], result, pending [text]
    quorate_after: bool = True
    online_after: list[str] = field(default_factory=list)


def nodes_of(config: ClusterView, status: dict[str, Any]) -> list[dict[str, Any]]:
    """The configured nodes with whether they are members now (the form's rows: fail for members, return for
    the others)."""
    online = _online(config, status)
    return [{"name": n.name, "online": n.name in online} for n in config.nodes]


def _online(config: ClusterView, status: dict[str, Any]) -> set[str]:
    configured = {n.name for n in config.nodes}
    return {m["name"] for m in status.get("members") or [] if not m.get("qdisk") and m.get("online")
            and m.get("name") in configured}


def state_of(config: ClusterView, status: dict[str, Any]) -> dict[str, Any]:
    """Cluster.status as rg_test's STATE.json: members online per cman's view (offline ones clean: what-if asks
    about the cluster once fencing is done), service records from clustat's rows. Rows naming a service or an
    owner the configuration does not have are left out (the status is older than the configuration)."""
    online = _online(config, status)
    nodes = {n.name: {"online": n.name in online, "clean": True} for n in config.nodes}
    known = {n.name for n in config.nodes}
    catalog = catalog_of(config)
    services: dict[str, Any] = {}
    for row in status.get("services") or []:
        name = str(row.get("name") or "")
        if catalog.find(name) is None:
            continue
        try:
            state = State.parse(row.get("state") if isinstance(row.get("state"), int) else row.get("state_str"))
        except (ValueError, TypeError):
            continue
        owner = row.get("owner") if row.get("owner") in known else None
        if state in ACTIVE_STATES and owner is None:
            continue
        last_owner = row.get("last_owner") if row.get("last_owner") in known else None
        entry: dict[str, Any] = {"state": state.label, "last_transition": float(row.get("last_transition") or 0)}
        if owner and state in ACTIVE_STATES:
            entry["owner"] = owner
        if last_owner:
            entry["last_owner"] = last_owner
        flags = Flag(int(row.get("flags") or 0) & int(Flag.FROZEN | Flag.PARTIAL))
        if flags:
            entry["flags"] = list(flags.words)
        services[name] = entry
    quorate = (status.get("quorum") or {}).get("quorate")
    return {"now": float(status.get("at") or 1.0), "quorate": bool(quorate), "nodes": nodes, "services": services}


def simulate(conf: ClusterConf, status: dict[str, Any], fail: Iterable[str] = (), back: Iterable[str] = ()
             ) -> Outcome:
    """Where every service would go if the nodes in `fail` failed (and were fenced) and those in `back` returned.
    BadInput (one line) for a node the configuration does not have, a node asked to fail that is not a member or
    to return that is one, or a configuration the engine refuses."""
    config = view(conf)
    if catalog_of(config).cycle:
        raise BadInput(f"services depend on each other in a cycle: {' -> '.join(catalog_of(config).cycle)}")
    snapshot = parse_state(state_of(config, status), config, "the cluster's status")
    membership, table, now = snapshot.membership, snapshot.table, max(snapshot.now, 1.0)
    fail, back = list(dict.fromkeys(fail)), list(dict.fromkeys(back))
    for name in fail + back:
        if membership.node(name) is None:
            raise BadInput(f"no node {name!r} in the configuration")
    for name in fail:
        if not membership.is_online(name):
            raise BadInput(f"{name} is not a member now: it cannot fail")
    for name in back:
        if membership.is_online(name):
            raise BadInput(f"{name} is a member already: it cannot return")
    order = [n.name for n in membership.nodes]
    events: list[Event] = [NodeDown(n, now) for n in order if n in fail] + [NodeUp(n, now) for n in order if n in back]
    qdisk = _qdisk_alive(status)
    before = table
    result: Plan | None = None
    steps = []
    for event in events:
        result = plan(config, membership, table, event)
        membership, table = result.membership, result.table
        steps.append(_step(event, result))
        quorate = compute(config, membership.online, qdisk_alive=qdisk).quorate
        if quorate != membership.quorate:  # cman's verdict on the members left: rgmanager hears of it next
            change: Event = QuorumFormed(now) if quorate else QuorumLost(now)
            result = plan(config, membership, table, change)
            membership, table = result.membership, result.table
            steps.append(_step(change, result))
    if result is None and membership.quorate:  # nothing chosen: the engine's evaluation of the cluster as it is
        result = plan(config, membership, table, QuorumFormed(now))
        table = result.table
        steps.append(_step(result.event, result))
    rows = []
    placement = {r["service"]: r for r in placement_rows(config, result)} if result is not None else {}
    for rule in catalog_of(config).services:
        old, new = before.record(rule.id), table.record(rule.id)
        placed = placement.get(rule.id, {})
        rows.append({
            "service": rule.id, "state": old.state.label, "owner": old.owner if old.active else None,
            "new_state": new.state.label, "new_owner": new.owner if new.active else None,
            "moves": (old.owner if old.active else None) != (new.owner if new.active else None),
            "reason": placed.get("reason", ""), "code": placed.get("code"),
        })
    return Outcome(rows, steps, membership.quorate, list(membership.online))


def _qdisk_alive(status: dict[str, Any]) -> bool:
    return any(m.get("qdisk") and m.get("online") for m in status.get("members") or [])


def _step(event: Event, result: Plan) -> dict[str, Any]:
    return {
        "event": describe_event(event),
        "actions": [a.describe() for a in result.actions],
        "result": f"{int(result.result)} {result.result.text}" if int(result.result) != 0 else "",
        "message": result.message,
        "pending": [f"{p.service}: {p.reason} [{int(p.code)} {p.code.text}]" for p in result.pending],
    }
