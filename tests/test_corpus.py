"""The real-world cluster.conf corpus: load, validate, round-trip.

Expectations are in tests/data/corpus-expected.tsv (decided by reading each file). The corpus lives outside the
repository, in ../shared/conformance/cluster-conf-corpus; without it these tests are skipped.

Round trip after an edit is compared with lxml's C14N (canonical XML: attribute quoting, blanks inside tags and
`<a></a>` vs `<a/>` are normalised away, while element order, attribute order-independent values, text,
comments and processing instructions must be equal).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree

from cluster_conf import ClusterConf, ConfigError, validate
from cluster_conf.codes import CODES

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CORPUS = SHARED / "conformance" / "cluster-conf-corpus"
EXPECTED = Path(__file__).resolve().parent / "data" / "corpus-expected.tsv"

pytestmark = [
    pytest.mark.corpus,
    pytest.mark.skipif(not CORPUS.is_dir(), reason=f"cluster.conf corpus not found at {CORPUS} (../shared absent)"),
]


@dataclass(frozen=True)
class Expectation:
    file: str
    outcome: str
    codes: frozenset[str]
    after_edit: str


def _expectations() -> list[Expectation]:
    lines = [line for line in EXPECTED.read_text().splitlines() if line and not line.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    return [
        Expectation(r["file"], r["outcome"], frozenset(c for c in r["codes"].split(",") if c), r["after_edit"])
        for r in rows
    ]


EXPECTATIONS = _expectations()


def _load(exp: Expectation) -> ClusterConf:
    return ClusterConf.load(CORPUS / exp.file)


def test_expectations_cover_the_whole_corpus() -> None:
    on_disk = sorted(p.name for p in CORPUS.glob("*.conf"))
    assert sorted(e.file for e in EXPECTATIONS) == on_disk


def test_expected_codes_are_registered() -> None:
    for exp in EXPECTATIONS:
        assert exp.outcome in ("valid", "invalid", "malformed"), exp
        assert exp.codes <= set(CODES), exp
        assert bool(exp.codes) == (exp.outcome != "valid"), exp


@pytest.mark.parametrize("exp", EXPECTATIONS, ids=lambda e: e.file)
def test_load_and_validate(exp: Expectation) -> None:
    if exp.outcome == "malformed":
        with pytest.raises(ConfigError) as info:
            _load(exp)
        report = info.value.report
        assert report.code in exp.codes
        assert report.is_error
        assert "\n" not in str(info.value)
        return
    conf = _load(exp)
    reports = validate(conf)
    errors = {r.code for r in reports if r.is_error}
    described = "\n".join(r.format(exp.file) for r in reports)
    if exp.outcome == "valid":
        assert not errors, described
    else:
        assert errors, described
        assert exp.codes <= errors, described
    for r in reports:
        assert r.code in CODES
        assert "\n" not in r.message
        assert r.line is None or r.line >= 1


LOADABLE = [e for e in EXPECTATIONS if e.outcome != "malformed"]


@pytest.mark.parametrize("exp", LOADABLE, ids=lambda e: e.file)
def test_relaxng_agrees_with_python_schema_pass(exp: Expectation) -> None:
    """The generated RelaxNG schema and the Python pass judge every loadable corpus file alike."""
    from cluster_conf import rng, structure

    conf = _load(exp)
    assert rng.is_valid(conf) == (not structure.check(conf).schema_failed)


@pytest.mark.parametrize("exp", LOADABLE, ids=lambda e: e.file)
def test_round_trip(exp: Expectation) -> None:
    raw = (CORPUS / exp.file).read_bytes()
    conf = _load(exp)
    assert conf.to_bytes() == raw  # unedited: byte for byte
    conf.mark_edited()
    out = conf.to_bytes()
    assert _c14n(out) == _c14n(raw)
    if exp.after_edit == "identical":
        assert out == raw
    else:
        assert exp.after_edit == "c14n"
        assert out != raw


def _c14n(data: bytes) -> bytes:
    return etree.tostring(etree.fromstring(data, etree.XMLParser(resolve_entities=False)), method="c14n")
