"""The Failover Domains tab: the domains of the accepted configuration (ordered = prioritized, restricted,
nofailback, members with priorities) and, for users with the config right, forms to add, edit and delete them.
Every change goes through config_edit.run_change (one version bump, optimistic concurrency)."""
from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.urls import path

from cluster_conf.model import view
from luci_web.clusters.edits.domains import add_domain, delete_domain, update_domain
from luci_web.clusters.values import xml_unsafe
from luci_web.console.forms import ConfigForm
from luci_web.console.views import config_edit


class DomainForm(ConfigForm):
    """name, the three flags, and for each cluster node a member box and a priority (1..100)."""

    name = forms.CharField(max_length=255)
    ordered = forms.BooleanField(required=False, label="Prioritized (ordered)")
    restricted = forms.BooleanField(required=False, label="Restricted")
    nofailback = forms.BooleanField(required=False, label="No failback")

    def __init__(self, *args: Any, nodes: list[str], editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.nodes = nodes
        if editing:
            self.fields["name"].widget = forms.HiddenInput()
        for node in nodes:
            self.fields[f"member_{node}"] = forms.BooleanField(required=False, label=node)
            self.fields[f"priority_{node}"] = forms.IntegerField(required=False, label=f"priority of {node}")

    def clean(self) -> dict[str, Any]:
        """The member node names come from the posted field names, not values: check them as values are."""
        data = super().clean()
        for node in self.nodes:
            if problem := xml_unsafe(node):
                self.add_error(None, f"a member node name {problem}")
                break
        return data

    def member_rows(self) -> list[tuple[forms.BoundField, forms.BoundField]]:
        return [(self[f"member_{n}"], self[f"priority_{n}"]) for n in self.nodes]

    def members(self) -> list[tuple[str, int | None]]:
        return [(n, self.cleaned_data.get(f"priority_{n}")) for n in self.nodes if self.cleaned_data.get(f"member_{n}")]

    def priority_alias(self) -> dict[str, str]:
        """Reports about `priority` go next to the first member whose priority is out of range."""
        for node, priority in self.members():
            if priority is not None and not 1 <= priority <= 100:
                return {"priority": f"priority_{node}"}
        return {}


def domain_initial(domain: Any) -> dict[str, Any]:
    initial: dict[str, Any] = {"name": domain.name, "ordered": domain.ordered, "restricted": domain.restricted,
                               "nofailback": domain.nofailback}
    for member in domain.nodes:
        initial[f"member_{member.name}"] = True
        initial[f"priority_{member.name}"] = member.priority
    return initial


# -- views ---------------------------------------------------------------------------------------------------
def _page(request: HttpRequest, cluster: Any, rights: frozenset[str], *, failed: DomainForm | None = None,
          failed_key: str = "", outcome: config_edit.Outcome | None = None) -> HttpResponse:
    current = config_edit.fetch_current(request, cluster)
    domains, nodes, version = [], [], None
    if current is not None:
        cv = view(current.conf)
        version = current.version
        nodes = [n.name for n in cv.nodes]
        for domain in cv.domains:
            form = None
            if "config" in rights:
                form = DomainForm(initial=domain_initial(domain), nodes=nodes, editing=True, version=version,
                                  prefix=f"d{len(domains)}")
            if failed is not None and failed_key == f"edit:{domain.name}":
                form = failed
            domains.append({"domain": domain, "form": form})
    add_form = None
    if "config" in rights and version is not None:
        add_form = failed if failed is not None and failed_key == "add" else DomainForm(nodes=nodes, version=version)
    return config_edit.render_page(request, cluster, rights, "domains", "console/domains.html", outcome,
                                   current=current, version=version, domains=domains, add_form=add_form)


def _post(request: HttpRequest, cluster: Any, rights: frozenset[str]) -> HttpResponse:
    op = request.POST.get("op", "")
    prefix = request.POST.get("prefix") or None
    nodes = [n.name for n in cluster.nodes.all()]
    if op == "delete":
        form = ConfigForm(request.POST)
        name = request.POST.get("name", "")
        if not form.is_valid() or not name:
            return _page(request, cluster, rights, outcome=config_edit.Outcome(error="bad request", status=400))
        outcome = config_edit.run_change(request, cluster, form, delete_domain(name), action="domain.delete",
                                         target=name)
        if outcome.ok:
            return config_edit.done(request, cluster, "domains", outcome, f"deleting failover domain {name}")
        return _page(request, cluster, rights, outcome=outcome)
    if op not in ("add", "edit"):
        return _page(request, cluster, rights, outcome=config_edit.Outcome(error=f"unknown op {op!r}", status=400))
    # The member list comes from the configuration the form was built on: the fields carry node names.
    form_nodes = _nodes_in_post(request, prefix) or nodes
    form = DomainForm(request.POST, nodes=form_nodes, editing=op == "edit", prefix=prefix)
    key = "add" if op == "add" else f"edit:{request.POST.get((prefix + '-' if prefix else '') + 'name', '')}"
    if not form.is_valid():
        return _page(request, cluster, rights, failed=form, failed_key=key,
                     outcome=config_edit.Outcome(error="the form has errors", status=400))
    data = form.cleaned_data
    name = data["name"]
    make = add_domain if op == "add" else update_domain
    fn = make(name, data["ordered"], data["restricted"], data["nofailback"], form.members())
    outcome = config_edit.run_change(request, cluster, form, fn, action=f"domain.{op}", target=name,
                                     aliases=form.priority_alias(),
                                     detail={"members": [m for m, _ in form.members()]})
    if outcome.ok:
        verb = "adding" if op == "add" else "changing"
        return config_edit.done(request, cluster, "domains", outcome, f"{verb} failover domain {name}")
    return _page(request, cluster, rights, failed=None if outcome.conflict else form, failed_key=key, outcome=outcome)


def _nodes_in_post(request: HttpRequest, prefix: str | None) -> list[str]:
    """The node names the submitted form had member boxes or priorities for (in submission order)."""
    lead = (prefix + "-") if prefix else ""
    names: list[str] = []
    for key in request.POST:
        for kind in ("member_", "priority_"):
            if key.startswith(lead + kind):
                node = key[len(lead + kind):]
                if node and node not in names:
                    names.append(node)
    return names


tab = config_edit.config_tab(_page, _post)

urlpatterns = [
    path("clusters/<int:pk>/domains/", tab, name="domains"),
]
