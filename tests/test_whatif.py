"""rg_test place / simulate (rgmanager.cli.whatif), called as rg_test.py will call them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rgmanager.cli.whatif import place_main, simulate_main
from tests.test_placement import ORDERED, RESTRICTED, build_xml

CONF = build_xml(
    domains={"web": (ORDERED, [("n1", 1), ("n2", 2)]), "db": (RESTRICTED, [("n3", None)])},
    services=[
        {"name": "www", "domain": "web"},
        {"name": "db", "domain": "db"},
        {"name": "app", "depend": "service:www"},
        {"name": "manual", "autostart": 0},
    ],
)


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.conf"
    path.write_text(CONF)
    return path


def write_state(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "state.json"
    path.write_text(json.dumps(data))
    return path


def run_json(main, argv, capsys) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def rows(data: dict) -> dict[str, dict]:
    return {r["service"]: r for r in data["services" if "services" in data else "placement"]}


# -- place --------------------------------------------------------------------------------------------------------
def test_place_text_lists_every_service_with_node_and_reason(conf, capsys):
    assert place_main([str(conf), "--online", "n1,n2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["service", "node", "state", "reason"]
    by_service = {line.split()[0]: line for line in out[1:]}
    assert by_service["service:www"].split()[1] == "n1"
    assert by_service["service:db"].split()[1] == "-" and "Restricted domain unavailable" in by_service["service:db"]
    assert "disabled" in by_service["service:manual"]


def test_place_json_with_owners(conf, capsys):
    data = run_json(place_main, [str(conf), "--online", "n1,n2,n3", "--owner", "www=n2", "--owner",
                                 "service:db=n3"], capsys)
    r = rows(data)
    assert r["service:www"]["node"] == "n2" and "keeps running" in r["service:www"]["reason"]  # no failback here
    assert r["service:db"]["node"] == "n3" and r["service:app"]["node"] == "n3"
    assert r["service:manual"]["node"] is None and r["service:manual"]["state"] == "disabled"
    assert data["online"] == ["n1", "n2", "n3"]


def test_place_moves_services_off_offline_owners(conf, capsys):
    r = rows(run_json(place_main, [str(conf), "--online", "n2,n3", "--owner", "www=n1"], capsys))
    assert r["service:www"]["node"] == "n2" and "Taking over" in r["service:www"]["reason"]


def test_place_with_a_state_file(conf, tmp_path, capsys):
    state = write_state(tmp_path, {"now": 100, "services": {
        "www": {"state": "started", "owner": "n1", "last_transition": 90},
        "manual": {"state": "stopped", "last_transition": 50},
        "db": {"state": "started", "owner": "n3", "flags": ["frozen"]},
    }})
    r = rows(run_json(place_main, [str(conf), "--online", "n1,n2", "--state", str(state)], capsys))
    assert r["service:manual"]["node"] == "n2"  # not new: autostart=0 only disables new records
    assert r["service:db"]["node"] == "n3" and r["service:db"]["flags"] == ["frozen"]
    assert r["service:db"]["code"] == -11


# -- simulate -------------------------------------------------------------------------------------------------
@pytest.fixture
def running(tmp_path: Path) -> Path:
    return write_state(tmp_path, {"now": 100, "services": {
        "www": {"state": "started", "owner": "n1"},
        "db": {"state": "started", "owner": "n3"},
        "app": {"state": "started", "owner": "n2"},
        "manual": {"state": "disabled"},
    }})


def test_simulate_text_shows_numbered_actions_and_the_placement(conf, running, capsys):
    code = simulate_main([str(conf), "--state", str(running), "--event", "node-down n1", "--event", "node-up n1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "event 1: node-down n1" in out and "event 2: node-up n1" in out
    assert "  1. stop service:app on n2: Stopping service service:app: Dependency missing" in out
    assert "start service:www on n2: Taking over service service:www from down member n1" in out
    assert "relocate service:www from n2 to n1: Relocating service:www to better node n1" in out
    placement = out.split("placement:\n", 1)[1].splitlines()
    assert placement[0].split() == ["service", "node", "state", "reason"]
    assert placement[1].split()[:3] == ["service:www", "n1", "started"]


def test_simulate_json_and_its_state_can_be_fed_back(conf, running, tmp_path, capsys):
    data = run_json(simulate_main, [str(conf), "--state", str(running), "--event", "node-down n3"], capsys)
    event = data["events"][0]
    assert event["event"] == "node-down n3" and event["result"] == 0
    assert [a["action"] for a in event["actions"]] == ["mark-stopped"]
    assert event["pending"] == [{"service": "service:db", "code": -15, "reason": "Restricted domain unavailable"}]
    assert data["state"]["nodes"]["n3"] == {"online": False, "clean": True}
    again = write_state(tmp_path, data["state"])
    data2 = run_json(simulate_main, [str(conf), "--state", str(again), "--event", "node-up n3"], capsys)
    assert rows(data2)["service:db"]["node"] == "n3"


def test_simulate_user_requests_and_failures(conf, running, capsys):
    data = run_json(simulate_main, [
        str(conf), "--state", str(running),
        "--event", "relocate www n2",
        "--event", "disable app",
        "--event", "relocate db n1",
        "--event", "service-fail www at=200",
        "--event", "enable manual n1",
    ], capsys)
    events = data["events"]
    assert [e["result"] for e in events] == [0, 0, -17, 0, 0]
    assert [a["action"] for a in events[0]["actions"]] == ["stop", "relocate", "start"]  # app stops, then returns
    assert events[3]["actions"][0]["request"] == "stop (recovery)"
    assert rows(data)["service:manual"]["node"] == "n1"


def test_simulate_refusal_is_an_answer_not_an_error(conf, running, capsys):
    assert simulate_main([str(conf), "--state", str(running), "--event", "migrate www n2"]) == 0
    out = capsys.readouterr().out
    assert "result: -8 Invalid operation for resource" in out


# -- bad input ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "message"),
    [
        ("{not json", "not valid JSON"),
        ({"services": {"www": {"state": "runing"}}}, "services.www: unknown service state 'runing'"),
        ({"services": {"www": {"state": "started"}}}, "services.www: state started needs an owner"),
        ({"nodes": {"n9": {"online": True}}}, "nodes.n9: no such node in the configuration"),
        ({"now": "soon"}, "now: expected a number"),
        ({"bogus": 1}, "unknown key 'bogus'"),
        ([1, 2], "expected an object"),
        ({"services": {"www": {"flags": ["sleepy"]}}}, "unknown service flag"),
    ],
)
def test_bad_state_file_is_one_clear_line(conf, tmp_path, capsys, state, message):
    path = tmp_path / "state.json"
    path.write_text(state if isinstance(state, str) else json.dumps(state))
    assert simulate_main([str(conf), "--state", str(path), "--event", "node-down n1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    err = captured.err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("explode n1", "unknown event 'explode'"),
        ("node-down", "expected 'node-down NODE'"),
        ("node-down n9", "no node 'n9'"),
        ("migrate vm:x", "expected 'migrate SERVICE NODE'"),
        ("service-fail www subtree=7", "subtree= is 0, 1"),
        ("node-up n1 at=never", "at= needs a number"),
        ("node-up n1 colour=red", "unknown option colour="),
    ],
)
def test_bad_event_is_one_clear_line_and_nothing_runs(conf, running, capsys, event, message):
    assert simulate_main([str(conf), "--state", str(running), "--event", "node-down n1", "--event", event]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err and len(captured.err.strip().splitlines()) == 1


def test_missing_config_and_unknown_online_node(tmp_path, conf, capsys):
    assert place_main([str(tmp_path / "absent.conf"), "--online", "n1"]) == 1
    assert "no such file" in capsys.readouterr().err
    assert place_main([str(conf), "--online", "n1,n7"]) == 1
    assert "--online: no node 'n7'" in capsys.readouterr().err
    assert place_main([str(conf), "--online", "n1", "--owner", "www"]) == 1
    assert "expected SERVICE=NODE" in capsys.readouterr().err
    assert place_main([str(conf), "--online", "n1", "--owner", "nope=n1"]) == 1
    assert "no service 'nope'" in capsys.readouterr().err


def test_malformed_config_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.conf"
    bad.write_text("<cluster><rm>")
    assert place_main([str(bad), "--online", "n1"]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and len(err.strip().splitlines()) == 1


def test_usage_errors_exit_2(conf, capsys):
    assert place_main([str(conf)]) == 2  # --online is required
    assert "--online" in capsys.readouterr().err
    assert simulate_main([str(conf), "--state", "x.json"]) == 2  # --event is required
    assert "--event" in capsys.readouterr().err
    assert place_main(["--help"]) == 0


# -- review fixes ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"services": {"www": {"flags": 5}}}, "services.www: flags: expected a string or a list"),
        ({"services": {"www": {"flags": [1]}}}, "services.www: flags: expected a string or a list"),
        ('{"now": 1e999}', "now: expected a number"),
        ('{"services": {"www": {"restarts": [NaN]}}}', "services.www: restarts: expected a number"),
        ('{"now": Infinity}', "now: expected a number"),
        ("[" * 100000 + "]" * 100000, "nested too deeply"),
        ({"services": {"www": {"state": "started", "owner": "n9"}}}, "services.www: owner: no node 'n9'"),
        ({"services": {"www": {"last_owner": "n9"}}}, "services.www: last_owner: no node 'n9'"),
        ({"local": "n9"}, "local: no node 'n9'"),
        ({"services": {"nope": {}}}, "services.nope: no service 'nope'"),
        ({"services": {"www": {"state": "recoverable"}}}, "state recoverable needs an owner"),
    ],
)
def test_more_bad_state_files_are_one_clear_line(conf, tmp_path, capsys, state, message):
    path = tmp_path / "state.json"
    path.write_text(state if isinstance(state, str) else json.dumps(state))
    assert simulate_main([str(conf), "--state", str(path), "--event", "node-down n1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and len(captured.err.strip().splitlines()) == 1 and message in captured.err


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (["node-down n1 at=100", "node-up n1 at=50"], "before the previous event's time"),
        (["node-up n1 at=nan"], "finite"),
        (["migrate-failed www n1 oops"], "RC is the agent's return code"),
        (["stop-failed www n9"], "no node 'n9'"),
    ],
)
def test_bad_event_times_and_names(conf, running, capsys, events, message):
    argv = [str(conf), "--state", str(running)]
    for e in events:
        argv += ["--event", e]
    assert simulate_main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err and len(captured.err.strip().splitlines()) == 1


def test_dependency_cycle_config_is_refused_with_the_lint_line(tmp_path, capsys):
    path = tmp_path / "cycle.conf"
    path.write_text(build_xml(services=[{"name": "a", "depend": "service:b"}, {"name": "b", "depend": "service:a"}]))
    assert place_main([str(path), "--online", "n1"]) == 1
    err = capsys.readouterr().err
    assert "DEPEND_CYCLE" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_stop_failed_defaults_to_the_owner_and_migrate_failed_parses(conf, running, capsys):
    data = run_json(simulate_main, [str(conf), "--state", str(running), "--event", "disable www",
                                    "--event", "stop-failed www n1"], capsys)
    assert data["state"]["services"]["service:www"]["state"] == "failed"
    assert data["state"]["services"]["service:www"]["last_owner"] == "n1"
    data = run_json(simulate_main, [str(conf), "--state", str(running), "--event", "stop-failed www"], capsys)
    assert data["events"][0]["actions"][-1]["action"] == "mark-failed"
    data = run_json(simulate_main, [str(conf), "--state", str(running), "--event", "migrate-failed www n1 150"],
                    capsys)
    assert data["events"][0]["event"] == "migrate-failed www n1 150"


def test_config_changed_reconfigures_against_the_previous_file(conf, running, tmp_path, capsys):
    new = tmp_path / "new.conf"
    new.write_text(CONF.replace('<service name="www" domain="web">',
                                '<service name="www" domain="web"><script name="x" file="/etc/init.d/x"/>'))
    data = run_json(simulate_main, [str(conf), "--state", str(running), "--event", f"config-changed {new}"], capsys)
    reconf = [a for a in data["events"][0]["actions"] if a["action"] == "reconfigure"]
    assert reconf and reconf[0]["service"] == "service:www" and reconf[0]["start"] == ["script:x"]


def test_simulate_without_a_state_file_starts_from_a_forming_cluster(tmp_path, capsys):
    from rgmanager.cli.whatif import simulate_main

    conf = tmp_path / "c.conf"
    conf.write_text(
        '<cluster name="c" config_version="1"><clusternodes><clusternode name="n1" nodeid="1"/>'
        '<clusternode name="n2" nodeid="2"/></clusternodes><rm><failoverdomains>'
        '<failoverdomain name="d" ordered="1"><failoverdomainnode name="n1" priority="1"/>'
        '<failoverdomainnode name="n2" priority="2"/></failoverdomain></failoverdomains>'
        '<service name="www" domain="d"/></rm></cluster>'
    )
    assert simulate_main([str(conf), "--event", "quorum-formed", "--event", "node-down n1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    first, second = out["events"]
    assert [(a["action"], a["node"]) for a in first["actions"]] == [("start", "n1")]
    assert ("start", "n2") in [(a["action"], a.get("node")) for a in second["actions"]]
    assert out["placement"][0]["node"] == "n2"
