"""The generic ocf agent against the real OCF agents of Debian's resource-agents package (heartbeat/Dummy,
heartbeat/IPaddr2), plus an OCF agent written by the test to see exactly what the bridge passes."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from rgmanager.agents import OCF, agent_for
from rgmanager.agents.ocf import DEFAULT_OCF_ROOT, parse_meta_data

HEARTBEAT = Path(os.environ.get("OCF_ROOT", DEFAULT_OCF_ROOT)) / "resource.d" / "heartbeat"
requires_resource_agents = pytest.mark.skipif(
    not (HEARTBEAT / "Dummy").is_file(),
    reason=f"Debian's resource-agents package is not installed (no {HEARTBEAT}/Dummy); .ci/run installs it",
)


def _ocf(**attrs: str):
    return agent_for("ocf")({"provider": "heartbeat", **attrs})


@requires_resource_agents
def test_dummy_start_monitor_stop_with_a_state_file(tmp_path: Path) -> None:
    state = tmp_path / "dummy.state"
    agent = _ocf(name="d1", type="Dummy", state=str(state))
    assert agent.status().rc == OCF.NOT_RUNNING
    started = agent.start()
    assert started.ok, started
    assert state.exists()
    assert agent.status().ok
    assert agent.status(10).ok
    stopped = agent.stop()
    assert stopped.ok, stopped
    assert not state.exists()
    assert agent.status().rc == OCF.NOT_RUNNING
    assert agent.validate().ok


@requires_resource_agents
def test_dummy_meta_data_is_the_agents_own() -> None:
    agent = _ocf(name="d1", type="Dummy")
    text = agent.meta_data()
    meta = parse_meta_data(text)
    assert {p.name for p in meta.parameters} >= {"state", "fake"}
    assert {"start", "stop", "monitor", "meta-data"} <= set(meta.actions)
    result = agent.run("meta-data")
    assert result.ok and '<resource-agent name="Dummy"' in result.message


@requires_resource_agents
def test_missing_required_parameter_is_reported_from_meta_data() -> None:
    agent = _ocf(name="vip", type="IPaddr2")
    for result in (agent.validate(), agent.start()):
        assert result.rc == OCF.ERR_CONFIGURED
        assert result.message == (
            "ocf:heartbeat:IPaddr2: required parameter 'ip' is missing (from the agent's meta-data)"
        )


@requires_resource_agents
def test_unknown_parameter_is_refused_with_the_accepted_names(tmp_path: Path) -> None:
    agent = _ocf(name="d1", type="Dummy", state=str(tmp_path / "s"), colour="blue")
    result = agent.start()
    assert result.rc == OCF.ERR_CONFIGURED
    assert result.message.startswith("ocf:heartbeat:Dummy: unknown parameter 'colour' (the agent accepts: ")
    assert "fake" in result.message and "state" in result.message
    assert not (tmp_path / "s").exists()  # nothing was started


def test_unknown_agent_type_names_the_missing_program() -> None:
    result = _ocf(name="x", type="NoSuchAgent").start()
    assert result.rc == OCF.ERR_INSTALLED
    assert result.message == (
        f"ocf:heartbeat:NoSuchAgent: OCF agent is not installed (no {HEARTBEAT}/NoSuchAgent)"
    )


@pytest.mark.parametrize("bad", ["../../../bin/sh", "Dummy/..", "-x", ".."])
def test_agent_names_cannot_escape_ocf_root(bad: str) -> None:
    result = _ocf(name="x", type=bad).start()
    assert result.rc == OCF.ERR_CONFIGURED
    assert result.message == f"ocf: type={bad!r} is not a valid OCF agent name"


def test_type_is_required() -> None:
    result = agent_for("ocf")({"name": "x"}).validate()
    assert result.rc == OCF.ERR_CONFIGURED and result.message == "ocf: required parameter 'type' is missing"


RECORDER = """#!{python}
import json, os, sys
META = '''<?xml version="1.0"?>
<resource-agent name="recorder">
<parameters>
  <parameter name="greeting" required="1"><content type="string"/></parameter>
  <parameter name="mode"><content type="string" default="calm"/></parameter>
</parameters>
<actions><action name="start"/><action name="stop"/><action name="monitor"/><action name="meta-data"/>
<action name="reload"/></actions>
</resource-agent>'''
action = sys.argv[1]
if action == "meta-data":
    print(META); sys.exit(0)
with open({record!r}, "a") as fh:
    fh.write(json.dumps({{"action": action, "argv": sys.argv[1:],
                          "env": {{k: v for k, v in os.environ.items() if k.startswith("OCF_")}}}}) + "\\n")
sys.exit({{"monitor": 7}}.get(action, 0))
"""


def test_the_bridge_passes_the_ocf_environment_verbatim(tmp_path: Path) -> None:
    root = tmp_path / "ocf"
    agent_dir = root / "resource.d" / "acme"
    agent_dir.mkdir(parents=True)
    record = tmp_path / "record.jsonl"
    program = agent_dir / "recorder"
    program.write_text(RECORDER.format(python=sys.executable, record=str(record)))
    program.chmod(0o755)
    hostile = f"hi; touch {tmp_path}/c1 $(touch {tmp_path}/c2) `touch {tmp_path}/c3`\nsecond line"
    agent = agent_for("ocf")(
        {"name": "r1", "provider": "acme", "type": "recorder", "greeting": hostile, "__independent_subtree": "1"},
        ocf_root=str(root),
    )
    assert agent.start().ok
    status = agent.status(20)
    assert status.rc == OCF.NOT_RUNNING
    assert agent.run("reload").ok
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    assert [c["action"] for c in calls] == ["start", "monitor", "reload"]
    env = calls[1]["env"]
    assert env["OCF_RESKEY_greeting"] == hostile
    assert env["OCF_ROOT"] == str(root)
    assert env["OCF_RESOURCE_INSTANCE"] == "r1"
    assert env["OCF_RESOURCE_TYPE"] == "recorder" and env["OCF_RESOURCE_PROVIDER"] == "acme"
    assert env["OCF_CHECK_LEVEL"] == "20"
    assert env["OCF_RA_VERSION_MAJOR"] == "1"
    # selectors and rgmanager's special attributes are not agent parameters
    assert not {"OCF_RESKEY_type", "OCF_RESKEY_provider", "OCF_RESKEY___independent_subtree"} & set(env)
    assert calls[0]["argv"] == ["start"]
    assert not any((tmp_path / n).exists() for n in ("c1", "c2", "c3"))
    missing = agent_for("ocf")({"name": "r2", "provider": "acme", "type": "recorder"}, ocf_root=str(root)).start()
    assert missing.rc == OCF.ERR_CONFIGURED and "required parameter 'greeting'" in missing.message
    assert agent.run("migrate_to").rc == OCF.ERR_UNIMPLEMENTED


CODES = """#!/bin/sh
# An OCF agent whose exit codes the test picks: ACTION=CODE pairs in OCF_RESKEY_codes.
if [ "$1" = meta-data ]; then
  echo '<?xml version="1.0"?><resource-agent name="codes"><parameters>'
  echo '<parameter name="codes"><content type="string"/></parameter></parameters>'
  echo '<actions><action name="start"/><action name="stop"/><action name="monitor"/></actions></resource-agent>'
  exit 0
fi
for pair in $OCF_RESKEY_codes; do
  [ "${pair%%=*}" = "$1" ] && { echo "said $1"; exit "${pair#*=}"; }
done
exit 0
"""


@pytest.mark.parametrize(("codes", "op", "rc", "message"), [
    ("monitor=8", "status", OCF.SUCCESS, "running (as promoted, OCF 8): said monitor"),
    ("monitor=9", "status", OCF.ERR_GENERIC, "failed (as promoted, OCF 9): said monitor"),
    ("monitor=7", "status", OCF.NOT_RUNNING, "said monitor"),
    ("start=42", "start", OCF.ERR_GENERIC, "start exited 42, which is not an OCF exit code: said start"),
    ("stop=200", "stop", OCF.ERR_GENERIC, "stop exited 200, which is not an OCF exit code: said stop"),
    ("start=6", "start", OCF.ERR_CONFIGURED, "said start"),
])
def test_ocf_exit_codes_outside_the_range_and_promoted_monitor(tmp_path: Path, codes: str, op: str, rc: int,
                                                               message: str) -> None:
    agent_dir = tmp_path / "ocf" / "resource.d" / "acme"
    agent_dir.mkdir(parents=True)
    (agent_dir / "codes").write_text(CODES)
    (agent_dir / "codes").chmod(0o755)
    agent = agent_for("ocf")({"name": "c", "provider": "acme", "type": "codes", "codes": codes},
                             ocf_root=str(tmp_path / "ocf"))
    result = agent.run(op)
    assert (result.rc, result.message) == (rc, message)
