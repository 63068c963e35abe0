"""The code registry, the sources and docs/config-reports.md list the same report codes.

A code is "emitted" when a source file in cluster_conf/ passes it as a string literal to error(), warning(),
report(), Report() or one of the structure pass's helpers, or names it in structure.ATTRIBUTE_CODES. To add a
code: register it in cluster_conf/codes.py, emit it, and document it under a `### CODE` heading.
"""
from __future__ import annotations

import re
from pathlib import Path

from cluster_conf.codes import CODES

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cluster_conf"
DOCS = ROOT / "docs" / "config-reports.md"

CODE = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"
# A code literal as the first argument of an emitting call (possibly on the next line); edit.py's
# `_fail(conf, "CODE", ...)` passes it second.
EMITTING_CALL = re.compile(
    r"\b(?:(?:error|warning|report|Report|_report|emit|warn)\(|_fail\(conf,)\s*[\"'](" + CODE + r")[\"']"
)
# `return "CODE", message, line` (xmlsafe maps libxml2 messages to codes this way).
RETURNED = re.compile(r"\breturn\s+[\"'](" + CODE + r")[\"'],")
ANY_LITERAL = re.compile(r"[\"'](" + CODE + r")[\"']")


def _sources() -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if p.name != "codes.py"]


def emitted_codes() -> dict[str, set[str]]:
    """Codes passed literally to an emitting call or returned as a code (strict: each must be registered)."""
    found: dict[str, set[str]] = {}
    for path in _sources():
        text = path.read_text()
        for code in EMITTING_CALL.findall(text) + RETURNED.findall(text):
            found.setdefault(code, set()).add(path.name)
    return found


def code_literals() -> set[str]:
    """Every code-shaped string literal in the sources (codes chosen through tables or conditions included)."""
    return {code for path in _sources() for code in ANY_LITERAL.findall(path.read_text())}


def documented_codes() -> set[str]:
    return set(re.findall(r"^### (" + CODE + r")\s*$", DOCS.read_text(), flags=re.M))


def test_every_emitted_code_is_registered() -> None:
    missing = {code: files for code, files in emitted_codes().items() if code not in CODES}
    assert not missing, f"register these in cluster_conf/codes.py: {missing}"


def test_every_registered_code_is_used_in_the_sources() -> None:
    assert set(CODES) - code_literals() == set(), "registered but never used"


def test_docs_list_exactly_the_registered_codes() -> None:
    documented = documented_codes()
    assert set(CODES) - documented == set(), "undocumented codes"
    assert documented - set(CODES) == set(), "documented codes that are not registered"


def test_docs_state_the_registered_severity() -> None:
    text = DOCS.read_text()
    for code, info in CODES.items():
        section = text.split(f"### {code}\n", 1)[1].split("\n### ", 1)[0]
        assert f"Severity: {info.severity.value}" in section, code
