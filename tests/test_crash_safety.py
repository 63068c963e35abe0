"""A writer killed with SIGKILL at random points always leaves cluster.conf whole: the old or the new version."""
from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from cluster_conf import ClusterConf
from tests.conftest import SMALL_CONF

WRITER = """
import sys
from cluster_conf import ClusterConf, edit
path = sys.argv[1]
for i in range(200):  # bounded: the parent kills it long before
    conf = ClusterConf.load(path)
    with conf.transaction():
        edit.set_section_attrs(conf, "totem", {"token": str(10000 + conf.config_version)})
    conf.save()
"""


def test_sigkill_during_saves_never_leaves_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "cluster.conf"
    target.write_text(SMALL_CONF)
    rng = random.Random(1234)
    versions_seen = set()
    for _ in range(25):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], cwd=Path(__file__).parents[1])
        time.sleep(rng.uniform(0.15, 0.6))  # start-up takes ~0.1 s; then it saves in a tight loop
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=10)
        conf = ClusterConf.load(target)  # raises on a truncated or malformed file
        version = conf.config_version
        assert version is not None and version >= 3
        assert conf.root.find("totem") is not None or version == 3
        old = Path(f"{target}.old")
        if old.exists():
            # Killed between keeping .old and switching in the new file, .old is the current version.
            assert ClusterConf.load(old).config_version in (version - 1, version)
        versions_seen.add(version)
    assert max(versions_seen) > 3, "the writer never got to save: the test did not exercise anything"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("cluster.conf", "cluster.conf.old")]
    assert all(name.startswith(".cluster.conf.") and ".tmp" in name for name in leftovers), leftovers
