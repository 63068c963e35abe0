"""The import rules of docs/architecture.md, checked on the real packages."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITE = ("cluster_conf", "rgmanager", "ricci_agent", "luci_web")


def _imported_top_levels(package: str) -> set[str]:
    names: set[str] = set()
    for path in (REPO / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def test_cluster_conf_imports_nothing_of_the_suite_and_only_lxml_outside_stdlib() -> None:
    imported = _imported_top_levels("cluster_conf")
    assert not imported & {"rgmanager", "ricci_agent", "luci_web", "django", "paramiko"}
    third_party = {name for name in imported if name not in sys.stdlib_module_names}
    assert third_party <= {"cluster_conf", "lxml"}


@pytest.mark.parametrize("package", ["rgmanager", "ricci_agent"])
def test_node_side_never_imports_django(package: str) -> None:
    assert "django" not in _imported_top_levels(package)


@pytest.mark.parametrize(
    "module", ["cluster_conf", "cluster_conf.cli.ccs_tool", "cluster_conf.cli.ccs_config_validate", "rgmanager"]
)
def test_cli_and_library_imports_stay_light(module: str) -> None:
    code = (
        f"import sys, {module}; heavy = sorted(m for m in ('django', 'paramiko', 'celery', 'channels') "
        "if m in sys.modules); print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""
