"""What the ricci tests add to the local lab (ricci_agent.lab): their cluster.conf, a lab built around it, the
agent's own log, and a bounded wait.

Roots, keys, trust, processes and their cleanup are `ricci_agent.lab.Lab`'s. Each test lab sits on its own block
of loopback addresses (`free_block`: 127.A.B.11.., port 11111), so it never meets a lab of `localcluster` or of
another test run.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ricci_agent.lab import AGENT_PORT, Lab, LabNode, free_block

RICCI = Path(sys.executable).with_name("ricci")
CLUSTER_NAME = "labcl"


def conf_xml(nodes: list[str], version: int, *, name: str = CLUSTER_NAME, extra: str = "", cman: str = "") -> str:
    """A valid cluster.conf: each node 1 vote, fenced by one fence_virt device."""
    entries = "\n".join(
        f'    <clusternode name="{n}" nodeid="{i}" votes="1">\n'
        f'      <fence><method name="1"><device name="virt" port="{n}"/></method></fence>\n'
        "    </clusternode>"
        for i, n in enumerate(nodes, 1)
    )
    return (
        f'<?xml version="1.0"?>\n<cluster name="{name}" config_version="{version}">\n'
        f"  <cman{cman}/>\n  <clusternodes>\n{entries}\n  </clusternodes>\n"
        '  <fencedevices>\n    <fencedevice name="virt" agent="fence_virt"/>\n  </fencedevices>\n'
        f"  <rm/>{extra}\n</cluster>\n"
    )


def make_lab(base: Path, names: list[str], conf: str, **settings: object) -> Lab:
    """A lab in base/lab whose nodes all hold `conf` as their accepted cluster.conf; `settings` go into every
    ricci.json. No agent is running yet: `lab.up()` or `lab.start(name)`, and `lab.down()` at the end."""
    lab = Lab(base / "lab")
    lab.create(names, CLUSTER_NAME, free_block(len(names)), AGENT_PORT, config=conf.encode(), settings=settings)
    return lab


def running_lab(base: Path, names: list[str], version: int = 1, **settings: object) -> Iterator[Lab]:
    """make_lab with conf_xml(names, version) and every agent answering hello; all stopped afterwards."""
    lab = make_lab(base, names, conf_xml(names, version), **settings)
    try:
        lab.up(no_daemons=True)
        yield lab
    finally:
        lab.down()


def log_text(node: LabNode) -> str:
    """The agent's own log (ricci.log), empty before it wrote any."""
    path = node.root / "var/log/cluster/ricci.log"
    return path.read_text() if path.exists() else ""


def wait_for(predicate, timeout: float = 10.0, step: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


def wait_until(what: str, predicate, timeout: float = 20.0, step: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll `predicate` (bounded) and return its first truthy value; AssertionError naming `what` and the last
    value at the timeout. The cluster-level lab tests (cman, rgmanager, nemesis) wait with this."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def tear_down(lab: Lab) -> None:
    """Heal the lab's partition and stop it; whatever `down` missed is SIGKILLed by marker (no leftovers even when
    the lab's own bookkeeping is wrong)."""
    import contextlib
    import os

    from ricci_agent.lab import node_processes

    if not lab.exists():
        return
    with contextlib.suppress(Exception):
        lab.heal()
    try:
        lab.down()
    finally:
        for node in lab.nodes:
            for pid in node_processes(node):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)


@contextlib.contextmanager
def lab_up(directory: Path, nodes: int = 3, **up: Any) -> Iterator[Lab]:
    """A lab of `nodes` nodes in `directory` on a free loopback block, up for the block and torn down after it
    (tear_down: nothing left running, even on failure). `up`: Lab.up's other options (no_daemons, services...)."""
    lab = Lab(directory)
    try:
        lab.up(nodes=nodes, first_address=free_block(nodes), **up)
        yield lab
    finally:
        tear_down(lab)
