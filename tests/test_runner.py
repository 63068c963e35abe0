"""run_service: order and failure semantics of start, stop and status, with real script agents."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rgmanager import restree
from rgmanager.agents import Agent, agent_for
from rgmanager.runner import run_service

SCRIPT = """#!/bin/sh
# Appends "NAME OP" to the journal; exits 1 for an op listed in a fail-NAME-OP file, 3 for status when stopped.
echo "{name} $1" >> '{journal}'
[ -e '{dir}/fail-{name}-'"$1" ] && {{ echo "{name} refused to $1" >&2; exit 1; }}
case "$1" in
  start) touch '{dir}/running-{name}' ;;
  stop) rm -f '{dir}/running-{name}' ;;
  status) [ -e '{dir}/running-{name}' ] || exit 3 ;;
esac
exit 0
"""


@dataclass
class Node:
    type: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    non_critical: bool | None = None

    @property
    def id(self) -> str:
        return f"{self.type}:{self.attrs.get('name') or self.attrs.get('address')}"


def preorder(node: Node) -> list[Node]:
    return [node, *(n for child in node.children for n in preorder(child))]


def postorder_reversed(node: Node) -> list[Node]:
    return [*(n for child in reversed(node.children) for n in postorder_reversed(child)), node]


class Service:
    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.journal = tmp_path / "journal"
        self.lines: list[str] = []

    def script(self, name: str, *children: Node, **extra: str) -> Node:
        path = self.dir / f"{name}.sh"
        path.write_text(SCRIPT.format(name=name, journal=self.journal, dir=self.dir))
        path.chmod(0o755)
        return Node("script", {"name": name, "file": str(path), **extra}, list(children))

    def fail(self, name: str, op: str) -> None:
        (self.dir / f"fail-{name}-{op}").touch()

    def run(self, tree: Node, op: str, depth: int = 0) -> int:
        self.lines = []
        return run_service(None, tree, op, log=self.lines.append, depth=depth,
                           start_sequence=preorder, stop_sequence=postorder_reversed)

    def calls(self) -> list[str]:
        lines = self.journal.read_text().splitlines() if self.journal.exists() else []
        self.journal.unlink(missing_ok=True)
        return lines


@pytest.fixture
def svc(tmp_path: Path) -> Service:
    return Service(tmp_path)


def _tree(svc: Service) -> Node:
    return Node("service", {"name": "www"}, [
        Node("ip", {"address": "127.0.0.55"}, [svc.script("a"), svc.script("b")]),
        svc.script("c"),
    ])


def test_start_runs_in_sequence_order_and_prints_one_line_each(svc: Service) -> None:
    tree = _tree(svc)
    assert svc.run(tree, "start") == 0
    assert svc.calls() == ["a start", "b start", "c start"]
    assert [line.split(" ok")[0] for line in svc.lines] == [
        "[start] service:www", "[start] ip:127.0.0.55", "[start] script:a", "[start] script:b", "[start] script:c",
    ]
    assert svc.lines[1] == "[start] ip:127.0.0.55 ok: loopback mode: 127.0.0.55 is usable (no interface changed)"


def test_start_stops_at_the_first_failure(svc: Service) -> None:
    tree = _tree(svc)
    svc.fail("b", "start")
    assert svc.run(tree, "start") == 1
    assert svc.calls() == ["a start", "b start"]  # c never started
    assert "[start] script:b FAILED (err_generic): b refused to start" in svc.lines
    assert not any("script:c" in line for line in svc.lines)
    assert svc.lines[-1] == "[start] stopping at the first failure; the remaining resources were not started"


def test_stop_continues_through_failures_and_reports_them(svc: Service) -> None:
    tree = _tree(svc)
    assert svc.run(tree, "start") == 0
    svc.calls()
    svc.fail("b", "stop")
    assert svc.run(tree, "stop") == 1
    assert svc.calls() == ["c stop", "b stop", "a stop"]  # children before parents, reverse order
    assert "[stop] script:b FAILED (err_generic): b refused to stop" in svc.lines
    assert svc.lines[-2] == "[stop] service:www ok: service www container stopped"
    assert svc.lines[-1] == "[stop] 1 resource(s) failed"


def test_status_checks_every_resource_at_the_requested_depth(svc: Service) -> None:
    tree = _tree(svc)
    assert svc.run(tree, "start") == 0
    svc.calls()
    assert svc.run(tree, "status", depth=10) == 0
    assert svc.calls() == ["a status", "b status", "c status"]
    (svc.dir / "running-b").unlink()  # b died behind our back
    assert svc.run(tree, "status") == 1
    assert svc.calls() == ["a status", "b status", "c status"]
    assert "[status] script:b FAILED (not_running): status exited 3 (stopped)" in svc.lines


def test_non_critical_subtree_failure_leaves_the_rest_running(svc: Service) -> None:
    child = svc.script("b2")
    flaky = svc.script("b", child, __independent_subtree="2")
    tree = Node("service", {"name": "www"}, [svc.script("a"), flaky, svc.script("c")])
    svc.fail("b", "start")
    assert svc.run(tree, "start") == 0
    assert svc.calls() == ["a start", "b start", "c start"]
    assert "[start] script:b2 skipped: a non-critical parent failed" in svc.lines
    assert any("non-critical" in line and "partial" in line for line in svc.lines)


def test_unknown_type_fails_start_with_a_clear_line(svc: Service) -> None:
    tree = Node("service", {"name": "www"}, [Node("frobnicator", {"name": "f"}), svc.script("a")])
    assert svc.run(tree, "start") == 1
    assert svc.lines[1].startswith("[start] frobnicator:f FAILED (err_installed): unknown resource type 'frobnicator'")
    assert svc.calls() == []


def test_unknown_operation_is_refused(svc: Service) -> None:
    assert svc.run(_tree(svc), "restart") == 2
    assert svc.lines == ["[restart] unknown operation; use one of: start, stop, status"]


CONF = """<?xml version="1.0"?>
<cluster name="local" config_version="1">
  <clusternodes><clusternode name="n1" nodeid="1"/></clusternodes>
  <rm>
    <resources>
      <script name="app" file="{app}"/>
    </resources>
    <service name="www">
      <script ref="app"/>
      <ip address="127.0.0.66">
        <script name="inner" file="{inner}"/>
      </ip>
      <script name="slow" file="{slow}">
        <action name="start" timeout="1"/>
      </script>
    </service>
  </rm>
</cluster>
"""


def test_real_restree_order_with_inherited_service_name(svc: Service) -> None:
    from cluster_conf.document import ClusterConf

    record = svc.dir / "env"
    app = svc.script("app").attrs["file"]
    inner = svc.script("inner").attrs["file"]
    slow = svc.dir / "slow.sh"
    slow.write_text(f"#!/bin/sh\necho \"slow $1 $OCF_RESKEY_service_name\" >> '{record}'\n"
                    "[ \"$1\" = start ] && sleep 30\nexit 0\n")
    slow.chmod(0o755)
    conf = ClusterConf.from_string(CONF.format(app=app, inner=inner, slow=slow))
    tree = restree.build_trees(conf).tree("www")
    lines: list[str] = []
    assert run_service(conf, tree, "start", log=lines.append) == 1
    # scripts start at level 9 after ip at level 7; the inner script is the ip's child, started with it
    assert [line.split(" ")[1] for line in lines[:-1]] == [
        "service:www", "ip:127.0.0.66", "script:inner", "script:app", "script:slow",
    ]
    assert lines[4].startswith("[start] script:slow FAILED (err_generic, timed out): script start timed out")
    assert record.read_text() == "slow start www\n"  # service_name inherited from the service
    lines.clear()
    assert run_service(conf, tree, "stop", log=lines.append) == 0
    assert [line.split(" ")[1] for line in lines] == [
        "script:slow", "script:app", "script:inner", "ip:127.0.0.66", "service:www",
    ]


OCF_AGENT = """#!/bin/sh
[ "$1" = meta-data ] && { echo '<resource-agent name="ok"><parameters/><actions/></resource-agent>'; exit 0; }
exit 0
"""


def test_agent_options_reach_only_the_agents_that_take_them(svc: Service) -> None:
    agent_dir = svc.dir / "ocf" / "resource.d" / "acme"
    agent_dir.mkdir(parents=True)
    (agent_dir / "ok").write_text(OCF_AGENT)
    (agent_dir / "ok").chmod(0o755)
    tree = Node("service", {"name": "www"}, [svc.script("a"), Node("ocf", {"name": "o", "provider": "acme",
                                                                           "type": "ok"})])
    lines: list[str] = []
    assert run_service(None, tree, "start", log=lines.append, start_sequence=preorder, stop_sequence=preorder,
                       agent_options={"ocf_root": str(svc.dir / "ocf"), "timeouts": {"start": 20}}) == 0, lines
    assert lines[-1] == "[start] ocf:o ok: start exited 0"
    assert svc.calls() == ["a start"]


class Exploding(Agent):
    type_name = "script"

    def _start(self):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")


def test_unexpected_exceptions_become_one_line_per_resource(svc: Service) -> None:
    def factory(type_name: str) -> type[Agent]:
        if type_name == "weird":
            raise LookupError("no table")
        return Exploding if type_name == "exploding" else agent_for(type_name)

    tree = Node("service", {"name": "www"}, [Node("weird", {"name": "w"})])
    lines: list[str] = []
    assert run_service(None, tree, "stop", log=lines.append, start_sequence=preorder,
                       stop_sequence=postorder_reversed, agent_factory=factory) == 1
    assert lines[0] == "[stop] weird:w FAILED (err_generic): weird: choosing the agent: internal error LookupError: " \
        "no table"
    tree = Node("service", {"name": "www"}, [Node("exploding", {"name": "x", "file": "/bin/true"})])
    lines.clear()
    assert run_service(None, tree, "start", log=lines.append, start_sequence=preorder,
                       stop_sequence=postorder_reversed, agent_factory=factory) == 1
    assert lines[1] == "[start] exploding:x FAILED (err_generic): script start: internal error RuntimeError: boom"
