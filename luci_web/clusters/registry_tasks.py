"""The Celery task that creates a cluster (luci_web.clusters.registry.create_cluster queues it).

On nodes whose agents have no configuration yet, under the host keys the admin confirmed: make every node trust
every other (each node's client key authorised on every node, each host key pinned on every node under its
address and its name: node.trust), give them one cluster key (cluster.set_authkey), push the first cluster.conf
to the first node with propagate=true (it stages and commits it on the others), start every node's daemons
(node.start), then save the cluster in luci. Each node's progress is the operation's; the audit entry has the
result.
"""
from __future__ import annotations

import base64
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from luci_web.access.rights import require_global
from luci_web.audit.log import record
from luci_web.celery import app
from luci_web.clusters import gateway, operations
from luci_web.clusters.models import Operation
from luci_web.clusters.registry import NodeCandidate, RegistryError, check_lab_dir, first_config, save_cluster
from luci_web.clusters.tasks import guarded
from ricci_agent.protocol import RicciError

CLUSTER_KEY_BYTES = 64  # as cman.wire.new_key
START_TIMEOUT = 60.0  # node.start runs `cman_tool join -w -t 25` then rgmanager on the node (as the lab allows)


class CreateFailed(Exception):
    """A step failed on some node; the message is one line."""


@app.task(name="luci.create_cluster")
@guarded("cluster.create")
def create_cluster(operation_id: str, name: str, nodes: list[dict[str, Any]], lab_dir: str | None = None
                   ) -> dict[str, Any]:
    op = Operation.objects.select_related("user").get(pk=operation_id)
    user = op.user or get_user_model()()
    try:
        require_global(user, "create_clusters")
        check_lab_dir(user, lab_dir)
    except (PermissionDenied, RegistryError) as exc:
        record(user, "cluster.create", cluster=name, result="refused", message=str(exc))
        operations.finish(op, False, str(exc))
        return {"ok": False}
    candidates = [NodeCandidate.from_dict(n) for n in nodes]
    operations.running(op)
    detail = {"nodes": {n.name: f"{n.address}:{n.port} {n.fingerprint}" for n in candidates}}
    configured = False
    try:
        xml = first_config(name, candidates, lab_dir)
        client_keys = contact(op, candidates)
        trust(op, candidates, client_keys)
        share_cluster_key(op, candidates)
        push_first_config(op, candidates, xml)
        configured = True
        start_nodes(op, candidates)
    except (CreateFailed, RegistryError) as exc:
        cluster_id = None
        if configured:  # the cluster exists on its nodes: luci manages it even though a node did not start
            cluster_id = _save(user, name, candidates)
        message = str(exc) + ("; the cluster is configured and saved in luci" if cluster_id else "")
        record(user, "cluster.create", cluster=name, detail=detail, result="failed", message=message)
        _attach(op, cluster_id)
        operations.finish(op, False, message, {"cluster": cluster_id} if cluster_id else {})
        return {"ok": False, "cluster": cluster_id}
    cluster_id = _save(user, name, candidates)
    if cluster_id is None:
        message = f"the cluster {name} was created on its nodes but could not be saved in luci (name taken?)"
        record(user, "cluster.create", cluster=name, detail=detail, result="failed", message=message)
        operations.finish(op, False, message)
        return {"ok": False}
    message = f"cluster {name} created on {len(candidates)} node(s) and started"
    record(user, "cluster.create", cluster=name, detail=detail, result="ok", message=message)
    _attach(op, cluster_id)
    operations.finish(op, True, message, {"cluster": cluster_id})
    return {"ok": True, "cluster": cluster_id}


def _attach(op: Operation, cluster_id: int | None) -> None:
    """The operation belongs to the new cluster once it is in luci (its page links to it)."""
    if cluster_id is not None:
        op.cluster_id = cluster_id
        op.save(update_fields=["cluster"])


def _save(user: Any, name: str, candidates: list[NodeCandidate]) -> int | None:
    try:
        return save_cluster(user, name, candidates).pk
    except RegistryError:
        return None


def _each(op: Operation, candidates: list[NodeCandidate], state: str, function: str,
          args_of: Any, *, timeout: float | None = None) -> dict[str, dict[str, Any]]:
    """`function` on every node (one at a time: a handful of nodes, and each step's progress shows), with
    `args_of(node)`; CreateFailed naming the first node that refuses or does not answer."""
    answers: dict[str, dict[str, Any]] = {}
    for node in candidates:
        operations.step(op, node.name, state)
        try:
            answers[node.name] = gateway.call(node, function, args_of(node), timeout=timeout)
        except RicciError as exc:
            operations.step(op, node.name, "failed", exc.message)
            raise CreateFailed(f"{node.name}: {function}: {exc.message}") from None
    return answers


def contact(op: Operation, candidates: list[NodeCandidate]) -> dict[str, str]:
    """Each node's client key (hello), refusing a node that already belongs to a cluster."""
    answers = _each(op, candidates, "contacting", "hello", lambda node: {})
    keys: dict[str, str] = {}
    for node in candidates:
        answer = answers[node.name]
        if answer.get("cluster_name"):
            message = f"already in cluster {answer['cluster_name']} (config_version {answer.get('config_version')})"
            operations.step(op, node.name, "failed", message)
            raise CreateFailed(f"{node.name}: {message}; only nodes without a configuration can form a new cluster")
        if not answer.get("client_key"):
            operations.step(op, node.name, "failed", "its agent does not give its client key (too old?)")
            raise CreateFailed(f"{node.name}: its agent does not give its client key (hello has no client_key)")
        keys[node.name] = answer["client_key"]
    return keys


def trust(op: Operation, candidates: list[NodeCandidate], client_keys: dict[str, str]) -> None:
    """Every node's client key authorised on every node; every host key pinned on every node, under the node's
    address and its name (peers dial the name's address from etc/hosts or DNS, and look the key up under it)."""
    pins = []
    for node in candidates:
        for host in dict.fromkeys((node.address, node.name)):
            pins.append({"host": host, "port": node.port, "key": node.host_key})
    args = {"authorize": sorted(set(client_keys.values())), "pin": pins}
    _each(op, candidates, "trusting", "node.trust", lambda node: args)


def share_cluster_key(op: Operation, candidates: list[NodeCandidate]) -> None:
    key_b64 = base64.b64encode(secrets.token_bytes(CLUSTER_KEY_BYTES)).decode()
    _each(op, candidates, "cluster key", "cluster.set_authkey", lambda node: {"key_b64": key_b64})


def push_first_config(op: Operation, candidates: list[NodeCandidate], xml: str) -> None:
    first = candidates[0]
    for node in candidates:
        operations.step(op, node.name, "configuring")
    try:
        answer = gateway.call(first, "cluster.set_config", {"xml": xml, "propagate": True})
    except RicciError as exc:
        operations.step(op, first.name, "failed", exc.message)
        raise CreateFailed(f"{first.name}: cluster.set_config: {exc.message}") from None
    outcomes = answer.get("nodes") or {}
    missing = []
    for node in candidates:
        outcome = outcomes.get(node.name) or {}
        state = outcome.get("outcome", "not reached")
        operations.step(op, node.name, "configured" if state in ("updated", "already") else state,
                        outcome.get("message") or "")
        if state not in ("updated", "already"):
            missing.append(f"{node.name} ({state}{': ' + outcome['message'] if outcome.get('message') else ''})")
    if missing:
        raise CreateFailed(f"the first configuration did not reach {', '.join(missing)}")


def start_nodes(op: Operation, candidates: list[NodeCandidate]) -> None:
    """node.start on every node at once (cman_tool join waits for the others)."""
    for node in candidates:
        operations.step(op, node.name, "starting")
    results = gateway.fan_out(candidates, "node.start", timeout=START_TIMEOUT)
    failed = []
    for node in candidates:
        result = results[node.name]
        if result.ok:
            operations.step(op, node.name, "done", "cluster daemons started")
        else:
            operations.step(op, node.name, "failed", result.message or result.code or "")
            failed.append(f"{node.name}: {result.message or result.code}")
    if failed:
        raise CreateFailed("node.start failed on " + "; ".join(failed))
