"""The Fence Devices tab: the shared fence devices (<fencedevices>) with their agent and parameters, secrets
shown as ********, and for users with the config right per-agent forms to add, edit and delete them. An installed
agent's form comes from its `-o metadata` (luci_web.clusters.fence_metadata); another agent gets a key=value form.
Password fields are write-only: never rendered with a value, and empty keeps the current one."""
from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.urls import path

from cluster_conf.model import view
from cluster_conf.schema import is_secret
from luci_web.clusters import fence_metadata
from luci_web.clusters.edits.fence_devices import add_device, delete_device, update_device
from luci_web.clusters.fence_metadata import AgentForm, FenceParam
from luci_web.console.forms import SECRET_MASK, ConfigForm, parse_pairs, secret_field, xml_safe
from luci_web.console.views import config_edit


def metadata_field(param: FenceParam) -> forms.Field:
    """A form field for one parameter from an agent's metadata."""
    help_text = param.shortdesc + (f" (default {param.default})" if param.default not in (None, "") else "")
    if param.deprecated:
        help_text = "older name; " + help_text
    if param.secret:
        return secret_field(param.name, help_text + "; write-only: leave empty to keep the current value")
    if param.type == "select" and param.choices:
        choices = [("", "(default)")] + [(c, c) for c in param.choices]
        return forms.ChoiceField(choices=choices, required=False, label=param.name, help_text=help_text,
                                 validators=[xml_safe])
    if param.type == "boolean":
        return forms.ChoiceField(choices=[("", "(default)"), ("1", "yes"), ("0", "no")], required=False,
                                 label=param.name, help_text=help_text, validators=[xml_safe])
    return forms.CharField(required=param.required, label=param.name, help_text=help_text, validators=[xml_safe])


class FenceDeviceForm(ConfigForm):
    """name, the agent's parameters from its metadata, and `extra` key=value lines for any other attribute."""

    name = forms.CharField(max_length=255)
    extra = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                            label="Other parameters (name=value, one a line)")

    def __init__(self, *args: Any, agent: AgentForm, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.agent = agent
        if editing:
            self.fields["name"].widget = forms.HiddenInput()
        extra = self.fields.pop("extra")
        for param in agent.params:
            if param.name not in ("name", "agent"):
                self.fields[param.name] = metadata_field(param)
        if agent.generic:  # no metadata: the usual password attribute still gets a write-only field
            self.fields["passwd"] = secret_field("passwd")
        self.fields["extra"] = extra

    def clean_extra(self) -> dict[str, str]:
        pairs = parse_pairs(self.cleaned_data.get("extra", ""))
        for key in pairs:
            if key in self.fields or key == "agent":
                raise forms.ValidationError(f"{key} has its own field")
            if is_secret(key):  # a secret typed here would be shown again if the form comes back with errors
                raise forms.ValidationError(f"{key} is a secret: give it in a password field")
        return pairs

    def param_names(self) -> list[str]:
        return [n for n in self.attribute_fields if n not in ("name", "extra")]

    def device_attrs(self) -> dict[str, str | None]:
        """Parameters to set: typed fields (blank = remove; a blank secret is left out = kept) and extra lines."""
        return {**self.attrs(self.param_names()), **self.cleaned_data["extra"]}


def device_initial(name: str, params: dict[str, str], agent: AgentForm) -> dict[str, Any]:
    """Initial values: never a secret's value (the field is write-only)."""
    known = {p.name for p in agent.params}
    initial: dict[str, Any] = {"name": name}
    initial.update({k: v for k, v in params.items() if k in known and not is_secret(k)})
    initial["extra"] = "\n".join(f"{k}={v}" for k, v in params.items() if k not in known and not is_secret(k))
    return initial


def masked(params: dict[str, str]) -> list[tuple[str, str]]:
    return [(k, SECRET_MASK if is_secret(k) else v) for k, v in params.items()]


# -- views ---------------------------------------------------------------------------------------------------
def _page(request: HttpRequest, cluster: Any, rights: frozenset[str], *, failed: FenceDeviceForm | None = None,
          failed_key: str = "", outcome: config_edit.Outcome | None = None) -> HttpResponse:
    current = config_edit.fetch_current(request, cluster)
    rows, version = [], None
    can_edit = "config" in rights
    if current is not None:
        version = current.version
        for i, device in enumerate(view(current.conf).fence_devices):
            form = None
            extra_names = ""
            if can_edit:
                agent = fence_metadata.agent_form(device.agent or "")
                form = FenceDeviceForm(initial=device_initial(device.name, device.params, agent), agent=agent,
                                       editing=True, version=version, prefix=f"f{i}")
                if failed is not None and failed_key == f"edit:{device.name}":
                    form = failed
                known = {p.name for p in agent.params}
                extra_names = " ".join(k for k in device.params if k not in known and not is_secret(k))
            rows.append({"device": device, "params": masked(device.params), "form": form,
                         "extra_names": extra_names})
    add_agent = request.GET.get("agent") or (failed.agent.agent if failed is not None and failed_key == "add" else "")
    add_form = None
    if can_edit and version is not None and fence_metadata.valid_agent_name(add_agent):
        add_form = failed if failed is not None and failed_key == "add" else FenceDeviceForm(
            agent=fence_metadata.agent_form(add_agent), version=version)
    return config_edit.render_page(
        request, cluster, rights, "fence", "console/fence.html", outcome, current=current, version=version, rows=rows,
        add_form=add_form, add_agent=add_agent, agents=fence_metadata.installed_agents() if can_edit else [])


def _bad(request: HttpRequest, cluster: Any, rights: frozenset[str], why: str) -> HttpResponse:
    return _page(request, cluster, rights, outcome=config_edit.Outcome(error=why, status=400))


def _post(request: HttpRequest, cluster: Any, rights: frozenset[str]) -> HttpResponse:
    op = request.POST.get("op", "")
    if op == "delete":
        form = ConfigForm(request.POST)
        name = request.POST.get("name", "")
        if not form.is_valid() or not name:
            return _bad(request, cluster, rights, "a deletion needs the device's name and base version")
        outcome = config_edit.run_change(request, cluster, form, delete_device(name), action="fence_device.delete",
                                         target=name)
        if outcome.ok:
            return config_edit.done(request, cluster, "fence", outcome, f"removing fence device {name}")
        return _page(request, cluster, rights, outcome=outcome)
    if op not in ("add", "edit"):
        return _bad(request, cluster, rights, f"unknown op {op!r}")
    agent_name = request.POST.get("agent", "")
    if not fence_metadata.valid_agent_name(agent_name):
        return _bad(request, cluster, rights, f"{agent_name!r} is not a fence agent name (fence_<name>)")
    prefix = request.POST.get("prefix") or None
    form = FenceDeviceForm(request.POST, agent=fence_metadata.agent_form(agent_name), editing=op == "edit",
                           prefix=prefix)
    lead = prefix + "-" if prefix else ""
    failed_key = "add" if op == "add" else f"edit:{request.POST.get(lead + 'name', '')}"
    if not form.is_valid():
        return _page(request, cluster, rights, failed=form, failed_key=failed_key,
                     outcome=config_edit.Outcome(error="the form has errors", status=400))
    name = form.cleaned_data["name"]
    params = form.device_attrs()
    if op == "add":
        fn = add_device(name, agent_name, params)
    else:
        shown = request.POST.get(lead + "extra_names", "").split()
        fn = update_device(name, params, [k for k in shown if k not in params])
    # The audit detail names the parameters, never their values (secrets).
    outcome = config_edit.run_change(request, cluster, form, fn, action=f"fence_device.{op}", target=name,
                                     detail={"agent": agent_name, "params": sorted(params)})
    if outcome.ok:
        verb = "adding" if op == "add" else "changing"
        return config_edit.done(request, cluster, "fence", outcome, f"{verb} fence device {name}")
    return _page(request, cluster, rights, failed=None if outcome.conflict else form, failed_key=failed_key,
                 outcome=outcome)


tab = config_edit.config_tab(_page, _post)

urlpatterns = [
    path("clusters/<int:pk>/fence/", tab, name="fence"),
]
