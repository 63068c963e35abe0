"""Smoke tests of the benchmark generator and runner at a small size (never timing assertions)."""
from __future__ import annotations

import importlib.util

import pytest

from bench import __main__ as runner
from bench.generate import SMALL_SIZE, Size, generate, variant
from cluster_conf import ClusterConf
from cluster_conf.diff import diff
from cluster_conf.model import view

HAS_VALIDATION = importlib.util.find_spec("cluster_conf.validation") is not None


def errors_of(conf: ClusterConf) -> list[str]:
    from cluster_conf import validate

    return [r.format(conf.source) for r in validate(conf, lint=True) if r.is_error]


def test_generator_is_deterministic():
    assert generate(SMALL_SIZE) == generate(SMALL_SIZE)
    assert variant(generate(SMALL_SIZE)) == variant(generate(SMALL_SIZE))


def test_small_config_parses_with_the_requested_shape():
    cluster = view(ClusterConf.from_bytes(generate(SMALL_SIZE)))
    assert len(cluster.nodes) == SMALL_SIZE.nodes
    assert len(cluster.fence_devices) == SMALL_SIZE.fence_devices
    assert len(cluster.domains) == SMALL_SIZE.domains
    assert len(cluster.services) == SMALL_SIZE.services
    assert {s.kind for s in cluster.services} == {"service", "vm"}
    assert all(node.methods for node in cluster.nodes)


@pytest.mark.skipif(not HAS_VALIDATION, reason="cluster_conf.validation is not there yet")
@pytest.mark.parametrize("size", [SMALL_SIZE, Size(nodes=12, fence_devices=20, domains=4, services=30, vm_every=5)])
def test_generated_config_and_its_variant_validate(size):
    data = generate(size)
    assert errors_of(ClusterConf.from_bytes(data)) == []
    assert errors_of(ClusterConf.from_bytes(variant(data))) == []


def test_variant_is_a_next_version_with_changes():
    data = generate(SMALL_SIZE)
    d = diff(ClusterConf.from_bytes(data), ClusterConf.from_bytes(variant(data, service_fraction=0.2)))
    assert (d.old_version, d.new_version) == ("1", "2")
    assert d.added and d.removed and d.changed
    assert d.affected_services()


def test_runner_smoke(capsys, tmp_path):
    out_json = tmp_path / "bench.json"
    assert runner.main(["--small", "--runs", "1", "--json", str(out_json)]) == 0
    printed = capsys.readouterr().out
    assert "median ms" in printed and "libxml2" in printed
    assert "failed:" not in printed
    assert out_json.exists()


def test_engine_bench_runs_at_a_small_size(capsys):
    from bench import engine

    assert engine.main(["--small", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "initial placement" in out and "node-failure replan" in out and "build resource trees" in out


def test_ricci_bench_runs_with_two_agents(capsys, tmp_path):
    from bench import ricci

    assert ricci.main(["--sizes", "2", "--runs", "1", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2" in out and "serial" in out.lower()


def test_cman_bench_runs_one_trial(capsys, tmp_path):
    pytest.importorskip("paramiko", reason="the lab needs paramiko (pip install -e .[node])")
    from bench import cman

    out_json = tmp_path / "cman.json"
    assert cman.main(["--nodes", "2", "--trials", "1", "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "kill -9 to fenced and new view installed" in out and "p50" in out
    import json

    figures = json.loads(out_json.read_text())
    assert len(figures["totals_s"]) == 1 and figures["totals_s"][0] > 0.5  # at least half a token: really measured


def test_luci_dashboard_bench_runs_at_a_small_size(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "luci.json"
    done = subprocess.run([sys.executable, "-m", "bench.luci", "--runs", "3", "--size", "2x10", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    pages = json.loads(out.read_text())["pages"]
    assert {"overview", "cluster_head", "services_fragment", "nodes_fragment"} <= set(pages), done.stdout
    assert all(p["p95_s"] > 0 for p in pages.values())


def test_api_bench_runs_at_a_small_size(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "api.json"
    done = subprocess.run([sys.executable, "-m", "bench.api", "--runs", "3", "--size", "2x10", "--requests", "20",
                           "--connections", "2", "--servers", "daphne", "--json", str(out)],
                          capture_output=True, text=True, timeout=180, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert figures["server_time"]["p50_s"] > 0, done.stdout
    assert figures["throughput"]["daphne"]["completed"] == 20, done.stdout
