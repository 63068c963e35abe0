"""The Resources tab: the global resources (<rm><resources>) by type, and for users with the config right forms
to add, edit and delete them. A type's fields come from cluster_conf.schema.RESOURCE_TYPES (as
`ccs_tool addresource <type> param=value...`); attributes no parameter describes (an ocf agent's own, rgmanager's
__ specials, unknown ones) are edited as key=value lines. Removing a resource a service still references is
refused by validation, and the refusal is shown."""
from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.urls import path

from cluster_conf.model import view
from cluster_conf.schema import RESOURCE_TYPES, ResourceType, is_secret
from luci_web.clusters.edits.resources import GLOBAL_TYPES, add_resource, delete_resource, update_resource
from luci_web.console.forms import SECRET_MASK, ConfigForm, param_field, parse_pairs
from luci_web.console.views import config_edit


class ResourceForm(ConfigForm):
    """The parameters of one resource type, plus `extra` key=value lines for attributes none describes."""

    extra = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                            label="Other attributes (name=value, one a line)")

    def __init__(self, *args: Any, rtype: str, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rtype = rtype
        self.spec: ResourceType | None = RESOURCE_TYPES.get(rtype)
        extra = self.fields.pop("extra")
        for param in self.spec.params if self.spec else ():
            self.fields[param.name] = param_field(param)
            if editing and param.primary:
                self.fields[param.name].widget = forms.HiddenInput()
        self.fields["extra"] = extra

    @property
    def key_attr(self) -> str:
        return self.spec.primary if self.spec else "name"

    def clean_extra(self) -> dict[str, str]:
        pairs = parse_pairs(self.cleaned_data.get("extra", ""))
        for key in pairs:
            if key in self.fields:
                raise forms.ValidationError(f"{key} has its own field")
            if is_secret(key):  # a secret typed here would be shown again if the form comes back with errors
                raise forms.ValidationError(f"{key} is a secret: give it in a password field")
        return pairs

    def param_names(self) -> list[str]:
        return [n for n in self.attribute_fields if n != "extra"]

    def resource_attrs(self) -> dict[str, str | None]:
        """Attributes to set: the typed fields (blank = remove) and the extra lines."""
        return {**self.attrs(self.param_names()), **self.cleaned_data["extra"]}


def resource_initial(rtype: str, attrs: dict[str, str]) -> dict[str, Any]:
    spec = RESOURCE_TYPES.get(rtype)
    known = {p.name for p in spec.params} if spec else set()
    initial: dict[str, Any] = {k: v for k, v in attrs.items() if k in known and not is_secret(k)}
    initial["extra"] = "\n".join(f"{k}={v}" for k, v in attrs.items() if k not in known and not is_secret(k))
    return initial


def shown_attrs(attrs: dict[str, str]) -> list[tuple[str, str]]:
    return [(k, SECRET_MASK if is_secret(k) else v) for k, v in attrs.items()]


# -- views ---------------------------------------------------------------------------------------------------
def _page(request: HttpRequest, cluster: Any, rights: frozenset[str], *, failed: ResourceForm | None = None,
          failed_key: str = "", outcome: config_edit.Outcome | None = None) -> HttpResponse:
    current = config_edit.fetch_current(request, cluster)
    rows, version = [], None
    can_edit = "config" in rights
    if current is not None:
        version = current.version
        for i, res in enumerate(view(current.conf).resources):
            spec = RESOURCE_TYPES.get(res.type)
            key = res.attrs.get(spec.primary if spec else "name", "")
            form = None
            if can_edit:
                form = ResourceForm(initial=resource_initial(res.type, res.attrs), rtype=res.type, editing=True,
                                    version=version, prefix=f"r{i}")
                if failed is not None and failed_key == f"edit:{res.type}:{key}":
                    form = failed
            known = {p.name for p in spec.params} if spec else set()
            extra_names = " ".join(k for k in res.attrs if k not in known and not is_secret(k))
            rows.append({"type": res.type, "key": key, "attrs": shown_attrs(res.attrs), "form": form,
                         "known": spec is not None, "extra_names": extra_names})
    add_type = request.GET.get("type") or (failed.rtype if failed is not None and failed_key == "add" else "")
    add_form = None
    if can_edit and version is not None and add_type in GLOBAL_TYPES:
        add_form = failed if failed is not None and failed_key == "add" else ResourceForm(rtype=add_type,
                                                                                          version=version)
    return config_edit.render_page(request, cluster, rights, "resources", "console/resources.html", outcome,
                                   current=current, version=version, rows=rows, add_form=add_form,
                                   add_type=add_type, types=GLOBAL_TYPES)


def _bad(request: HttpRequest, cluster: Any, rights: frozenset[str], why: str) -> HttpResponse:
    return _page(request, cluster, rights, outcome=config_edit.Outcome(error=why, status=400))


def _post(request: HttpRequest, cluster: Any, rights: frozenset[str]) -> HttpResponse:
    op = request.POST.get("op", "")
    rtype = request.POST.get("type", "")
    if op == "delete":
        form = ConfigForm(request.POST)
        key = request.POST.get("key", "")
        if not form.is_valid() or not rtype or not key:
            return _bad(request, cluster, rights, "a deletion needs the resource's type, key and base version")
        outcome = config_edit.run_change(request, cluster, form, delete_resource(rtype, key),
                                         action="resource.delete", target=f"{rtype}:{key}")
        if outcome.ok:
            return config_edit.done(request, cluster, "resources", outcome, f"removing {rtype} resource {key}")
        return _page(request, cluster, rights, outcome=outcome)
    if op == "add" and rtype not in GLOBAL_TYPES:
        return _bad(request, cluster, rights, f"unknown resource type {rtype!r}")
    if op not in ("add", "edit"):
        return _bad(request, cluster, rights, f"unknown op {op!r}")
    prefix = request.POST.get("prefix") or None
    form = ResourceForm(request.POST, rtype=rtype, editing=op == "edit", prefix=prefix)
    old_key = request.POST.get("key", "")
    failed_key = "add" if op == "add" else f"edit:{rtype}:{old_key}"
    if not form.is_valid():
        return _page(request, cluster, rights, failed=form, failed_key=failed_key,
                     outcome=config_edit.Outcome(error="the form has errors", status=400))
    attrs = form.resource_attrs()
    if op == "add":
        key = attrs.get(form.key_attr) or ""
        fn = add_resource(rtype, attrs)
    else:
        key = old_key
        attrs.pop(form.key_attr, None)  # the primary key is not edited: add a new resource instead
        dropped = [k for k in _old_extra(request, prefix) if k not in attrs]
        fn = update_resource(rtype, key, attrs, dropped)
    outcome = config_edit.run_change(request, cluster, form, fn, action=f"resource.{op}", target=f"{rtype}:{key}")
    if outcome.ok:
        verb = "adding" if op == "add" else "changing"
        return config_edit.done(request, cluster, "resources", outcome, f"{verb} {rtype} resource {key}")
    return _page(request, cluster, rights, failed=None if outcome.conflict else form, failed_key=failed_key,
                 outcome=outcome)


def _old_extra(request: HttpRequest, prefix: str | None) -> list[str]:
    """The extra attribute names the edit form showed (a hidden list), so deleting a line removes it."""
    raw = request.POST.get((prefix + "-" if prefix else "") + "extra_names", "")
    return [n for n in raw.split() if n]


tab = config_edit.config_tab(_page, _post)

urlpatterns = [
    path("clusters/<int:pk>/resources/", tab, name="resources"),
]
