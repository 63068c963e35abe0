"""Celery tasks of the Nodes tab: join, leave, reboot and fence nodes (node_cmd), and add or delete a node
(membership). Each re-checks the requesting user's right (tasks.load: a refusal is audited), is `tasks.guarded` (an
unexpected error finishes its operation as failed and is audited), reports per-node progress through
luci_web.clusters.operations, and writes one audit entry with its result.

Join, leave and reboot run on the node itself (ricci's node.start, node.stop, node.reboot). Fencing is asked of
another node that answers, a member of the quorate partition first (node.fence runs fence_node there): a node
cannot be trusted to fence itself. Several nodes (the whole cluster) join or leave in parallel; each node's
progress is saved as its answer arrives.

The start_* functions are the one way both front ends (the console's Nodes tab, the API) start these tasks: they
make the checks, audit a refusal once and raise it (NodeRefused; configs' ConfigConflict, ConfigRejected,
ConfigUnavailable; registry's FingerprintError), and queue the task; each front end turns a refusal into its own
answer.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from django.db import IntegrityError, transaction

from luci_web.audit.log import record
from luci_web.celery import app
from luci_web.clusters import gateway, operations, registry
from luci_web.clusters.configs import ConfigConflict, ConfigRejected, ConfigUnavailable, prepare
from luci_web.clusters.edits.nodes import add_node_edit, remove_node_edit
from luci_web.clusters.models import Cluster, Node, Operation
from luci_web.clusters.tasks import enqueue, guarded, load
from ricci_agent.protocol import UNKNOWN_FUNCTION, RicciError

# action -> (ricci function, what the node's progress says while it runs, when it is done)
ON_ITSELF: dict[str, tuple[str, str, str]] = {
    "join": ("node.start", "joining", "joined"),
    "leave": ("node.stop", "leaving", "left"),
    "reboot": ("node.reboot", "rebooting", "rebooted"),
}
FENCE = "fence"
NODE_ACTIONS = (*ON_ITSELF, FENCE)
MANY_ACTIONS = ("join", "leave")  # what a selection of nodes (the whole cluster) may do at once
# node.reboot is node.stop then node.start (28 s each at most); fence_node runs every method and device in turn
TIMEOUTS = {"node.reboot": 65.0, "node.fence": 65.0}
PARALLEL = 10  # nodes acted on at once (the original luci authenticated 10 at a time)


def _answer_text(answer: dict[str, Any]) -> str:
    """One line from node.start/stop's {daemons: {name: {ok, message}}} or a fence/reboot answer."""
    daemons = answer.get("daemons") or {}
    said = [f"{name}: {d.get('message')}" for name, d in daemons.items() if d.get("message")]
    return "; ".join(said) or str(answer.get("message") or "")


def _refusal(exc: RicciError, function: str) -> str:
    if exc.code == UNKNOWN_FUNCTION:
        return f"this node's agent has no {function} (update ricci on it)"
    return exc.message


def _on_itself(node: Node, action: str) -> tuple[bool, str]:
    function = ON_ITSELF[action][0]
    try:
        answer = gateway.call(node, function, timeout=TIMEOUTS.get(function))
    except RicciError as exc:
        return False, _refusal(exc, function)
    return True, _answer_text(answer)


def fencers(cluster: Cluster, victim: str) -> list[Node]:
    """The nodes to ask to fence `victim`, best first: online members of the last status (quorate partition as
    read), then every other node luci knows. Never the victim."""
    status = cluster.status or {}
    online = [m["name"] for m in status.get("members") or [] if m.get("state") == "online" and m.get("name") != victim]
    nodes = [n for n in cluster.nodes.all() if n.name != victim]
    rank = {name: i for i, name in enumerate(online)}
    return sorted(nodes, key=lambda n: rank.get(n.name, len(rank)))


def _fence(victim: str, candidates: list[Node]) -> tuple[bool, str]:
    reasons = []
    for fencer in candidates:
        try:
            answer = gateway.call(fencer, "node.fence", {"node": victim}, timeout=TIMEOUTS["node.fence"])
        except RicciError as exc:
            if exc.code in gateway.NO_ANSWER:
                reasons.append(f"{fencer.name}: {exc.message}")
                continue
            return False, f"{fencer.name}: {_refusal(exc, 'node.fence')}"
        text = _answer_text(answer)
        if answer.get("ok") is False:  # fence_node ran and failed: a reply, not an error; no other node retries
            return False, f"{fencer.name} could not fence {victim}" + (f": {text}" if text else "")
        return True, f"fenced by {fencer.name}" + (f": {text}" if text else "")
    return False, "no other node answered" + (f" ({'; '.join(reasons)})" if reasons else "")


def _act(op: Operation, user: Any, action: str, names: list[str]) -> dict[str, Any]:
    """Run `action` on every node in `names` in parallel; each node's progress saved as its answer comes."""
    cluster = op.cluster
    operations.running(op)
    by_name = {n.name: n for n in cluster.nodes.filter(name__in=names)}
    outcomes: dict[str, tuple[bool, str]] = {}
    for name in names:
        if name not in by_name:
            outcomes[name] = (False, "luci does not know this node")
            operations.step(op, name, "failed", outcomes[name][1])
    wanted = [by_name[n] for n in names if n in by_name]
    running_word, done_word = ON_ITSELF[action][1:] if action in ON_ITSELF else ("fencing", "fenced")
    for node in wanted:
        operations.step(op, node.name, running_word)
    with ThreadPoolExecutor(max_workers=max(1, min(PARALLEL, len(wanted)))) as pool:
        # the threads only talk to nodes: what they need from the database is read here first
        futures = {pool.submit(_fence, n.name, fencers(cluster, n.name)) if action == FENCE
                   else pool.submit(_on_itself, n, action): n for n in wanted}
        for future in as_completed(futures):  # the database is written here, in the task's own thread
            node = futures[future]
            ok, message = future.result()
            outcomes[node.name] = (ok, message)
            operations.step(op, node.name, done_word if ok else "failed", message)
    failed = sorted(n for n, (ok, _) in outcomes.items() if not ok)
    target = names[0] if len(names) == 1 else ", ".join(names)
    if failed:
        message = "; ".join(f"{n}: {outcomes[n][1]}" for n in failed)
    else:
        message = f"{action}: {', '.join(names)} {done_word}"
    record(user, f"node.{action}", cluster=cluster, target=target, detail={"nodes": names},
           result="failed" if failed else "ok", message=message)
    operations.finish(op, not failed, message, {"action": action, "failed": failed})
    return {"ok": not failed, "failed": failed}


@app.task(name="luci.node_action")
@guarded(lambda operation_id, action, node_name: f"node.{action}")
def node_action(operation_id: str, action: str, node_name: str) -> dict[str, Any]:
    """Join, leave, reboot or fence one node (node_cmd)."""
    if action not in NODE_ACTIONS:
        raise ValueError(f"unknown node action {action!r}")
    op, user = load(operation_id, "node_cmd", f"node.{action}", target=node_name)
    return _act(op, user, action, [node_name])


@app.task(name="luci.nodes_action")
@guarded(lambda operation_id, action, node_names: f"node.{action}")
def nodes_action(operation_id: str, action: str, node_names: list[str]) -> dict[str, Any]:
    """Join or leave several nodes at once, in parallel (starting or stopping the whole cluster; node_cmd)."""
    if action not in MANY_ACTIONS:
        raise ValueError(f"unknown action on several nodes {action!r}")
    op, user = load(operation_id, "node_cmd", f"node.{action}", target=", ".join(node_names))
    return _act(op, user, action, list(node_names))


# -- membership ----------------------------------------------------------------------------------------------
def _trust_new_node(op: Operation, cluster: Cluster, new: Node) -> tuple[bool, str]:
    """Let the new node's agent and the others' trust each other (node.trust): each authorises the others' client
    keys and pins their host keys. An agent without node.trust is reported, not fatal: the admin then runs
    `ricci authorize` / `ricci trust` by hand."""
    others = [n for n in cluster.nodes.all() if n.pk != new.pk]
    hellos = gateway.fan_out([new, *others], "hello")
    missing = [name for name, r in hellos.items() if not (r.ok and (r.result or {}).get("client_key"))]
    if missing:
        why = "; ".join(f"{n}: {hellos[n].message or 'its agent does not tell its client key'}" for n in missing)
        return False, f"keys not exchanged ({why})"
    key_of = {name: r.result["client_key"] for name, r in hellos.items()}
    pins = {n.name: {"host": n.address, "port": int(n.port), "key": n.host_key} for n in [new, *others]}
    failures = []
    for node in [new, *others]:
        args = ({"authorize": [key_of[o.name] for o in others], "pin": [pins[o.name] for o in others]}
                if node is new else {"authorize": [key_of[new.name]], "pin": [pins[new.name]]})
        operations.step(op, node.name, "trusting")
        try:
            gateway.call(node, "node.trust", args)
        except RicciError as exc:
            operations.step(op, node.name, "failed", _refusal(exc, "node.trust"))
            failures.append(f"{node.name}: {_refusal(exc, 'node.trust')}")
            continue
        operations.step(op, node.name, "trusted")
    return not failures, "; ".join(failures) or "keys exchanged"


def _push_now(cluster: Cluster, user: Any, xml: str, *, action: str, target: str, reason: str,
              detail: dict[str, Any]) -> tuple[Operation, dict[str, Any]]:
    """Push the configuration and wait for its outcome: the push_config task function run inline, as its own
    operation (linked from this one), so luci's rows change only once the cluster took the configuration."""
    from luci_web.clusters.tasks import push_config

    pushed = operations.start(user, "push_config", cluster, [n.name for n in cluster.nodes.all()])
    outcome = push_config(str(pushed.id), xml, {"action": action, "target": target, "reason": reason,
                                                "detail": detail, "right": "membership"})
    pushed.refresh_from_db()
    return pushed, outcome


@app.task(name="luci.node_add")
@guarded("node.add")
def node_add(operation_id: str, node_name: str, xml: str, meta: dict[str, Any]) -> dict[str, Any]:
    """After the view checked the new node's host key (confirmed, re-probed) and prepared the configuration that
    names it: exchange keys between the agents, push the configuration and wait for it, and only when the cluster
    took it save the node in luci (membership). `meta["node"]`: address, port, host_key, fingerprint."""
    op, user = load(operation_id, "membership", "node.add", target=node_name)
    cluster = op.cluster
    operations.running(op)
    spec = meta.get("node") or {}
    new = Node(cluster=cluster, name=node_name, address=spec.get("address", ""), port=int(spec.get("port") or 0),
               host_key=spec.get("host_key", ""), fingerprint=spec.get("fingerprint", ""))
    detail = {"node": node_name, "address": new.address, "port": new.port}
    if cluster.nodes.filter(name=node_name).exists():
        message = f"luci already knows a node {node_name}; nothing was changed"
        record(user, "node.add", cluster=cluster, target=node_name, detail=detail, result="failed", message=message)
        operations.finish(op, False, message)
        return {"ok": False}
    trusted, trust_message = _trust_new_node(op, cluster, new)
    pushed, outcome = _push_now(cluster, user, xml, action="node.add", target=node_name,
                                reason=meta.get("reason", ""), detail=detail)
    trust_note = "" if trusted else f"; {trust_message}"
    if not outcome.get("ok"):
        message = (f"the configuration naming {node_name} was not pushed ({pushed.message or 'failed'}): the "
                   f"cluster and luci do not have {node_name}" + trust_note)
        record(user, "node.add", cluster=cluster, target=node_name, detail={**detail, "trusted": trusted},
               result="failed", message=message)
        operations.finish(op, False, message, {"push_operation": str(pushed.id), "trusted": trusted})
        return {"ok": False, "push_operation": str(pushed.id)}
    version = outcome.get("version")
    try:
        with transaction.atomic():
            new.save()
    except IntegrityError:
        message = (f"version {version} names {node_name}, but luci meanwhile saved another node of that name: "
                   "check its address and host key on the Nodes tab")
        ok = False
    else:
        message = f"{node_name} added: configuration version {version} pushed (operation {pushed.id})" + trust_note
        ok = True
    record(user, "node.add", cluster=cluster, target=node_name, detail={**detail, "trusted": trusted},
           result="ok" if ok else "failed", message=message)
    operations.finish(op, ok, message, {"push_operation": str(pushed.id), "trusted": trusted, "version": version})
    return {"ok": ok, "push_operation": str(pushed.id)}


@app.task(name="luci.node_delete")
@guarded("node.delete")
def node_delete(operation_id: str, node_name: str, xml: str, meta: dict[str, Any]) -> dict[str, Any]:
    """Stop the node's cluster daemons (node.stop), push the configuration without it and wait for it, and only
    when the cluster took it forget the node in luci (membership). A node that does not answer is removed anyway
    (it may be dead: that is often why it goes); one whose daemons refuse to stop is not."""
    op, user = load(operation_id, "membership", "node.delete", target=node_name)
    cluster = op.cluster
    operations.running(op)
    node = cluster.nodes.filter(name=node_name).first()
    stopped = ""
    if node is not None:
        operations.step(op, node_name, "leaving")
        try:
            answer = gateway.call(node, "node.stop")
            operations.step(op, node_name, "left", _answer_text(answer))
            stopped = "it left the cluster"
        except RicciError as exc:
            if exc.code not in gateway.NO_ANSWER:
                message = f"{node_name} did not leave the cluster: {exc.message}; nothing was removed"
                operations.step(op, node_name, "failed", exc.message)
                record(user, "node.delete", cluster=cluster, target=node_name, result="failed", message=message)
                operations.finish(op, False, message)
                return {"ok": False}
            operations.step(op, node_name, "unreachable", exc.message)
            stopped = "it did not answer"
    pushed, outcome = _push_now(cluster, user, xml, action="node.delete", target=node_name,
                                reason=meta.get("reason", ""), detail={"node": node_name})
    if not outcome.get("ok"):
        message = (f"the configuration without {node_name} was not pushed ({pushed.message or 'failed'}): the "
                   f"cluster still names {node_name} and luci keeps it" + (f" ({stopped})" if stopped else "")
                   + "; start it again from the Nodes tab or delete it again")
        record(user, "node.delete", cluster=cluster, target=node_name, result="failed", message=message)
        operations.finish(op, False, message, {"push_operation": str(pushed.id)})
        return {"ok": False, "push_operation": str(pushed.id)}
    cluster.nodes.filter(name=node_name).delete()
    message = f"{node_name} removed: configuration version {outcome.get('version')} pushed (operation {pushed.id})"
    record(user, "node.delete", cluster=cluster, target=node_name, result="ok", message=message)
    operations.finish(op, True, message, {"push_operation": str(pushed.id), "version": outcome.get("version")})
    return {"ok": True, "push_operation": str(pushed.id)}


# -- starting: the checks made before a task is queued, shared by the console and the API -------------------
class NodeRefused(Exception):
    """A node request refused before anything started: one line, and `code` for the API (UNKNOWN_ACTION,
    NODE_NOT_FOUND, NODE_EXISTS, NODE_ACTION_REFUSED, NODE_UNREACHABLE); `extra`: the API problem's members."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.extra = extra


def _refuse(user: Any, action: str, cluster: Cluster, target: str, refusal: Exception,
            detail: dict[str, Any] | None = None) -> Exception:
    record(user, action, cluster=cluster, target=target, detail=detail, result="refused", message=str(refusal))
    return refusal


def action_refusal(action: str, names: list[str], known: list[str], cluster_name: str) -> NodeRefused | None:
    """None when `action` (join, leave, reboot, fence) may be asked of the nodes `names`, luci knowing `known` in
    the cluster `cluster_name`; otherwise why not."""
    if action not in NODE_ACTIONS:
        return NodeRefused("UNKNOWN_ACTION", f"unknown node action {action[:32]!r}: join, leave, reboot or fence")
    if not names:
        return NodeRefused("NODE_ACTION_REFUSED", "choose at least one node")
    if unknown := [n for n in names if n not in known]:
        return NodeRefused("NODE_NOT_FOUND", f"luci does not know the node {unknown[0][:64]!r} in {cluster_name}")
    if len(names) > 1 and action not in MANY_ACTIONS:
        return NodeRefused("NODE_ACTION_REFUSED", f"{action} works on one node at a time")
    if action == FENCE and len(known) < 2:
        return NodeRefused("NODE_ACTION_REFUSED", "fencing needs another node to run the fence agent")
    return None


def start_node_action(cluster: Cluster, user: Any, action: str, names: list[str]) -> Operation:
    """Start `action` on one node or several (node_action / nodes_action). A refusal is audited as node.<action>,
    or node.unknown (the asked action in its detail, truncated) when it is none of NODE_ACTIONS, and raised as
    NodeRefused; configs.QueueUnavailable when the queue is down (audited by enqueue)."""
    refusal = action_refusal(action, names, [n.name for n in cluster.nodes.all()], cluster.name)
    if refusal is not None:
        known_action = action in NODE_ACTIONS
        raise _refuse(user, f"node.{action}" if known_action else "node.unknown", cluster, ", ".join(names),
                      refusal, None if known_action else {"action": action[:32]})
    op = operations.start(user, f"node_{action}" if len(names) == 1 else f"nodes_{action}", cluster, names)
    if len(names) == 1:
        enqueue(op, user, f"node.{action}", node_action, str(op.id), action, names[0], target=names[0])
    else:
        enqueue(op, user, f"node.{action}", nodes_action, str(op.id), action, names, target=", ".join(names))
    return op


def start_node_add(cluster: Cluster, user: Any, name: str, address: str, port: int, fingerprint: str, *,
                   base_version: int | None, reason: str = "") -> Operation:
    """Start adding the node `name` whose agent answers at address:port and must offer the host key `fingerprint`
    (the one the admin confirmed; it is probed again now). Refusals audited (node.add) and raised: NodeRefused
    (NODE_EXISTS, NODE_UNREACHABLE), registry.FingerprintMismatch, registry.FingerprintRequired (`fingerprint`
    empty: not audited, the caller shows the offered one to confirm), configs' ConfigConflict, ConfigRejected,
    ConfigUnavailable (`base_version` None: no concurrency check); QueueUnavailable when the queue is down."""
    if cluster.nodes.filter(name=name).exists():
        raise _refuse(user, "node.add", cluster, name, NodeRefused("NODE_EXISTS", f"{cluster.name} already has a "
                                                                                  f"node {name}"))
    try:
        host_key, offered = gateway.probe_host_key(address, port)
    except RicciError as exc:
        raise _refuse(user, "node.add", cluster, name, NodeRefused(
            "NODE_UNREACHABLE", f"the node's host key could not be read: {exc.message}; nothing was done",
            unreachable={registry.endpoint_key(address, port): exc.message})) from None
    new = registry.NodeCandidate(name, address, port, host_key, offered)
    registry.confirm_fingerprints([new], {registry.endpoint_key(address, port): fingerprint}, user=user,
                                  action="node.add", cluster=cluster, target=name)
    try:
        _, xml = prepare(cluster, base_version, add_node_edit(name, port))
    except (ConfigConflict, ConfigRejected, ConfigUnavailable) as exc:
        raise _refuse(user, "node.add", cluster, name, exc) from None
    op = operations.start(user, "node_add", cluster, [*(n.name for n in cluster.nodes.all()), name])
    enqueue(op, user, "node.add", node_add, str(op.id), name, xml, {
        "reason": reason or f"add node {name}",
        "node": {"address": address, "port": port, "host_key": host_key, "fingerprint": offered}}, target=name)
    return op


def start_node_delete(cluster: Cluster, user: Any, name: str, *, base_version: int | None,
                      reason: str = "") -> Operation:
    """Start deleting the node `name` from the cluster. NodeRefused NODE_NOT_FOUND (not audited: a lookup that
    found nothing) when luci does not know it; configs' refusals audited (node.delete) and raised;
    QueueUnavailable when the queue is down."""
    if not cluster.nodes.filter(name=name).exists():
        raise NodeRefused("NODE_NOT_FOUND", f"luci does not know the node {name[:64]!r} in {cluster.name}")
    try:
        _, xml = prepare(cluster, base_version, remove_node_edit(name))
    except (ConfigConflict, ConfigRejected, ConfigUnavailable) as exc:
        raise _refuse(user, "node.delete", cluster, name, exc) from None
    op = operations.start(user, "node_delete", cluster, [name])
    enqueue(op, user, "node.delete", node_delete, str(op.id), name, xml,
            {"reason": reason or f"delete node {name}"}, target=name)
    return op
