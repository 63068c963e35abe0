"""`manage.py demo` (what `make demo` runs) completes and really creates, lists and validates a cluster."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_demo_walkthrough_runs_end_to_end() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "demo"], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "Nodename                        Votes Nodeid Fencetype" in out
    for node in ("node1", "node2", "node3"):
        assert node in out
    assert "[start] ip:127.0.0.50" in out  # rg_test noop: the engine's start order
    assert "service:web  node1  started" in out  # rg_test place: the domain's priority-1 node
    assert "start service:web on node2" in out  # node1 fails: taken over by the next node of the domain
    assert "relocate service:web from node2 to node1" in out  # node1 returns: failback
    assert "Demo complete" in out
    assert "secret" not in out  # the fence password is masked in listings and diffs
    assert "Traceback" not in out + result.stderr
