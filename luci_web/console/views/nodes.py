"""The Nodes tab: each node's state as the watcher last read it (live), its agent and its fence methods; join,
leave, reboot and fence a node, or start and stop the whole cluster (node_cmd); add and delete nodes
(membership). The long parts run as Celery tasks (luci_web.clusters.node_tasks) whose progress the operation's
page shows live."""
from __future__ import annotations

import secrets
from typing import Any

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path
from django.views.decorators.http import require_POST

from cluster_conf import ClusterConf, model
from cluster_conf.schema import is_secret
from luci_web.audit.log import record
from luci_web.clusters import gateway
from luci_web.clusters.configs import (
    ConfigConflict,
    ConfigRejected,
    ConfigUnavailable,
    QueueUnavailable,
    fetch,
)
from luci_web.clusters.edits.nodes import ADDRESS, DEFAULT_PORT, NODE_NAME, node_rows
from luci_web.clusters.models import Cluster
from luci_web.clusters.node_tasks import (
    MANY_ACTIONS,
    NodeRefused,
    start_node_action,
    start_node_add,
    start_node_delete,
)
from luci_web.clusters.registry import RegistryError
from luci_web.clusters.values import whole_number
from luci_web.console.views.common import cluster_view, render_tab, tab_context
from ricci_agent.protocol import RicciError

ADD_SESSION_KEY = "luci-node-add"  # {token: probed node}: each probe's own entry
MAX_PENDING = 8  # probes kept awaiting confirmation per session (the oldest go first)
STALE_PAGE = "the page does not say which configuration version it was made from; reload the page"
NODE_BUTTONS = [("join", "Join"), ("leave", "Leave"), ("reboot", "Reboot"), ("fence", "Fence")]


# -- what the tab shows -------------------------------------------------------------------------------------
def _shown_params(params: dict[str, str]) -> list[tuple[str, str]]:
    """A device's parameters as (name, value), secrets replaced by a word: a password never reaches the page."""
    return [(k, "(hidden)" if is_secret(k) else v) for k, v in params.items()]


def fence_methods(conf: ClusterConf) -> dict[str, list[dict[str, Any]]]:
    """{node: [{name, devices: [{name, agent, params: [(k, v)]}]}]} from the configuration."""
    view = model.view(conf)
    shown: dict[str, list[dict[str, Any]]] = {}
    for node in view.nodes:
        methods = []
        for method in node.methods:
            devices = []
            for ref in method.devices:
                device = view.fence_device(ref.name)
                devices.append({"name": ref.name, "agent": device.agent if device else None,
                                "params": _shown_params(ref.params)})
            methods.append({"name": method.name, "devices": devices})
        shown[node.name] = methods
    return shown


def nodes_context(cluster: Cluster) -> dict[str, Any]:
    return {"rows": node_rows(cluster), "node_buttons": NODE_BUTTONS}


@cluster_view("view")
def tab(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    """The full page: the live table, and the fence methods read once from the configuration."""
    methods: dict[str, list[dict[str, Any]]] = {}
    config_version = None
    config_error = ""
    try:
        current = fetch(cluster)
        methods, config_version = fence_methods(current.conf), current.version
    except ConfigUnavailable as exc:
        config_error = str(exc)
    return render_tab(request, cluster, rights, "nodes", "console/nodes.html", **nodes_context(cluster),
                      methods=methods, config_version=config_version, config_error=config_error,
                      node_names=[n.name for n in cluster.nodes.all()], many_actions=MANY_ACTIONS)


@cluster_view("view")
def fragment(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    """The live part alone (re-fetched when the cluster's status changes)."""
    return render(request, "console/_nodes.html", tab_context(cluster, rights, "nodes", **nodes_context(cluster)))


# -- join, leave, reboot, fence (node_cmd) ------------------------------------------------------------------
@require_POST
@cluster_view("node_cmd")
def act(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    """One node (`node`) or several (`node` repeated; `scope=all`: every node) join, leave, reboot or are fenced.
    Starts an Operation and its task, then shows the operation's page."""
    action = request.POST.get("action", "")
    if request.POST.get("scope") == "all":
        names = [n.name for n in cluster.nodes.all()]
    else:
        names = list(dict.fromkeys(request.POST.getlist("node")))
    try:
        op = start_node_action(cluster, request.user, action, names)
    except (NodeRefused, QueueUnavailable) as exc:  # audited there
        messages.error(request, str(exc))
        return redirect("console:nodes", cluster.pk)
    return redirect("console:operation", op.id)


# -- add and delete (membership) ----------------------------------------------------------------------------
def _new_node_fields(data: Any) -> tuple[dict[str, Any], dict[str, str]]:
    """(fields, errors) of the add form: name, address, port."""
    name = (data.get("name") or "").strip()
    address = (data.get("address") or "").strip() or name
    port_text = (data.get("port") or str(DEFAULT_PORT)).strip()
    errors = {}
    if not NODE_NAME.fullmatch(name):
        errors["name"] = "a node name: letters, digits, dot, dash or underscore, starting with a letter or digit"
    if not ADDRESS.fullmatch(address):
        errors["address"] = "a host name or an IP address"
    try:
        port: int | str = whole_number(port_text, 1, 65535)
    except ValueError:
        port = port_text
        errors["port"] = "a TCP port between 1 and 65535"
    return {"name": name, "address": address, "port": port}, errors


def _posted_version(data: Any) -> int | None:
    """The configuration version the page was built from (a hidden field), or None when missing or not a
    whole number: the change is then refused, never prepared without the concurrency check."""
    try:
        return whole_number(data.get("base_version") or "", 0, 2**63 - 1)
    except ValueError:
        return None


def _refused(request: HttpRequest, cluster: Cluster, rights, template: str, action: str, target: str,  # type: ignore[no-untyped-def]
             exc: Exception | str, status: int = 409, **extra: Any) -> HttpResponse:
    """A change luci refused here: audited, and shown on the page."""
    record(request.user, action, cluster=cluster, target=target, result="refused", message=str(exc))
    return _shown_refusal(request, cluster, rights, template, exc, status, **extra)


def _shown_refusal(request: HttpRequest, cluster: Cluster, rights, template: str,  # type: ignore[no-untyped-def]
                   exc: Exception | str, status: int = 409, **extra: Any) -> HttpResponse:
    """A change the cluster (or luci) refused, audited already: shown on the page with its reports or the diff."""
    response = render_tab(request, cluster, rights, "nodes", template, refusal=str(exc),
                          reports=getattr(exc, "reports", []), diff=getattr(exc, "diff_text", ""), **extra)
    response.status_code = status
    return response


def _current_version(cluster: Cluster) -> tuple[int | None, str]:
    """(the accepted configuration version, '') or (None, why it could not be read)."""
    try:
        return fetch(cluster).version, ""
    except ConfigUnavailable as exc:
        return None, str(exc)


def _pending(request: HttpRequest) -> dict[str, dict[str, Any]]:
    """The probed nodes awaiting confirmation, by token (one per probe: two tabs never share an entry)."""
    pending = request.session.get(ADD_SESSION_KEY)
    return dict(pending) if isinstance(pending, dict) else {}


def _keep_pending(request: HttpRequest, pending: dict[str, dict[str, Any]]) -> None:
    request.session[ADD_SESSION_KEY] = dict(list(pending.items())[-MAX_PENDING:])


@cluster_view("membership")
def add(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    """GET: the form (only when the configuration's version could be read). POST step=probe: read the agent's host
    key and show its fingerprint. POST step=confirm: check the key again, put the node in the configuration
    (checked, not yet pushed), and start the task that exchanges the agents' keys, pushes the configuration and
    only then saves the node in luci."""
    if request.method != "POST":
        version, unavailable = _current_version(cluster)
        return render_tab(request, cluster, rights, "nodes", "console/node_add.html",
                          fields={"port": DEFAULT_PORT}, errors={}, base_version=version, unavailable=unavailable)
    if request.POST.get("step") == "confirm":
        return _add_confirmed(request, cluster, rights)
    fields, errors = _new_node_fields(request.POST)
    base_version = _posted_version(request.POST)
    if base_version is None:
        return _refused(request, cluster, rights, "console/node_add.html", "node.add", fields["name"],
                        STALE_PAGE, status=400, fields=fields, errors={}, base_version=None)
    if not errors and cluster.nodes.filter(name=fields["name"]).exists():
        errors["name"] = f"{cluster.name} already has a node {fields['name']}"
    if not errors:
        try:
            host_key, fingerprint = gateway.probe_host_key(fields["address"], fields["port"])
        except RicciError as exc:
            errors["address"] = exc.message
    if errors:
        return render_tab(request, cluster, rights, "nodes", "console/node_add.html", fields=fields, errors=errors,
                          base_version=base_version)
    token = secrets.token_urlsafe(12)
    pending = _pending(request)
    pending[token] = {**fields, "cluster": cluster.pk, "host_key": host_key, "fingerprint": fingerprint,
                      "base_version": base_version}
    _keep_pending(request, pending)
    return render_tab(request, cluster, rights, "nodes", "console/node_add_confirm.html", fields=fields,
                      fingerprint=fingerprint, base_version=base_version, token=token)


def _confirmation_problem(request: HttpRequest, probed: dict[str, Any]) -> str:
    """'' when the confirmed page shows the node and key of the session's probe (start_node_add probes it again)."""
    posted = {k: (request.POST.get(k) or "").strip() for k in ("name", "fingerprint")}
    if posted["name"] != probed["name"] or posted["fingerprint"] != probed["fingerprint"]:
        return "the confirmation does not match the host key luci read for this node; read it again"
    return ""


def _add_confirmed(request: HttpRequest, cluster: Cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    pending = _pending(request)
    token = request.POST.get("token") or ""
    probed = pending.get(token)
    if not isinstance(probed, dict) or probed.get("cluster") != cluster.pk or not probed.get("host_key"):
        messages.error(request, "read the node's host key first (the confirmation expired)")
        return redirect("console:node_add", cluster.pk)
    name, address, port = probed["name"], probed["address"], int(probed["port"])
    shown = {"fields": probed, "fingerprint": probed["fingerprint"], "base_version": probed.get("base_version"),
             "token": token}
    template = "console/node_add_confirm.html"

    def forget() -> None:
        pending.pop(token, None)
        _keep_pending(request, pending)

    if problem := _confirmation_problem(request, probed):
        forget()
        return _refused(request, cluster, rights, template, "node.add", name, problem, status=400,
                        **{**shown, "token": ""})
    try:
        op = start_node_add(cluster, request.user, name, address, port, probed["fingerprint"],
                            base_version=probed["base_version"], reason=f"add node {name}")
    except NodeRefused as exc:  # every refusal below is audited by start_node_add
        if exc.code == "NODE_EXISTS":
            return _shown_refusal(request, cluster, rights, template, exc, **shown)
        forget()  # the node did not answer again: read its key again
        return _shown_refusal(request, cluster, rights, template, exc, status=400, **{**shown, "token": ""})
    except RegistryError as exc:  # it offers another host key than the one confirmed
        forget()
        return _shown_refusal(request, cluster, rights, template, exc, status=400, **{**shown, "token": ""})
    except QueueUnavailable as exc:
        forget()
        messages.error(request, str(exc))
        return redirect("console:nodes", cluster.pk)
    except (ConfigConflict, ConfigRejected, ConfigUnavailable) as exc:
        return _shown_refusal(request, cluster, rights, template, exc, **shown)
    forget()
    return redirect("console:operation", op.id)


@cluster_view("membership")
def delete(request: HttpRequest, cluster, rights, name: str) -> HttpResponse:  # type: ignore[no-untyped-def]
    """GET: what deleting the node does, to confirm (only when the configuration's version could be read). POST:
    check the configuration without it, then start the task that stops its daemons, pushes the configuration and
    only then forgets it in luci."""
    node = cluster.nodes.filter(name=name).first()
    if node is None:
        messages.error(request, f"luci does not know the node {name!r} in {cluster.name}")
        return redirect("console:nodes", cluster.pk)
    if request.method != "POST":
        version, unavailable = _current_version(cluster)
        return render_tab(request, cluster, rights, "nodes", "console/node_delete.html", node=node,
                          base_version=version, unavailable=unavailable)
    base_version = _posted_version(request.POST)
    if base_version is None:
        return _refused(request, cluster, rights, "console/node_delete.html", "node.delete", name, STALE_PAGE,
                        status=400, node=node, base_version=None)
    try:
        op = start_node_delete(cluster, request.user, name, base_version=base_version, reason=f"delete node {name}")
    except (NodeRefused, QueueUnavailable) as exc:
        messages.error(request, str(exc))
        return redirect("console:nodes", cluster.pk)
    except (ConfigConflict, ConfigRejected, ConfigUnavailable) as exc:  # audited by start_node_delete
        return _shown_refusal(request, cluster, rights, "console/node_delete.html", exc, node=node,
                              base_version=base_version)
    return redirect("console:operation", op.id)


urlpatterns = [
    path("clusters/<int:pk>/nodes/", tab, name="nodes"),
    path("clusters/<int:pk>/fragments/nodes/", fragment, name="nodes_fragment"),
    path("clusters/<int:pk>/nodes/action/", act, name="nodes_action"),
    path("clusters/<int:pk>/nodes/add/", add, name="node_add"),
    path("clusters/<int:pk>/nodes/<str:name>/delete/", delete, name="node_delete"),
]
