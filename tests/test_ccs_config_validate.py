"""ccs_config_validate: exit codes 0/1/2, the `FILE:LINE: severity CODE: message` lines, JSON, the schema."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cluster_conf.cli.ccs_config_validate import main
from tests.conftest import SMALL_CONF

SCRIPT = Path(sys.executable).parent / "ccs_config_validate"
LINE = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): (?P<severity>error|warning) (?P<code>[A-Z][A-Z0-9_]*): \S")
# Duplicate nodeid (an error) in an otherwise valid file.
INVALID_CONF = SMALL_CONF.replace('name="n3" nodeid="3"', 'name="n3" nodeid="2"')


def validate(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def invalid_file(tmp_path: Path) -> Path:
    path = tmp_path / "invalid.conf"
    path.write_text(INVALID_CONF)
    return path


def test_valid_file_exits_0(capsys: pytest.CaptureFixture[str], small_conf_file: Path) -> None:
    rc, out, err = validate(capsys, "-f", small_conf_file)
    assert rc == 0 and err == ""
    assert out.splitlines()[-1] == "Configuration validates"
    for line in out.splitlines()[:-1]:
        assert LINE.match(line) and " warning " in line


def test_quiet_prints_nothing_but_warnings(capsys: pytest.CaptureFixture[str], small_conf_file: Path) -> None:
    rc, out, _ = validate(capsys, "-q", "-f", small_conf_file)
    assert rc == 0 and "Configuration validates" not in out


def test_invalid_file_exits_1_with_report_lines(capsys: pytest.CaptureFixture[str], invalid_file: Path) -> None:
    rc, out, err = validate(capsys, "-f", invalid_file)
    assert rc == 1 and err == ""
    *reports, last = out.splitlines()
    assert last == "Configuration fails to validate"
    assert reports
    for line in reports:
        match = LINE.match(line)
        assert match, line
        assert match["file"] == str(invalid_file)
    assert any(" error " in line for line in reports)


def test_hints_only_with_verbose(capsys: pytest.CaptureFixture[str], invalid_file: Path) -> None:
    _, plain, _ = validate(capsys, "-f", invalid_file)
    _, verbose, _ = validate(capsys, "-v", "-f", invalid_file)
    assert "(hint: " not in plain
    assert len(verbose.splitlines()) == len(plain.splitlines())


def test_no_lint_drops_warnings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "c.conf"
    path.write_text(SMALL_CONF.replace('agent="fence_apc"', 'agent="fence_manual"'))
    _, with_lint, _ = validate(capsys, "-f", path)
    rc, without, _ = validate(capsys, "--no-lint", "-f", path)
    assert rc == 0
    assert " warning FENCE_MANUAL: " in with_lint
    assert " warning FENCE_MANUAL: " not in without


@pytest.mark.parametrize(
    ("content", "code"),
    [(None, "FILE_NOT_FOUND"), ("<cluster><oops></cluster>", "XML_MALFORMED"), ("", "XML_MALFORMED")],
)
def test_unreadable_or_malformed_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, code: str
) -> None:
    path = tmp_path / "c.conf"
    if content is not None:
        path.write_text(content)
    rc, out, _ = validate(capsys, "-f", path)
    assert rc == 1
    first, last = out.splitlines()
    assert first.startswith(f"{path}") and f"error {code}: " in first
    assert last == "Configuration fails to validate"


@pytest.mark.parametrize("argv", [["--bogus"], ["-f"], ["extra-positional"], ["-f", "a", "-l", "b"]])
def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    rc, out, err = validate(capsys, *argv)
    assert (rc, out) == (2, "")
    assert err.startswith("ccs_config_validate: ") and err.count("\n") == 1


def test_json(capsys: pytest.CaptureFixture[str], invalid_file: Path) -> None:
    rc, out, _ = validate(capsys, "--json", "-f", invalid_file)
    data = json.loads(out)
    assert rc == 1
    assert data["file"] == str(invalid_file) and data["valid"] is False
    assert {"code", "severity", "message", "line", "path", "hint"} <= set(data["reports"][0])


def test_json_for_a_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, _ = validate(capsys, "--json", "-f", tmp_path / "missing.conf")
    data = json.loads(out)
    assert rc == 1 and data["valid"] is False and data["reports"][0]["code"] == "FILE_NOT_FOUND"


def test_default_path_uses_cluster_root(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc" / "cluster"
    etc.mkdir(parents=True)
    (etc / "cluster.conf").write_text(INVALID_CONF)
    monkeypatch.setenv("CLUSTER_ROOT", str(tmp_path))
    rc, out, _ = validate(capsys)
    assert rc == 1 and out.startswith(str(etc / "cluster.conf") + ":")


def test_print_schema(capsys: pytest.CaptureFixture[str], small_conf_file: Path) -> None:
    from lxml import etree

    rc, out, _ = validate(capsys, "--print-schema")
    assert rc == 0
    schema = etree.RelaxNG(etree.fromstring(out.encode()))
    assert schema.validate(etree.parse(str(small_conf_file)))


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = validate(capsys, "-V")
    assert rc == 0 and out.startswith("ccs_config_validate ")


@pytest.mark.skipif(not SCRIPT.exists(), reason=f"console script {SCRIPT} is not installed")
def test_console_script_exit_codes(tmp_path: Path, small_conf_file: Path, invalid_file: Path) -> None:
    malformed = tmp_path / "malformed.conf"
    malformed.write_text("<cluster")
    for argv, code in (
        (["-f", small_conf_file], 0),
        (["-f", invalid_file], 1),
        (["-f", malformed], 1),
        (["-f", tmp_path], 1),
        (["--bogus"], 2),
    ):
        result = subprocess.run(
            [str(SCRIPT), *map(str, argv)], capture_output=True, text=True, timeout=30, env=dict(os.environ)
        )
        assert result.returncode == code, (argv, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
