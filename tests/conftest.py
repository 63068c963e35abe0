"""Shared fixtures. Tests that read ../shared skip with a visible reason when it is absent."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CORPUS = SHARED / "conformance" / "cluster-conf-corpus"

SMALL_CONF = """<?xml version="1.0"?>
<cluster name="alpha" config_version="3">
  <!-- hand-written note that must survive edits -->
  <cman expected_votes="3"/>
  <clusternodes>
    <clusternode name="n1" nodeid="1" votes="1">
      <fence>
        <method name="power">
          <device name="apc" port="1"/>
        </method>
      </fence>
    </clusternode>
    <clusternode name="n2" nodeid="2" votes="1" x-site="rack7">
      <fence>
        <method name="power">
          <device name="apc" port="2"/>
        </method>
      </fence>
      <x-extension keep="me"/>
    </clusternode>
    <clusternode name="n3" nodeid="3">
      <fence>
        <method name="power">
          <device name="apc" port="3"/>
        </method>
      </fence>
    </clusternode>
  </clusternodes>
  <fencedevices>
    <fencedevice name="apc" agent="fence_apc" ipaddr="10.0.0.9" login="apc" passwd="s3cret"/>
  </fencedevices>
  <rm>
    <failoverdomains>
      <failoverdomain name="web" ordered="1" restricted="0">
        <failoverdomainnode name="n1" priority="1"/>
        <failoverdomainnode name="n2" priority="2"/>
      </failoverdomain>
    </failoverdomains>
    <resources>
      <ip address="10.0.0.50" monitor_link="1"/>
      <script name="httpd" file="/etc/init.d/httpd"/>
    </resources>
    <service name="www" domain="web" recovery="relocate">
      <ip ref="10.0.0.50">
        <script ref="httpd"/>
      </ip>
    </service>
  </rm>
</cluster>
"""


@pytest.fixture
def small_conf_text() -> str:
    return SMALL_CONF


@pytest.fixture
def small_conf_file(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.conf"
    path.write_text(SMALL_CONF)
    return path


def corpus_files() -> list[Path]:
    return sorted(CORPUS.glob("*.conf")) if CORPUS.is_dir() else []


requires_corpus = pytest.mark.skipif(
    not CORPUS.is_dir(), reason=f"the shared cluster.conf corpus is not present at {CORPUS}"
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory):
    """A running three-node lab (real `ricci serve` agents on a free 127.x block) for one test module.

    Teardown cannot leave agents behind, even when the lab's own bookkeeping is wrong: whatever `down` misses is
    killed by process group. Modules that need another shape define their own `lab` fixture."""
    pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")
    import os
    import signal

    from ricci_agent.lab import Lab, free_block, group_members

    lab = Lab(tmp_path_factory.mktemp("lab") / "lab")
    try:
        lab.up(nodes=3, first_address=free_block(3), no_daemons=True)  # agents only; cman tests make their own
        yield lab
    finally:
        pids = [n.pid for n in lab.nodes if n.pid] if lab.exists() else []
        try:
            lab.down(grace=3.0)
        finally:
            for pid in pids:
                if group_members(pid):
                    os.killpg(pid, signal.SIGKILL)
