"""The import rules of docs/architecture.md, checked on the real packages."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SUITE = ("cluster_conf", "rgmanager", "ricci_agent", "cman", "luci_web")


def _imports(package: str) -> list[tuple[Path, str, bool]]:
    """(file, imported module, at module level?) for every absolute import statement under `package`.

    Module level means executed when the module is imported: a statement in a function body is lazy."""
    found: list[tuple[Path, str, bool]] = []
    for path in (REPO / package).rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        lazy: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                lazy.update(id(inner) for inner in ast.walk(node) if inner is not node)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, alias.name, id(node) not in lazy) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module, id(node) not in lazy))
    return found


def _imported_top_levels(package: str) -> set[str]:
    return {module.split(".")[0] for _, module, _ in _imports(package)}


def test_cluster_conf_imports_nothing_of_the_suite_and_only_lxml_outside_stdlib() -> None:
    eager = {module.split(".")[0] for _, module, module_level in _imports("cluster_conf") if module_level}
    assert not eager & {"rgmanager", "ricci_agent", "luci_web", "django", "paramiko"}
    third_party = {name for name in _imported_top_levels("cluster_conf") if name not in sys.stdlib_module_names}
    assert third_party <= {"cluster_conf", "lxml", "ricci_agent"}


# The one way out of cluster_conf: its front ends (ccs_tool update) reach the local agent through the client
# library, imported inside the function that talks to the agent.
FRONT_END_MAY_REACH = {"ricci_agent.client", "ricci_agent.protocol"}


def test_only_cluster_conf_front_ends_reach_the_agent_client_and_only_lazily() -> None:
    for path, module, module_level in _imports("cluster_conf"):
        if module.split(".")[0] not in {"rgmanager", "ricci_agent", "luci_web", "django", "paramiko"}:
            continue
        where = path.relative_to(REPO)
        assert not module_level, f"{where} imports {module} at module level"
        assert where.parts[:2] == ("cluster_conf", "cli"), f"{where}: only cluster_conf/cli may import {module}"
        assert module in FRONT_END_MAY_REACH, f"{where} imports {module}; allowed: {sorted(FRONT_END_MAY_REACH)}"


@pytest.mark.parametrize("package", ["rgmanager", "ricci_agent", "cman"])
def test_node_side_never_imports_django(package: str) -> None:
    assert "django" not in _imported_top_levels(package)


def test_cman_never_imports_paramiko_nor_the_console() -> None:
    """The cman layer runs without paramiko: it imports cluster_conf, itself, and from ricci_agent only the store
    (plain files: the configuration the agent accepted), at module level or lazily."""
    for path, module, _ in _imports("cman"):
        top = module.split(".")[0]
        where = path.relative_to(REPO)
        assert top not in {"paramiko", "django", "luci_web", "rgmanager"}, f"{where} imports {module}"
        if top == "ricci_agent":
            assert module == "ricci_agent.store", f"{where} imports {module}; cman may use ricci_agent.store only"


@pytest.mark.parametrize(
    "module",
    [
        "cluster_conf",
        "cluster_conf.cli.ccs_tool",
        "cluster_conf.cli.editing",
        "cluster_conf.cli.ccs_config_validate",
        "rgmanager",
        "cman.cli.cman_tool",
        "cman.cli.fence_node",
        "cman.cli.fence_ack_manual",
        "cman.daemon",
        "ricci_agent.fence_lab",
    ],
)
def test_cli_and_library_imports_stay_light(module: str) -> None:
    code = (
        f"import sys, {module}; heavy = sorted(m for m in ('django', 'paramiko', 'celery', 'channels') "
        "if m in sys.modules); print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == ""
