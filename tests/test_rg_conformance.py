"""rgmanager's own rg_test suite (../shared/conformance/rg_test): every expected output, compared like the
original runner (`diff -w`: whitespace inside lines ignored, lines must still correspond one to one).

17 `test` cases, 36 `noop` start/stop cases (each expected file is the concatenation over the config's services
in config order) and 16 `delta` cases: 69 in all.
"""
from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster_conf.document import ClusterConf
from rgmanager.cli.rg_test import main
from rgmanager.restree import build_trees

SUITE = Path(__file__).resolve().parents[1].parent / "shared" / "conformance" / "rg_test"
AGENTDIR = "../../resources"  # what the original runner passed first; accepted and ignored
EXPECTED_CASES = 69

pytestmark = pytest.mark.skipif(
    not SUITE.is_dir(), reason=f"rg_test conformance data not found at {SUITE} (../shared absent)"
)


@dataclass(frozen=True)
class Case:
    name: str  # the expected file's name without .expected
    kind: str  # test | noop | delta
    expected: Path

    def run(self) -> str:
        if self.kind == "delta":
            old, new = self.name.removeprefix("delta-").split("-")
            return rg_test(AGENTDIR, "delta", str(SUITE / f"{old}.conf"), str(SUITE / f"{new}.conf"))
        if self.kind == "noop":
            base, op = self.name.rsplit(".", 1)
            conf = SUITE / f"{base}.conf"
            services = [t.primary for t in build_trees(ClusterConf.load(conf)).trees]
            return "".join(rg_test(AGENTDIR, "noop", str(conf), op, "service", name) for name in services)
        return rg_test(AGENTDIR, "test", str(SUITE / f"{self.name}.conf"))


def rg_test(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(list(argv))
    assert status == 0, f"rg_test {' '.join(argv)} exited {status}"
    return out.getvalue()


_WHITESPACE = re.compile(r"\s+")


def diff_w(expected: str, actual: str) -> list[str]:
    """The lines that differ the way `diff -w` sees them (empty when equal): whitespace within a line is
    ignored, but each line must match the line at the same place."""
    exp = [_WHITESPACE.sub("", line) for line in expected.splitlines()]
    act = [_WHITESPACE.sub("", line) for line in actual.splitlines()]
    pairs = enumerate(zip(exp, act, strict=False))
    problems = [f"line {i + 1}: expected {e!r}, got {a!r}" for i, (e, a) in pairs if e != a]
    if len(exp) != len(act):
        problems.append(f"expected {len(exp)} lines, got {len(act)}")
    return problems


def discover() -> list[Case]:
    if not SUITE.is_dir():
        return []
    cases = []
    for path in sorted(SUITE.glob("*.expected")):
        name = path.name.removesuffix(".expected")
        kind = "delta" if name.startswith("delta-") else "noop" if name.endswith((".start", ".stop")) else "test"
        cases.append(Case(name, kind, path))
    return cases


CASES = discover()


@pytest.fixture(scope="module")
def results() -> dict[str, list[str]]:
    """Every case run once: name -> the differences (empty = passed)."""
    return {case.name: diff_w(case.expected.read_text(), case.run()) for case in CASES}


def test_diff_w_ignores_whitespace_within_lines_only() -> None:
    assert diff_w("a  = 1;\n  }\n", "a=1;\n}\n") == []
    assert diff_w("    \n}\n", "\n}\n") == []  # a line of blanks equals an empty line
    assert diff_w("a\nb\n", "a\n\nb\n") != []  # an extra (blank) line is a difference
    assert diff_w("x = 1\n", "x = 2\n") != []


def test_suite_has_the_documented_cases() -> None:
    kinds = [c.kind for c in CASES]
    assert (kinds.count("test"), kinds.count("noop"), kinds.count("delta")) == (17, 36, 16)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, results: dict[str, list[str]]) -> None:
    assert results[case.name] == [], "\n".join(results[case.name][:10])


def test_conformance_summary(results: dict[str, list[str]]) -> None:
    passed = sum(1 for problems in results.values() if not problems)
    print(f"rg_test conformance: {passed}/{len(results)} passed")
    failed = sorted(name for name, problems in results.items() if problems)
    assert (passed, len(results)) == (EXPECTED_CASES, EXPECTED_CASES), f"failed: {failed}"
