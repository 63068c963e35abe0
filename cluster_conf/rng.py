"""Our own RelaxNG schema for cluster.conf, generated from the vocabulary tables in `cluster_conf.schema`.

Design (see stack-notes §4):
- Children are accepted in any order with `zeroOrMore`/`choice`, never `<interleave>`: real files order sections
  freely, and libxml2's errors under interleave do not say what is wrong. Cardinality ("at most one <cman>") is
  therefore checked in Python (SECTION_DUPLICATE).
- Required attributes and the value types of known attributes (integer ranges, 0/1, yes/no, time values,
  choices) are enforced here.
- Whatever the library does not know is allowed: unknown attributes on every element, unknown elements in every
  place (their content is not looked at). Known elements in the wrong place are rejected.
- fencedevice and fence `device` take any attribute (agent parameters); resource elements take every parameter
  of their type, the special `__*` attributes and `ref=`. Unknown resource types are allowed wherever a resource
  is, and may hold resources themselves.

The value patterns below are written so that XSD regular expressions (libxml2) and Python's `re.fullmatch`
give the same answer; `cluster_conf.structure` checks the same rules in Python to report every violation with a
precise message (libxml2 stops at the first failure in a list of siblings and often reports no line).

`schema_text()` is the schema as text (`ccs_config_validate --print-schema` can write it for `xmllint --relaxng`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from xml.sax.saxutils import escape, quoteattr

from lxml import etree

from cluster_conf.document import ClusterConf
from cluster_conf.reports import Report, error
from cluster_conf.schema import ELEMENTS, RESOURCE_TYPES, SPECIAL_RESOURCE_ATTRS, Attr, ElementSpec, Param

RNG_NS = "http://relaxng.org/ns/structure/1.0"
XSD_TYPES = "http://www.w3.org/2001/XMLSchema-datatypes"

# Element names with a meaning in the format; anything else is "unknown" (allowed, reported as a warning).
KNOWN_ELEMENTS: frozenset[str] = frozenset(ELEMENTS) | frozenset(RESOURCE_TYPES)

_NO_BLANK = "[^ \t\n\r]"
# Value patterns valid both as XSD regular expressions (implicitly anchored) and for Python's re.fullmatch.
# Integers are capped at 18 digits: libxml2 refuses larger xsd:integer values, so Python must as well.
TYPE_PATTERNS: dict[str, str | None] = {
    "string": None,
    "name": f"{_NO_BLANK}([^\n\r]*{_NO_BLANK})?",
    "int": "-?[0-9]{1,18}",
    "uint": "[0-9]{1,18}",
    "posint": "[0-9]{1,18}",
    "port": "[0-9]{1,5}",
    "bool": "[01]",
    "yesno": "0|1|[yY][eE][sS]|[nN][oO]|[oO][nN]|[oO][fF][fF]|[tT][rR][uU][eE]|[fF][aA][lL][sS][eE]",
    "time": "[0-9]{1,18}[smhdwSMHDW]?",
}
NUMERIC_TYPES = frozenset({"int", "uint", "posint", "port"})
_TYPE_BOUNDS: dict[str, tuple[int | None, int | None]] = {"posint": (1, None), "port": (None, 65535)}


@dataclass(frozen=True, slots=True)
class ValueRule:
    """What a value must look like: one of `choices`, or match `pattern` (and lie in [minimum, maximum])."""

    type: str
    pattern: str | None = None
    minimum: int | None = None
    maximum: int | None = None
    choices: tuple[str, ...] = ()

    @property
    def checks_anything(self) -> bool:
        return bool(self.choices) or self.pattern is not None

    def accepts(self, value: str) -> bool:
        if self.choices:
            return value in self.choices
        if self.pattern is None:
            return True
        if _compiled(self.pattern).fullmatch(value) is None:
            return False
        if self.minimum is not None or self.maximum is not None:  # the pattern guarantees an integer here
            number = int(value)
            if self.minimum is not None and number < self.minimum:
                return False
            if self.maximum is not None and number > self.maximum:
                return False
        return True

    def describe(self) -> str:
        """What a valid value looks like, for messages: `an integer from 0 to 255`, `one of: a, b`."""
        if self.choices:
            return "one of: " + ", ".join(self.choices)
        if self.type in NUMERIC_TYPES:
            lo, hi = self.minimum, self.maximum
            if lo is not None and hi is not None:
                return f"an integer from {lo} to {hi}"
            if lo is not None:
                return f"an integer of at least {lo}"
            if hi is not None:
                return f"an integer from {0 if self.type != 'int' else '-'} to {hi}".replace("from - to", "up to")
            return "a non-negative integer" if self.type != "int" else "an integer"
        return {
            "name": "a non-empty value without leading or trailing blanks",
            "bool": "0 or 1",
            "yesno": "yes/no, on/off, true/false or 1/0",
            "time": "a time: a number with an optional s, m, h, d or w suffix (e.g. 30, 10m, 2h)",
        }.get(self.type, f"a {self.type} value")


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def value_rule(spec: Attr | Param) -> ValueRule:
    """The rule for an element attribute (Attr) or a resource parameter (Param)."""
    if spec.choices:
        return ValueRule(spec.type, choices=spec.choices)
    pattern = TYPE_PATTERNS.get(spec.type)
    lo, hi = _TYPE_BOUNDS.get(spec.type, (None, None))
    if isinstance(spec, Attr):
        lo = spec.minimum if spec.minimum is not None else lo
        hi = spec.maximum if spec.maximum is not None else hi
    return ValueRule(spec.type, pattern, lo, hi)


# -- schema text -------------------------------------------------------------------------------------------
def _name(value: str) -> str:
    return quoteattr(value)


def _value_pattern(rule: ValueRule) -> str:
    if rule.choices:
        values = "".join(f'<value type="string">{escape(c)}</value>' for c in rule.choices)
        return f"<choice>{values}</choice>"
    if rule.pattern is None:
        return "<text/>"
    params = f'<param name="pattern">{escape(rule.pattern)}</param>'
    if rule.type in NUMERIC_TYPES:
        if rule.minimum is not None:
            params += f'<param name="minInclusive">{rule.minimum}</param>'
        if rule.maximum is not None:
            params += f'<param name="maxInclusive">{rule.maximum}</param>'
        return f'<data type="integer">{params}</data>'
    return f'<data type="string">{params}</data>'


def _constrained(spec: Attr | Param, required: bool) -> bool:
    """Whether the schema must name the attribute: an optional free-text one is covered by "any other"."""
    return required or value_rule(spec).checks_anything


def _attribute(spec: Attr | Param, required: bool) -> str:
    if not _constrained(spec, required):
        return ""
    pattern = f"<attribute name={_name(spec.name)}>{_value_pattern(value_rule(spec))}</attribute>"
    return pattern if required else f"<optional>{pattern}</optional>"


def _other_attributes(known: list[str]) -> str:
    """Any attribute not named in `known`: kept, reported as UNKNOWN_ATTRIBUTE (or accepted as agent params)."""
    if not known:
        return "<zeroOrMore><attribute><anyName/></attribute></zeroOrMore>"
    names = "".join(f"<name>{escape(n)}</name>" for n in known)
    return f"<zeroOrMore><attribute><anyName><except>{names}</except></anyName></attribute></zeroOrMore>"


def _choice_of(refs: list[str]) -> str:
    inner = "".join(f'<ref name="{r}"/>' for r in refs)
    if len(refs) > 1:
        inner = f"<choice>{inner}</choice>"
    return f"<zeroOrMore>{inner}</zeroOrMore>"


def _element_define(spec: ElementSpec) -> str:
    attrs = "".join(_attribute(a, a.required) for a in spec.attrs)
    attrs += _other_attributes([a.name for a in spec.attrs if _constrained(a, a.required)])
    if spec.any_children:
        content = '<zeroOrMore><choice><text/><ref name="any-element"/></choice></zeroOrMore>'
    elif spec.name == "resources":
        content = _choice_of([f"res.{t}" for t in RESOURCE_TYPES] + ["unknown-resource"])
    else:
        refs = [f"res.{c}" if c in RESOURCE_TYPES else f"el.{c}" for c in spec.children] + ["unknown"]
        content = _choice_of(refs)
        if spec.text:
            content = f"<mixed>{content}</mixed>"
    return f'<define name="el.{spec.name}"><element name={_name(spec.name)}>{attrs}{content}</element></define>'


def _resource_define(rtype_name: str) -> str:
    rtype = RESOURCE_TYPES[rtype_name]
    primary = rtype.primary
    named = [p for p in rtype.params if _constrained(p, p.required or p.name == primary)]
    # In the ref= branch every named parameter is optional (a reference needs none of them).
    as_ref = '<attribute name="ref"/>' + "".join(
        f"<optional><attribute name={_name(p.name)}>{_value_pattern(value_rule(p))}</attribute></optional>"
        for p in named
    )
    as_definition = "".join(_attribute(p, p.required or p.name == primary) for p in named)
    special = "".join(_attribute(a, False) for a in SPECIAL_RESOURCE_ATTRS)
    known = ["ref", *(p.name for p in named), *(a.name for a in SPECIAL_RESOURCE_ATTRS if _constrained(a, False))]
    attrs = f"<choice><group>{as_ref}</group><group>{as_definition}</group></choice>{special}"
    attrs += _other_attributes(known)
    return (
        f'<define name="res.{rtype_name}"><element name={_name(rtype_name)}>{attrs}'
        '<ref name="resource-children"/></element></define>'
    )


def _known_except() -> str:
    return "".join(f"<name>{escape(n)}</name>" for n in sorted(KNOWN_ELEMENTS))


@cache
def schema_text() -> str:
    """The RelaxNG schema (XML syntax) as text."""
    child_types = [f"res.{t}" for t, rt in RESOURCE_TYPES.items() if not rt.top_level]
    parts = [
        f'<?xml version="1.0" encoding="UTF-8"?>\n<grammar xmlns="{RNG_NS}" datatypeLibrary="{XSD_TYPES}">',
        "<!-- Generated by cluster_conf.rng from the tables in cluster_conf.schema; do not edit. -->",
        '<start><ref name="el.cluster"/></start>',
        *(_element_define(spec) for spec in ELEMENTS.values()),
        *(_resource_define(name) for name in RESOURCE_TYPES),
        '<define name="resource-children">'
        + _choice_of([*child_types, "el.action", "unknown-resource"])
        + "</define>",
        # Unknown elements: anything inside, never looked at.
        f'<define name="unknown"><element><anyName><except>{_known_except()}</except></anyName>'
        '<ref name="any-content"/></element></define>',
        # Unknown resource types: any attribute (agent parameters), and resources inside.
        f'<define name="unknown-resource"><element><anyName><except>{_known_except()}</except></anyName>'
        '<zeroOrMore><attribute><anyName/></attribute></zeroOrMore>'
        '<mixed><ref name="resource-children"/></mixed></element></define>',
        '<define name="any-element"><element><anyName/><ref name="any-content"/></element></define>',
        '<define name="any-content"><zeroOrMore><choice><attribute><anyName/></attribute><text/>'
        '<ref name="any-element"/></choice></zeroOrMore></define>',
        "</grammar>\n",
    ]
    return "\n".join(parts)


@cache
def schema() -> etree.RelaxNG:
    """The compiled schema (compiled once per process)."""
    return etree.RelaxNG(etree.fromstring(schema_text().encode("utf-8")))


def is_valid(conf: ClusterConf) -> bool:
    return bool(schema().validate(conf.tree))


# -- libxml2's error log as reports ------------------------------------------------------------------------
_ATTRS_FAILED = re.compile(r"Element (\S+) failed to validate attributes")
_INVALID_ATTR = re.compile(r"Invalid attribute (\S+) for element (\S+)")
_EXTRA = re.compile(r"Element (\S+) has extra content: (\S+)")
_NOISE = (re.compile(r"Expecting element \S+, got \S+"), re.compile(r"Expecting an element \S*, got nothing"))


@dataclass(frozen=True, slots=True)
class _Entry:
    line: int | None
    path: str | None
    message: str
    kind: str  # "attrs", "attr", "extra", "other"


def _classify(entries: list[tuple[int, str | None, str]]) -> list[_Entry]:
    out: list[_Entry] = []
    for index, (line, path, message) in enumerate(entries):
        message = message.strip()
        if any(p.fullmatch(message) for p in _NOISE):
            continue
        if m := _ATTRS_FAILED.fullmatch(message):
            tag = m.group(1)
            if not path:  # libxml2 gives no location here; the next entry about the same element has it
                line, path = _next_location(entries, index, tag)
            out.append(_Entry(line, path, f"<{tag}> has a missing or invalid attribute", "attrs"))
        elif m := _INVALID_ATTR.fullmatch(message):
            out.append(_Entry(line, path, f"<{m.group(2)}>: attribute {m.group(1)} has an invalid value", "attr"))
        elif m := _EXTRA.fullmatch(message):
            parent, child = m.groups()
            out.append(_Entry(line, path, f"<{child}> is not allowed inside <{parent}>", "extra"))
        else:
            out.append(_Entry(line, path, message, "other"))
    return out


def _next_location(entries: list[tuple[int, str | None, str]], index: int, tag: str) -> tuple[int | None, str | None]:
    for line, path, _ in entries[index + 1 :]:
        if path and path.rsplit("/", 1)[-1].split("[")[0] == tag:
            return line, path
    return None, None


def validate_schema(conf: ClusterConf) -> list[Report]:
    """Validate against the RelaxNG schema alone and translate libxml2's log into SCHEMA_INVALID reports.

    libxml2 cascades one failure into "extra content" errors on every ancestor and stops at the first failing
    sibling; those follow-on errors are dropped, so the reports point at the actual cause.
    """
    rng = schema()
    if rng.validate(conf.tree):
        return []
    raw = [(e.line, e.path, e.message) for e in rng.error_log]
    entries = _classify(raw)
    specific = [e for e in entries if e.kind != "extra"]
    if not specific:
        extra = [e for e in entries if e.kind == "extra"]
        specific = sorted(extra, key=lambda e: len(e.path or ""), reverse=True)[:1]
    reports: list[Report] = []
    seen: set[tuple[int | None, str]] = set()
    for entry in specific:
        if (entry.line, entry.message) in seen:
            continue
        seen.add((entry.line, entry.message))
        reports.append(error("SCHEMA_INVALID", entry.message, line=entry.line or None, path=entry.path))
    if not reports:
        reports.append(error("SCHEMA_INVALID", "the document does not match the cluster.conf schema", line=1))
    return reports
