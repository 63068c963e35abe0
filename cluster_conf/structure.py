"""One pass over the document: the schema's rules checked in Python, plus an inventory for the semantic checks.

Why the schema rules are also checked here: libxml2's RelaxNG validator stops at the first failing element in a
list of siblings, cascades that failure into "extra content" errors on every ancestor, and reports a missing
attribute without a line. The rules come from the same tables as `cluster_conf.rng` (and the same value
patterns), so this pass reports every violation, each at its element, with a message that says what is wrong
and what is expected. `validation.validate` still runs the RelaxNG schema, and falls back to its (translated)
errors if it rejects something this pass accepted; tests keep the two in agreement.

Some schema violations have a well-known cause and get their own code instead of a SCHEMA_* one (a missing
config_version is VERSION_MISSING, a fencedevice without agent FENCEDEVICE_NO_AGENT, ...): see ATTRIBUTE_CODES.

The walk is linear: one visit per element, dictionary look-ups only, element paths computed only for reports.
"""
from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from lxml import etree

from cluster_conf.codes import report
from cluster_conf.document import ClusterConf
from cluster_conf.reports import Report
from cluster_conf.rng import KNOWN_ELEMENTS, ValueRule, value_rule
from cluster_conf.schema import (
    ELEMENTS,
    LEGACY_ELEMENTS,
    OPEN_PARAM_TYPES,
    RESOURCE_TYPES,
    SPECIAL_RESOURCE_ATTRS,
    ResourceType,
    is_secret,
)

Element = etree._Element

# (element, attribute, "missing" | "invalid") -> the code used instead of SCHEMA_ATTRIBUTE_MISSING/VALUE_INVALID.
ATTRIBUTE_CODES: dict[tuple[str, str, str], str] = {
    ("cluster", "config_version", "missing"): "VERSION_MISSING",
    ("cluster", "config_version", "invalid"): "VERSION_NOT_INTEGER",
    ("cluster", "name", "missing"): "CLUSTER_NAME_MISSING",
    ("cluster", "name", "invalid"): "CLUSTER_NAME_MISSING",
    ("clusternode", "votes", "invalid"): "NODE_VOTES_INVALID",
    ("fencedevice", "agent", "missing"): "FENCEDEVICE_NO_AGENT",
    ("fencedevice", "agent", "invalid"): "FENCEDEVICE_NO_AGENT",
    ("failoverdomainnode", "priority", "invalid"): "DOMAIN_PRIORITY_INVALID",
    ("heuristic", "program", "missing"): "HEURISTIC_NO_PROGRAM",
    ("rm", "status_poll_interval", "invalid"): "RM_POLL_INTERVAL_INVALID",
}
_ATTRIBUTE_HINTS: dict[str, str] = {
    "VERSION_MISSING": 'add config_version="1" to <cluster>; raise it with every change',
    "VERSION_NOT_INTEGER": "config_version must be a whole number such as 42; raise it with every change",
    "CLUSTER_NAME_MISSING": "add name=\"...\" to <cluster> (at most 15 characters)",
    "NODE_VOTES_INVALID": "votes is a whole number from 0 to 255; 1 is usual",
    "FENCEDEVICE_NO_AGENT": 'add agent="fence_..." naming the fence agent executable',
    "DOMAIN_PRIORITY_INVALID": "use 1 (most preferred) to 100",
    "HEURISTIC_NO_PROGRAM": 'add program="..." (a command whose exit status 0 means healthy)',
    "RM_POLL_INTERVAL_INVALID": "use a number of seconds of at least 1 (default 10)",
    "TIME_VALUE_INVALID": "write seconds, or a number with s, m, h, d or w, e.g. 10m",
}

# Sections that may appear once under their parent (the schema accepts repeats; cman and rgmanager would read
# only one of them).
SINGLE_CHILDREN: dict[str, frozenset[str]] = {
    "cluster": frozenset(ELEMENTS["cluster"].children),
    "rm": frozenset({"failoverdomains", "events", "resources", "resource-defaults"}),
    "cman": frozenset({"multicast"}),
    "clusternode": frozenset({"fence", "unfence"}),
}

# Pre-release names that are only legacy where they are found: `<group>` as a resource group under <rm>.
CONTEXT_LEGACY: dict[tuple[str, str], str] = {("rm", "group"): "service", ("resources", "group"): "service"}

_PRIMARY = {name: rtype.primary for name, rtype in RESOURCE_TYPES.items()}
_CHILDREN: dict[str, frozenset[str]] = {name: frozenset(spec.children) for name, spec in ELEMENTS.items()}
_BLANKS = " \t\r\n"


# What _check_attributes does for one attribute-name signature: (missing required names with "on a resource
# definition" flags, steps in attribute order as (name, rule or None for unknown, verdict memo), has specials).
_Plan = tuple[
    tuple[tuple[str, bool], ...], tuple[tuple[str, "ValueRule | None", dict[str, bool]], ...], bool
]


@dataclass(frozen=True, slots=True)
class _Rules:
    """The attribute rules of one element kind: known attributes with their value rules, required ones."""

    known: dict[str, ValueRule]
    required: tuple[str, ...]
    required_on_definition: tuple[str, ...] = ()  # resources: primary key and R params, unless ref= is used
    open: bool = False  # unknown attributes are agent parameters, not worth a warning
    checked: dict[str, ValueRule] = field(default_factory=dict)  # the known attributes whose value is checked

    def __post_init__(self) -> None:
        self.checked.update({name: rule for name, rule in self.known.items() if rule.checks_anything})


def _element_rules() -> dict[str, _Rules]:
    return {
        name: _Rules(
            {a.name: value_rule(a) for a in spec.attrs},
            tuple(a.name for a in spec.attrs if a.required),
            open=spec.open_attrs,
        )
        for name, spec in ELEMENTS.items()
    }


def _resource_rules(rtype: ResourceType) -> _Rules:
    known = {p.name: value_rule(p) for p in rtype.params}
    known.update({a.name: value_rule(a) for a in SPECIAL_RESOURCE_ATTRS})
    known["ref"] = ValueRule("string")
    required = tuple(p.name for p in rtype.params if p.required or p.name == rtype.primary)
    return _Rules(known, (), required, open=rtype.name in OPEN_PARAM_TYPES)


ELEMENT_RULES = _element_rules()
RESOURCE_RULES = {name: _resource_rules(rt) for name, rt in RESOURCE_TYPES.items()}


def _parents_of() -> dict[str, list[str]]:
    where: dict[str, list[str]] = {}
    for spec in ELEMENTS.values():
        for child in spec.children:
            where.setdefault(child, []).append(spec.name)
    for name, rt in RESOURCE_TYPES.items():
        where.setdefault(name, []).extend(["rm", "resources"] if rt.top_level else ["resources", "a service"])
    where.setdefault("action", []).append("a resource")
    return where


PARENTS_OF = _parents_of()


# -- helpers for messages ----------------------------------------------------------------------------------
def shown(value: str, limit: int = 60) -> str:
    """A value quoted for a one-line message: control characters escaped, long values cut."""
    text = value if len(value) <= limit else value[: limit - 1] + "…"
    return json.dumps(text, ensure_ascii=False)


def label(el: Element) -> str:
    """`clusternode "n1"`, `ip "10.0.0.1"`, `service "web"`, `cman`: how messages name an element."""
    tag = el.tag
    rtype = RESOURCE_TYPES.get(tag) if isinstance(tag, str) else None
    key = el.get("ref") or el.get(rtype.primary if rtype else "name")
    return f"{tag} {shown(key)}" if key else str(tag)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f'did you mean "{match[0]}"?' if match else None


def is_blank(text: str | None) -> bool:
    return not text or not text.strip(_BLANKS)


# -- the inventory -----------------------------------------------------------------------------------------
@dataclass(slots=True)
class ResourceUse:
    """One resource element: a global definition, a `ref=` use, or an inline definition in a service tree."""

    el: Element
    type: str
    rtype: ResourceType | None
    is_ref: bool
    is_global: bool  # directly under <rm><resources>
    service: Element | None  # the top-level service/vm it belongs to (None for global definitions)
    parent: ResourceUse | None

    key: str | None  # the ref= value for a reference, else the primary-key value


# Which Inventory list collects the elements of each tag.
_INVENTORY_LISTS = {
    "clusternode": "nodes",
    "fencedevice": "fence_devices",
    "method": "methods",
    "device": "device_uses",
    "failoverdomain": "domains",
    "failoverdomainnode": "domain_nodes",
    "heuristic": "heuristics",
}


@dataclass(slots=True)
class Inventory:
    """What the semantic checks and lint need, collected in the same pass."""

    root: Element
    sections: dict[str, list[Element]] = field(default_factory=dict)  # known children of <cluster>
    rm_sections: dict[str, list[Element]] = field(default_factory=dict)  # known sections of <rm>
    nodes: list[Element] = field(default_factory=list)
    fence_devices: list[Element] = field(default_factory=list)
    methods: list[Element] = field(default_factory=list)
    device_uses: list[Element] = field(default_factory=list)  # <device> under a method or <unfence>
    domains: list[Element] = field(default_factory=list)
    domain_nodes: list[Element] = field(default_factory=list)
    heuristics: list[Element] = field(default_factory=list)
    services: list[Element] = field(default_factory=list)  # <service>/<vm> directly under <rm>
    resources: list[ResourceUse] = field(default_factory=list)
    special: list[Element] = field(default_factory=list)  # resources with a special `__*` attribute

    def first(self, tag: str) -> Element | None:
        found = self.sections.get(tag)
        return found[0] if found else None

    def first_rm(self, tag: str) -> Element | None:
        found = self.rm_sections.get(tag)
        return found[0] if found else None


# -- the walk ----------------------------------------------------------------------------------------------
class StructureCheck:
    """Visit every element once; collect reports, the inventory, and whether the schema would reject it."""

    def __init__(self, conf: ClusterConf) -> None:
        self.conf = conf
        self.reports: list[Report] = []
        self.inventory = Inventory(conf.root)
        self.schema_failed = False  # True when the RelaxNG schema rejects something reported here
        self._verdicts: dict[int, dict[str, bool]] = {}  # id(ValueRule) -> value -> accepted
        self._plans: dict[tuple[int, bool, tuple[str, ...]], _Plan] = {}

    def run(self) -> StructureCheck:
        self._visit_known(self.conf.root, None)
        return self

    # reporting ---------------------------------------------------------------------------------------------
    def _report(self, code: str, message: str, el: Element, hint: str | None = None, *, schema: bool) -> None:
        self.reports.append(report(code, message, line=el.sourceline, path=self.conf.path_of(el), hint=hint))
        if schema:
            self.schema_failed = True

    # attributes --------------------------------------------------------------------------------------------
    def _check_attributes(self, el: Element, rules: _Rules, resource: bool) -> None:
        """Required attributes, value rules, unknown attributes.

        Elements of one kind nearly always carry the same attribute names, so what to check is worked out
        once per (kind, names) and reused: per element only the values of checked attributes are looked at,
        and each distinct value of a rule is judged once.
        """
        names = tuple(el.keys())  # building a dict of every element's attributes would cost more than all else
        plan_key = (id(rules), resource, names)
        plan = self._plans.get(plan_key)
        if plan is None:
            plan = self._plans[plan_key] = self._plan(names, rules, resource)
        missing, steps, special = plan
        for name, on_definition in missing:
            self._missing(el, name, resource=on_definition)
        for name, rule, memo in steps:
            if rule is None:
                self._unknown_attribute(el, name, rules.known)
                continue
            value = el.get(name)
            ok = memo.get(value)
            if ok is None:
                ok = memo[value] = rule.accepts(value)
            if not ok:
                self._invalid(el, name, value, rule)
        if special:
            self.inventory.special.append(el)

    def _plan(self, names: tuple[str, ...], rules: _Rules, resource: bool) -> _Plan:
        present = set(names)
        missing = [(name, False) for name in rules.required if name not in present]
        if resource and "ref" not in present:
            missing += [(name, True) for name in rules.required_on_definition if name not in present]
        steps: list[tuple[str, ValueRule | None, dict[str, bool]]] = []
        for name in names:
            rule = rules.checked.get(name)
            if rule is not None:
                steps.append((name, rule, self._verdicts.setdefault(id(rule), {})))
            elif name not in rules.known and not rules.open:
                steps.append((name, None, {}))
        special = resource and any(name.startswith("__") for name in names)
        return tuple(missing), tuple(steps), special

    def _missing(self, el: Element, name: str, *, resource: bool) -> None:
        tag = str(el.tag)
        if resource:
            code = "RESOURCE_PARAM_MISSING"
            rtype = RESOURCE_TYPES[tag]
            what = "primary key" if name == rtype.primary else "required parameter"
            message = f"{label(el)}: the {what} {name} is missing"
            hint = f"add {name}=\"...\", or refer to a global resource with ref=\"...\""
        else:
            code = ATTRIBUTE_CODES.get((tag, name, "missing"), "SCHEMA_ATTRIBUTE_MISSING")
            message = f"{label(el)}: required attribute {name} is missing"
            hint = _ATTRIBUTE_HINTS.get(code, f'add {name}="..."')
        self._report(code, message, el, hint, schema=True)

    def _invalid(self, el: Element, name: str, value: str, rule: ValueRule) -> None:
        tag = str(el.tag)
        default = "TIME_VALUE_INVALID" if rule.type == "time" and not rule.choices else "SCHEMA_VALUE_INVALID"
        code = ATTRIBUTE_CODES.get((tag, name, "invalid"), default)
        given = "an invalid value" if is_secret(name) else shown(value)
        message = f"{label(el)}: {name} is {given}; expected {rule.describe()}"
        hint = _ATTRIBUTE_HINTS.get(code)
        if "{{" in value or "{%" in value:
            hint = "this looks like an unrendered template (Jinja2/Ansible): render it before installing the file"
        self._report(code, message, el, hint, schema=True)

    def _unknown_attribute(self, el: Element, name: str, known: Iterable[str]) -> None:
        self._report(
            "UNKNOWN_ATTRIBUTE",
            f"{label(el)}: unknown attribute {name} (kept as is)",
            el,
            did_you_mean(name, known),
            schema=False,
        )

    def _text_not_allowed(self, el: Element) -> None:
        self._report(
                "SCHEMA_TEXT_NOT_ALLOWED",
                f"{label(el)}: text inside <{el.tag}>, which takes only attributes and elements",
                el,
                "remove the text, or turn it into an XML comment",
                schema=True,
            )

    # elements ----------------------------------------------------------------------------------------------
    def _visit_known(self, el: Element, parent_tag: str | None) -> None:
        tag = str(el.tag)
        spec = ELEMENTS[tag]
        self._check_attributes(el, ELEMENT_RULES[tag], False)
        self._record(el, tag, parent_tag)
        if spec.any_children:
            return  # passed through unchanged: no rules for its content
        stray_text = not spec.text and not is_blank(el.text)
        singles = SINGLE_CHILDREN.get(tag, frozenset())
        children = _CHILDREN[tag]
        seen: dict[str, Element] = {}
        check_tails = not spec.text
        for child in el:
            if check_tails and not stray_text:
                tail = child.tail
                stray_text = bool(tail and tail.strip(_BLANKS))
            ctag = child.tag
            if not isinstance(ctag, str):
                continue  # comment or processing instruction
            if ctag in singles:
                if ctag in seen:
                    self._duplicate_section(child, seen[ctag])
                else:
                    seen[ctag] = child
            if tag == "resources":
                self._visit_resource_slot(child, None, None, in_resources=True)
            elif ctag in children:
                if ctag in RESOURCE_TYPES:  # service and vm under <rm>
                    self._visit_resource(child, RESOURCE_TYPES[ctag], None, None, is_global=False)
                else:
                    self._visit_known(child, tag)
            else:
                self._visit_stranger(child, tag, spec.children)
        if stray_text:
            self._text_not_allowed(el)

    def _duplicate_section(self, el: Element, first: Element) -> None:
        self._report(
            "SECTION_DUPLICATE",
            f"<{el.tag}> appears again under <{first.getparent().tag}> (first at line {first.sourceline})",
            el,
            f"merge the two <{el.tag}> sections into one",
            schema=False,
        )

    def _record(self, el: Element, tag: str, parent_tag: str | None) -> None:
        inv = self.inventory
        if parent_tag == "cluster":
            inv.sections.setdefault(tag, []).append(el)
        elif parent_tag == "rm":
            inv.rm_sections.setdefault(tag, []).append(el)
        collection = _INVENTORY_LISTS.get(tag)
        if collection is not None:
            getattr(inv, collection).append(el)

    def _visit_stranger(self, el: Element, parent_tag: str, allowed: Iterable[str]) -> None:
        """An element that is not one of the children the parent's spec names."""
        tag = str(el.tag)
        modern = CONTEXT_LEGACY.get((parent_tag, tag)) or LEGACY_ELEMENTS.get(tag)
        if modern is not None:
            self._legacy(el, modern, schema=tag in KNOWN_ELEMENTS)
        elif tag in KNOWN_ELEMENTS:
            self._misplaced(el, parent_tag)
        else:
            self._report(
                "UNKNOWN_ELEMENT",
                f"unknown element <{tag}> inside <{parent_tag}> (kept as is)",
                el,
                did_you_mean(tag, allowed),
                schema=False,
            )

    def _legacy(self, el: Element, modern: str, *, schema: bool) -> None:
        self._report(
            "LEGACY_ELEMENT",
            f"<{el.tag}> is a pre-release name that no released cman or rgmanager reads",
            el,
            f"rename <{el.tag}> to <{modern}>",
            schema=schema,
        )
        # Legacy containers (<nodes>, <fence_devices>) hold more legacy names; report those, nothing else.
        for child in el:
            if isinstance(child.tag, str) and child.tag in LEGACY_ELEMENTS:
                self._legacy(child, LEGACY_ELEMENTS[child.tag], schema=False)

    def _misplaced(self, el: Element, parent_tag: str) -> None:
        tag = str(el.tag)
        places = PARENTS_OF.get(tag, [])
        hint = f"<{tag}> belongs inside " + " or ".join(f"<{p}>" if " " not in p else p for p in places)
        if tag in RESOURCE_TYPES and RESOURCE_TYPES[tag].top_level and parent_tag not in ("rm", "resources"):
            self._report(
                "SERVICE_NOT_TOP_LEVEL",
                f"{label(el)} is nested inside <{parent_tag}>; a {tag} must be directly under <rm>",
                el,
                f"move the <{tag}> directly under <rm>, or express the relation with depend=",
                schema=True,
            )
            return
        self._report(
            "SCHEMA_ELEMENT_MISPLACED",
            f"<{tag}> is not allowed inside <{parent_tag}>",
            el,
            hint if places else None,
            schema=True,
        )

    # resources ---------------------------------------------------------------------------------------------
    def _visit_resource_slot(
        self, el: Element, parent: ResourceUse | None, service: Element | None, *, in_resources: bool
    ) -> None:
        """A child of <resources>, of a service/vm, or of another resource."""
        tag = el.tag
        if not isinstance(tag, str):
            return
        rtype = RESOURCE_TYPES.get(tag)
        if rtype is not None and (in_resources or not rtype.top_level):
            self._visit_resource(el, rtype, parent, service, is_global=in_resources)
            return
        parent_tag = "resources" if in_resources else str(parent.el.tag if parent else "rm")
        if tag == "action" and parent is not None:
            self._visit_known(el, parent_tag)
            return
        modern = CONTEXT_LEGACY.get((parent_tag, tag)) or LEGACY_ELEMENTS.get(tag)
        if modern is not None:
            self._legacy(el, modern, schema=tag in KNOWN_ELEMENTS)
        elif tag in KNOWN_ELEMENTS:
            self._misplaced(el, parent_tag)
            if rtype is not None:  # a nested service/vm: still check what is inside it
                self._visit_resource(el, rtype, parent, service, is_global=False, report_only=True)
        else:
            self._unknown_resource(el, parent, service, in_resources=in_resources)

    def _visit_resource(
        self,
        el: Element,
        rtype: ResourceType,
        parent: ResourceUse | None,
        service: Element | None,
        *,
        is_global: bool,
        report_only: bool = False,
    ) -> None:
        ref = el.get("ref")
        key = ref if ref is not None else el.get(_PRIMARY[rtype.name])
        use = ResourceUse(el, rtype.name, rtype, ref is not None, is_global, service, parent, key)
        if not report_only:
            self.inventory.resources.append(use)
            if rtype.top_level and not is_global and parent is None:
                self.inventory.services.append(el)
                service = el
        self._check_attributes(el, RESOURCE_RULES[rtype.name], True)
        text = el.text
        stray_text = bool(text and text.strip(_BLANKS))
        self._visit_children(el, use, service, stray_text)

    def _visit_nested(self, el: Element, rtype: ResourceType, parent: ResourceUse, service: Element | None) -> None:
        """The common case, kept lean (it runs for most elements of a big file): a known resource type nested
        in a service tree. Same checks as _visit_resource, without its general cases."""
        ref = el.get("ref")
        name = rtype.name
        key = ref if ref is not None else el.get(_PRIMARY[name])
        use = ResourceUse(el, name, rtype, ref is not None, False, service, parent, key)
        self.inventory.resources.append(use)
        self._check_attributes(el, RESOURCE_RULES[name], True)
        text = el.text
        self._visit_children(el, use, service, bool(text and text.strip(_BLANKS)))

    def _visit_children(self, el: Element, use: ResourceUse, service: Element | None, stray_text: bool) -> None:
        visit_nested, types = self._visit_nested, RESOURCE_TYPES
        for child in el:
            if not stray_text:
                tail = child.tail
                stray_text = bool(tail and tail.strip(_BLANKS))
            child_type = types.get(child.tag)  # comments have a non-str tag: not a resource type either
            if child_type is not None and not child_type.top_level:
                visit_nested(child, child_type, use, service)
            else:
                self._visit_resource_slot(child, use, service, in_resources=False)
        if stray_text:
            self._text_not_allowed(el)

    def _unknown_resource(
        self, el: Element, parent: ResourceUse | None, service: Element | None, *, in_resources: bool
    ) -> None:
        tag = str(el.tag)
        where = "<resources>" if in_resources else f"<{parent.el.tag}>" if parent else "<rm>"
        hint = did_you_mean(tag, RESOURCE_TYPES) or f"install an agent {tag}.sh in /usr/share/cluster, or fix the name"
        self._report(
            "UNKNOWN_RESOURCE_TYPE",
            f"unknown resource type <{tag}> in {where}: kept as is; rgmanager needs an agent named {tag}",
            el,
            hint,
            schema=False,
        )
        ref = el.get("ref")
        key = ref or el.get("name")
        use = ResourceUse(el, tag, None, ref is not None, in_resources, service, parent, key)
        self.inventory.resources.append(use)
        for child in el:
            self._visit_resource_slot(child, use, service, in_resources=False)


def check(conf: ClusterConf) -> StructureCheck:
    """Run the structural pass over `conf`."""
    return StructureCheck(conf).run()
