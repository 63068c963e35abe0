"""Create a cluster, add an existing one, remove one from luci. The wizards keep their state in the session
(server side); host keys are only ever those luci probed itself, and every node is probed again when the admin
submits, so a key that changed between the steps is refused (and audited). The work is in
luci_web.clusters.registry."""
from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import path

from luci_web.access.rights import require_global
from luci_web.clusters import gateway, registry
from luci_web.clusters.registry import NodeCandidate, RegistryError
from luci_web.console.views.common import cluster_view, show_error
from ricci_agent.protocol import DEFAULT_PORT

ADD_STATE = "luci.cluster_add"
CREATE_STATE = "luci.cluster_create"


def _luci_key() -> str:
    try:
        return gateway.luci_public_key()
    except OSError as exc:
        return f"(luci's key cannot be read: {exc.strerror})"


# -- add an existing cluster ---------------------------------------------------------------------------------
@login_required
def cluster_add(request: HttpRequest) -> HttpResponse:
    require_global(request.user, "import_clusters")
    state: dict[str, Any] = request.session.get(ADD_STATE) or {}
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "cancel":
                request.session.pop(ADD_STATE, None)
                return redirect("console:overview")
            if action == "probe":
                address, port = registry.check_endpoint(request.POST.get("address", ""),
                                                        request.POST.get("port") or DEFAULT_PORT)
                _key, shown = registry.probe(address, port)
                request.session[ADD_STATE] = {"step": 2, "address": address, "port": port, "fingerprint": shown}
            elif action == "confirm" and state.get("step") == 2:
                seed = registry.reprobe([NodeCandidate("seed", state["address"], state["port"],
                                                       fingerprint=state["fingerprint"])],
                                        user=request.user, action="cluster.add")[0]
                found = registry.discover(seed.address, seed.port, seed.host_key or "")
                request.session[ADD_STATE] = {**state, "step": 3, "cluster_name": found.cluster_name,
                                              "config_version": found.config_version,
                                              "nodes": [n.to_dict() for n in found.nodes]}
            elif action == "add" and state.get("step") == 3:
                return _add_confirmed(request, state)
            else:
                request.session.pop(ADD_STATE, None)
                show_error(request, "that step is not available now: start again")
        except RegistryError as exc:
            show_error(request, str(exc))
        return redirect("console:cluster_add")
    return render(request, "console/cluster_add.html", {
        "state": state, "step": state.get("step", 1), "luci_key": _luci_key(), "default_port": DEFAULT_PORT,
        "nodes": state.get("nodes", []),
    })


def _add_confirmed(request: HttpRequest, state: dict[str, Any]) -> HttpResponse:
    chosen = set(request.POST.getlist("node"))
    known = [NodeCandidate.from_dict(n) for n in state.get("nodes", [])]
    picked = [n for n in known if n.name in chosen and n.host_key]
    if not picked:
        raise RegistryError("confirm at least one node's fingerprint")
    fresh = registry.reprobe(picked, user=request.user, action="cluster.add", cluster=state["cluster_name"])
    cluster = registry.add_existing(request.user, state["cluster_name"], fresh)
    request.session.pop(ADD_STATE, None)
    left = len(known) - len(picked)
    messages.success(request, f"Cluster {cluster.name} added with {len(picked)} node(s)"
                     + (f"; {left} not confirmed, left out" if left else ""))
    return redirect("console:cluster", cluster.pk)


# -- create a cluster ----------------------------------------------------------------------------------------
@login_required
def cluster_create(request: HttpRequest) -> HttpResponse:
    require_global(request.user, "create_clusters")
    state: dict[str, Any] = request.session.get(CREATE_STATE) or {}
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "cancel":
                request.session.pop(CREATE_STATE, None)
                return redirect("console:overview")
            if action == "probe":
                name = registry.check_cluster_name(request.POST.get("name", ""))
                text = request.POST.get("nodes", "")
                lab_dir = request.POST.get("lab_dir", "").strip() or None
                request.session[CREATE_STATE] = {"step": 1, "name": name, "text": text[:8000], "lab_dir": lab_dir}
                nodes = registry.probe_all(registry.parse_node_lines(text))
                registry.first_config(name, nodes, lab_dir)
                request.session[CREATE_STATE] = {"step": 2, "name": name, "text": text[:8000], "lab_dir": lab_dir,
                                                 "nodes": [n.to_dict() for n in nodes]}
            elif action == "create" and state.get("step") == 2:
                nodes = [NodeCandidate.from_dict(n) for n in state["nodes"]]
                unconfirmed = [n.name for n in nodes if n.name not in set(request.POST.getlist("node"))]
                if unconfirmed:
                    raise RegistryError(f"confirm the fingerprint of every node (not confirmed: "
                                        f"{', '.join(unconfirmed)})")
                fresh = registry.reprobe(nodes, user=request.user, action="cluster.create", cluster=state["name"])
                op = registry.create_cluster(request.user, state["name"], fresh, lab_dir=state["lab_dir"])
                request.session.pop(CREATE_STATE, None)
                return redirect("console:operation", op.pk)
            elif action == "back":
                request.session[CREATE_STATE] = {**state, "step": 1}
            else:
                request.session.pop(CREATE_STATE, None)
                show_error(request, "that step is not available now: start again")
        except RegistryError as exc:
            show_error(request, str(exc))
        return redirect("console:cluster_create")
    return render(request, "console/cluster_create.html", {
        "state": state, "step": state.get("step", 1), "nodes": state.get("nodes", []), "luci_key": _luci_key(),
        "max_name": registry.MAX_CLUSTER_NAME,
        "unreachable": any(n.get("error") for n in state.get("nodes", [])),
    })


# -- remove from luci ----------------------------------------------------------------------------------------
@cluster_view("remove")
def cluster_remove(request: HttpRequest, cluster, rights) -> HttpResponse:  # type: ignore[no-untyped-def]
    if request.method == "POST":
        name = cluster.name
        try:
            registry.remove(request.user, cluster)
        except PermissionDenied as exc:
            show_error(request, str(exc))
            return redirect("console:cluster", cluster.pk)
        messages.success(request, f"Cluster {name} removed from luci; its nodes were not changed")
        return redirect("console:overview")
    return render(request, "console/cluster_remove.html", {"cluster": cluster, "rights": rights,
                                                            "nodes": list(cluster.nodes.all())})


urlpatterns = [
    path("clusters/add/", cluster_add, name="cluster_add"),
    path("clusters/create/", cluster_create, name="cluster_create"),
    path("clusters/<int:pk>/remove/", cluster_remove, name="cluster_remove"),
]
