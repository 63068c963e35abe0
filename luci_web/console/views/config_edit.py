"""The one way a console view changes the configuration (Failover Domains, Resources, Fence Devices, Configure,
Service Groups, Nodes): run configs.change and turn its outcome into what the user sees.

    form = DomainForm(request.POST)
    if form.is_valid():
        outcome = config_edit.run_change(request, cluster, form, lambda conf: edit.add_domain(conf, ...),
                                         action="domain.add", target=name)
        if outcome.ok:
            return config_edit.done(request, cluster, "domains", outcome)
    return render_tab(..., form=form, outcome=outcome, status=outcome.status)

- success: a message linking the operation page (the push runs in Celery), then POST-redirect-GET (`done`);
- ConfigConflict (the page was built on version N, the cluster runs M): nothing is applied; `outcome.conflict`
  holds base, current and the diff for the panel `console/_config_outcome.html` (HTTP 409);
- ConfigRejected: each error report is attached to the form field it concerns, the rest are listed in the
  summary (`outcome.reports`, HTTP 400); a refusal without reports (e.g. a control character in a value) is the
  form's own error;
- ConfigUnavailable: no node answered, or the worker queue could not take the push (configs.QueueUnavailable:
  the operation is failed and audited already) (HTTP 503).
Every refusal is also a message, and configs.change has audited it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.html import format_html

from cluster_conf import ClusterConf
from luci_web.clusters import configs
from luci_web.clusters.models import Cluster, Operation
from luci_web.console.forms import BASE_VERSION, ConfigForm
from luci_web.console.views.common import cluster_view, render_tab


@dataclass
class Outcome:
    """What became of one change. `status` is the HTTP status to re-render the page with on refusal."""

    operation: Operation | None = None
    error: str = ""
    conflict: dict[str, Any] | None = None  # {"base": N, "current": M, "diff": text}
    reports: list[Mapping[str, Any]] = field(default_factory=list)  # error reports no field took
    status: int = 200

    @property
    def ok(self) -> bool:
        return self.operation is not None


def run_change(request: HttpRequest, cluster: Cluster, form: ConfigForm, edit: Callable[[ClusterConf], Any], *,
               action: str, target: str = "", detail: dict[str, Any] | None = None, reason: str = "",
               aliases: Mapping[str, str] | None = None) -> Outcome:
    """Apply `edit` on the version the (valid) form was built from and start the push. On refusal the form
    gets the errors (see the module docstring); `aliases` maps attribute names to field names."""
    base = form.cleaned_data[BASE_VERSION]
    try:
        op = configs.change(cluster, request.user, base, edit, action=action, target=target, reason=reason,
                            detail=detail)
    except configs.ConfigConflict as exc:
        messages.error(request, str(exc))
        return Outcome(error=str(exc), status=409,
                       conflict={"base": exc.base, "current": exc.current, "diff": exc.diff_text})
    except configs.ConfigRejected as exc:
        unmatched = form.attach_reports(exc.reports, aliases)
        if not exc.reports:
            form.add_error(None, str(exc))
        errors = [r for r in exc.reports if r.get("severity") == "error"]
        summary = str(exc) if len(errors) <= 1 else f"{exc} ({len(errors)} errors)"
        messages.error(request, summary)
        return Outcome(error=summary, reports=unmatched, status=400)
    except configs.ConfigUnavailable as exc:
        messages.error(request, str(exc))
        return Outcome(error=str(exc), status=503)
    return Outcome(operation=op)


def done(request: HttpRequest, cluster: Cluster, tab: str, outcome: Outcome, what: str = "the change") -> HttpResponse:
    """After a change started: a message linking its operation page, and back to the tab (POST-redirect-GET)."""
    assert outcome.operation is not None
    url = reverse("console:operation", args=[outcome.operation.id])
    messages.success(request, format_html('{} is being pushed to the cluster: <a href="{}">follow it</a>.',
                                          what[:1].upper() + what[1:], url))
    return redirect(f"console:{tab}", cluster.pk)


def fetch_current(request: HttpRequest, cluster: Cluster) -> configs.Current | None:
    """The accepted configuration for a tab's read view, or None with an error message."""
    try:
        return configs.fetch(cluster)
    except configs.ConfigUnavailable as exc:
        messages.error(request, str(exc))
        return None


def render_page(request: HttpRequest, cluster: Cluster, rights: frozenset[str], tab: str, template: str,
                outcome: Outcome | None = None, **context: Any) -> HttpResponse:
    """A configuration tab, answered with the outcome's status (400, 409, 503) when it shows a refused change."""
    response = render_tab(request, cluster, rights, tab, template, outcome=outcome, **context)
    if outcome is not None:
        response.status_code = outcome.status
    return response


def config_tab(page: Callable[..., HttpResponse], post: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """The view of a configuration tab: GET shows `page` to viewers; POST needs the config right and runs `post`.
    Both get (request, cluster, rights)."""
    @cluster_view("view")
    def tab(request: HttpRequest, cluster: Cluster, rights: frozenset[str]) -> HttpResponse:
        if request.method != "POST":
            return page(request, cluster, rights)
        if "config" not in rights:
            raise PermissionDenied("you may not change the cluster configuration on this cluster")
        return post(request, cluster, rights)

    return tab
