"""The Configure tab (luci's RHEL6 Configure pages, rhcs-facts §6.1): General (name read-only, config version,
cman expected_votes/two_node, totem token, multicast address), Fence Daemon (post_fail/post_join delay), Quorum
Disk (device or label, interval, tko, votes, min_score, up to 10 heuristics) and Logging (global and per daemon).
Each section is its own form with its own base_version; every change goes through config_edit.run_change."""
from __future__ import annotations

from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.urls import path

from cluster_conf import ClusterConf
from cluster_conf.schema import ELEMENTS, LOGGING_KEYS
from luci_web.clusters.edits.settings import set_general, set_logging, set_logging_daemon, set_quorum_disk
from luci_web.console.forms import ConfigForm, attr_field
from luci_web.console.views import config_edit

MAX_HEURISTICS = 10
LOG_DAEMONS = ("corosync", "qdiskd", "groupd", "fenced", "dlm_controld", "gfs_controld", "rgmanager")
# General: (section, attribute) for each field; the field is named after the attribute.
GENERAL_FIELDS = (("cman", "expected_votes"), ("cman", "two_node"), ("totem", "token"),
                  ("fence_daemon", "post_fail_delay"), ("fence_daemon", "post_join_delay"))
QDISK_ATTRS = ("device", "label", "interval", "tko", "votes", "min_score")
HEURISTIC_ATTRS = ("program", "score", "interval", "tko")


def _spec_field(element: str, attr: str) -> forms.Field:
    spec = ELEMENTS[element].attr(attr)
    assert spec is not None, (element, attr)
    return attr_field(spec)


class GeneralForm(ConfigForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for section, attr in GENERAL_FIELDS:
            self.fields[attr] = _spec_field(section, attr)
        self.fields["multicast_addr"] = forms.CharField(
            required=False, label="multicast address", help_text="empty: cman's default, derived from the cluster id")

    def section_attrs(self) -> dict[str, dict[str, str | None]]:
        out: dict[str, dict[str, str | None]] = {}
        values = self.attrs([a for _, a in GENERAL_FIELDS])
        for section, attr in GENERAL_FIELDS:
            out.setdefault(section, {})[attr] = values[attr]
        return out


class QuorumDiskForm(ConfigForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for attr in QDISK_ATTRS:
            self.fields[attr] = _spec_field("quorumd", attr)
        for i in range(MAX_HEURISTICS):
            for attr in HEURISTIC_ATTRS:
                field = _spec_field("heuristic", attr)
                field.label = f"heuristic {i + 1} {attr}"
                field.help_text = ""
                self.fields[f"h{i}_{attr}"] = field

    def heuristic_rows(self) -> list[list[forms.BoundField]]:
        return [[self[f"h{i}_{a}"] for a in HEURISTIC_ATTRS] for i in range(MAX_HEURISTICS)]

    def heuristics(self) -> list[dict[str, str]]:
        rows = []
        for i in range(MAX_HEURISTICS):
            row = {a: (self.cleaned_data.get(f"h{i}_{a}") or "").strip() for a in HEURISTIC_ATTRS}
            if row["program"]:
                rows.append(row)
        return rows

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if (data.get("device") or "").strip() and (data.get("label") or "").strip():
            self.add_error("label", "give a device or a label, not both")
        programs = [h["program"] for h in self.heuristics()]
        if len(programs) != len(set(programs)):
            self.add_error(None, "two heuristics run the same program")
        return data


class LoggingForm(ConfigForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for attr in LOGGING_KEYS:
            self.fields[attr.name] = attr_field(attr)


def _qdisk_aliases() -> dict[str, str]:
    return {"heuristic": "h0_program", "heuristics": "h0_program"}


# -- views ---------------------------------------------------------------------------------------------------
def _initial(conf: ClusterConf) -> dict[str, dict[str, Any]]:
    def attrs_of(*names: str) -> dict[str, str]:
        element = conf.section(*names)
        return dict(element.attrib) if element is not None else {}

    general: dict[str, Any] = {}
    for section, attr in GENERAL_FIELDS:
        general[attr] = attrs_of(section).get(attr, "")
    cman = conf.section("cman")
    multicast = cman.find("multicast") if cman is not None else None
    general["multicast_addr"] = multicast.get("addr", "") if multicast is not None else ""
    qdisk: dict[str, Any] = {a: attrs_of("quorumd").get(a, "") for a in QDISK_ATTRS}
    quorumd = conf.section("quorumd")
    heuristics = [e for e in quorumd if e.tag == "heuristic"] if quorumd is not None else []
    for i, element in enumerate(heuristics[:MAX_HEURISTICS]):
        for attr in HEURISTIC_ATTRS:
            qdisk[f"h{i}_{attr}"] = element.get(attr, "")
    logging = conf.section("logging")
    daemons = {e.get("name"): dict(e.attrib) for e in logging if e.tag == "logging_daemon"} if logging is not None \
        else {}
    return {"general": general, "qdisk": qdisk, "logging": attrs_of("logging"), "daemons": daemons,
            "heuristic_count": {"n": len(heuristics)}}


FORMS = {"general": GeneralForm, "qdisk": QuorumDiskForm, "logging": LoggingForm}


def _page(request: HttpRequest, cluster: Any, rights: frozenset[str], *, failed: ConfigForm | None = None,
          failed_key: str = "", outcome: config_edit.Outcome | None = None) -> HttpResponse:
    current = config_edit.fetch_current(request, cluster)
    ctx: dict[str, Any] = {"current": current, "version": None, "forms": {}, "daemon_forms": []}
    if current is not None:
        conf, version = current.conf, current.version
        initial = _initial(conf)
        ctx.update(version=version, name=conf.name, initial=initial,
                   too_many_heuristics=initial["heuristic_count"]["n"] > MAX_HEURISTICS)
        if "config" in rights:
            for key, cls in FORMS.items():
                form = cls(initial=initial[key], version=version, prefix=key)
                ctx["forms"][key] = failed if failed is not None and failed_key == key else form
            for name in LOG_DAEMONS:
                key = f"daemon:{name}"
                form = LoggingForm(initial=initial["daemons"].get(name, {}), version=version, prefix=f"ld-{name}")
                ctx["daemon_forms"].append((name, failed if failed is not None and failed_key == key else form))
    return config_edit.render_page(request, cluster, rights, "configure", "console/configure.html", outcome, **ctx)


def _post(request: HttpRequest, cluster: Any, rights: frozenset[str]) -> HttpResponse:
    section = request.POST.get("section", "")
    aliases: dict[str, str] = {}
    if section in FORMS:
        form: ConfigForm = FORMS[section](request.POST, prefix=section)
    elif section.startswith("daemon:") and section[7:] in LOG_DAEMONS:
        form = LoggingForm(request.POST, prefix=f"ld-{section[7:]}")
    else:
        return _page(request, cluster, rights, outcome=config_edit.Outcome(error=f"unknown section {section!r}",
                                                                           status=400))
    if not form.is_valid():
        return _page(request, cluster, rights, failed=form, failed_key=section,
                     outcome=config_edit.Outcome(error="the form has errors", status=400))
    if isinstance(form, GeneralForm):
        multicast = (form.cleaned_data.get("multicast_addr") or "").strip() or None
        fn = set_general(form.section_attrs(), multicast)
        what = "the general settings"
    elif isinstance(form, QuorumDiskForm):
        fn = set_quorum_disk(form.attrs(QDISK_ATTRS), form.heuristics())
        aliases = _qdisk_aliases()
        what = "the quorum disk settings (they take effect when the cluster is restarted)"
    elif section == "logging":
        fn = set_logging(form.attrs())
        what = "the logging settings"
    else:
        fn = set_logging_daemon(section[7:], form.attrs())
        what = f"the logging settings of {section[7:]}"
    outcome = config_edit.run_change(request, cluster, form, fn, action=f"configure.{section.split(':')[0]}",
                                     target=section, aliases=aliases)
    if outcome.ok:
        return config_edit.done(request, cluster, "configure", outcome, what)
    return _page(request, cluster, rights, failed=None if outcome.conflict else form, failed_key=section,
                 outcome=outcome)


tab = config_edit.config_tab(_page, _post)

urlpatterns = [
    path("clusters/<int:pk>/configure/", tab, name="configure"),
]
