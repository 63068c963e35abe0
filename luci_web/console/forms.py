"""Form helpers shared by every configuration tab.

Every config form is a `ConfigForm`: it carries the version the page was built from in a hidden `base_version`
field (optimistic concurrency: configs.change refuses a change made on an older version), and it can place
validation reports from cluster_conf next to the fields they concern (`attach_reports`).

Field builders turn cluster_conf's own vocabulary (schema.Attr for sections, schema.Param for resource types,
fence_metadata.FenceParam for fence agents) into form fields, so the forms never restate the schema. A blank
field means "no attribute" (the attribute is removed; the default applies); a secret field is write-only: it is
never rendered with its value, and blank keeps the current value.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from django import forms

from cluster_conf.schema import Attr, Param, is_secret
from luci_web.clusters.values import xml_unsafe

BASE_VERSION = "base_version"
SECRET_MASK = "********"


def xml_safe(value: Any) -> None:
    """The one validator every config form field carries (and ConfigForm.clean applies to every value): refuse a
    control character or a lone surrogate, which cluster.conf cannot hold, next to the field."""
    problem = xml_unsafe(value) if isinstance(value, str) else ""
    if problem:
        raise forms.ValidationError(problem, code="xml_unsafe")


class ConfigForm(forms.Form):
    """A form that edits the configuration at version `base_version` (hidden, from the page)."""

    base_version = forms.IntegerField(widget=forms.HiddenInput, min_value=0)

    def __init__(self, *args: Any, version: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if version is not None:
            self.initial.setdefault(BASE_VERSION, version)

    @property
    def attribute_fields(self) -> list[str]:
        """The fields that are attributes of the element edited (all but base_version)."""
        return [name for name in self.fields if name != BASE_VERSION]

    def attrs(self, names: Iterable[str] | None = None) -> dict[str, str | None]:
        """cleaned_data as attributes: blank is None (remove). Secret fields left blank are omitted (kept)."""
        out: dict[str, str | None] = {}
        for name in names if names is not None else self.attribute_fields:
            value = self.cleaned_data.get(name)
            text = "" if value is None else str(value).strip()
            if isinstance(self.fields[name].widget, forms.PasswordInput) and not text:
                continue
            out[name] = text or None
        return out

    def clean(self) -> dict[str, Any]:
        """Every value, whatever field holds it (declared fields, builders, parsed key=value lines), must be text
        XML can hold: checked here once so no form reaches the edit with one (lxml would raise)."""
        data = super().clean()
        for name, value in list(data.items()):
            values = [*value.keys(), *value.values()] if isinstance(value, Mapping) else [value]
            for text in values:
                try:
                    xml_safe(text)
                except forms.ValidationError as exc:
                    self.add_error(name, exc)
                    break
        return data

    def attach_reports(self, reports: Iterable[Mapping[str, Any]], aliases: Mapping[str, str] | None = None
                       ) -> list[Mapping[str, Any]]:
        """Add each error report to the field it concerns; return the reports that matched no field.
        `aliases` maps attribute names to field names when they differ (e.g. {"priority": "priority_n2"})."""
        names = {name: name for name in self.attribute_fields}
        names.update(aliases or {})
        unmatched = []
        for report in reports:
            if report.get("severity") != "error":
                continue
            field = field_for(report, names)
            if field is None:
                unmatched.append(report)
            else:
                self.add_error(field, report_text(report))
        return unmatched


def field_for(report: Mapping[str, Any], names: Mapping[str, str]) -> str | None:
    """The field a report concerns: an attribute named in its path (`.../@attr`) or as a word in its message
    (longest attribute names first, so `post_fail_delay` wins over `delay`)."""
    path = report.get("path") or ""
    message = report.get("message") or ""
    for attr in sorted(names, key=len, reverse=True):
        if path.endswith(f"@{attr}") or re.search(rf"(?<![\w-]){re.escape(attr)}(?![\w-])", message):
            return names[attr]
    return None


def report_text(report: Mapping[str, Any]) -> str:
    hint = report.get("hint")
    return str(report.get("message", "")) + (f" ({hint})" if hint else "")


# -- field builders ----------------------------------------------------------------------------------------
def _choice_field(choices: Iterable[str], *, label: str, help_text: str = "", required: bool = False
                  ) -> forms.ChoiceField:
    options = [("", "(default)")] + [(c, c) for c in choices]
    return forms.ChoiceField(choices=options, required=required, label=label, help_text=help_text,
                             validators=[xml_safe])


def secret_field(label: str, help_text: str = "") -> forms.CharField:
    """Write-only: never rendered with a value; blank keeps the current value."""
    return forms.CharField(required=False, label=label, strip=False, validators=[xml_safe],
                           widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
                           help_text=help_text or "write-only: leave empty to keep the current value")


def attr_field(attr: Attr) -> forms.Field:
    """A field for a section attribute described by cluster_conf.schema (values are checked by validation)."""
    default = f"default {attr.default}" if attr.default is not None else ""
    help_text = "; ".join(x for x in (attr.doc, default) if x)
    if attr.secret or is_secret(attr.name):
        return secret_field(attr.name)
    if attr.choices:
        return _choice_field(attr.choices, label=attr.name, help_text=help_text)
    if attr.type == "bool":
        return _choice_field(("1", "0"), label=attr.name, help_text=help_text)
    return forms.CharField(required=False, label=attr.name, help_text=help_text, validators=[xml_safe])


def param_field(param: Param) -> forms.Field:
    """A field for a resource-agent parameter (cluster_conf.schema.RESOURCE_TYPES)."""
    flags = [w for w, on in (("primary key", param.primary), ("unique", param.unique),
                              ("inherited from " + (param.inherit or ""), bool(param.inherit))) if on]
    if param.default is not None:
        flags.append(f"default {param.default}")
    help_text = ", ".join(flags)
    if is_secret(param.name):
        return secret_field(param.name)
    if param.choices:
        return _choice_field(param.choices, label=param.name, help_text=help_text, required=param.required)
    return forms.CharField(required=param.required or param.primary, label=param.name, help_text=help_text,
                           validators=[xml_safe])


def parse_pairs(text: str) -> dict[str, str]:
    """`key=value` lines (blank lines ignored) for parameters no metadata describes."""
    pairs: dict[str, str] = {}
    for number, line in enumerate((text or "").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise forms.ValidationError(f"line {number}: expected name=value")
        pairs[key] = value.strip()
    return pairs


def flag(value: Any) -> bool:
    return bool(value) and str(value).lower() not in ("0", "false", "off", "no")
