"""Integration: real `ricci serve` processes on 127.x.y.z, real SSH, the client library and the CLI."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from paramiko.auth_handler import AuthHandler
from paramiko.common import cMSG_USERAUTH_REQUEST
from paramiko.message import Message

from cluster_conf import ClusterConf
from ricci_agent import keys
from ricci_agent.client import IDLE_WAKEUP, RicciClient
from ricci_agent.lab import Lab, exit_code
from ricci_agent.protocol import RicciError, request_line
from ricci_agent.server import (
    AUTH_FAILURE_DELAY,
    MAX_AUTH_ATTEMPTS,
    MAX_AUTH_FAILURES,
    MAX_UNAUTHENTICATED,
    MAX_UNAUTHENTICATED_PER_SOURCE,
)
from ricci_agent.store import RACE_TEXT, STATE_DIR, content_hash, validator_version
from tests.ricci_fixtures import RICCI, conf_xml, log_text, make_lab, running_lab, wait_for

NAMES = ["node1", "node2", "node3"]
pytestmark = pytest.mark.skipif(not RICCI.exists(), reason=f"{RICCI} is missing: run pip install -e .")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    yield from running_lab(tmp_path, NAMES, max_message_bytes=65536)


def client_for(lab: Lab, **kw: float) -> RicciClient:
    return lab.client(**kw)


def versions_of(lab: Lab, client: RicciClient) -> dict[str, tuple[int, str]]:
    out = {}
    for key, r in client.fan_out([n.endpoint for n in lab.nodes], "hello").items():
        out[key] = (r.result["config_version"], r.result["config_hash"]) if r.ok else (None, r.code)
    return out


def push(client: RicciClient, lab: Lab, node: str, version: int, extra: str = "", propagate: bool = True) -> dict:
    return client.call(*lab.node(node).endpoint, "cluster.set_config",
                       {"xml": conf_xml(NAMES, version, extra=extra), "propagate": propagate})


def test_propagation_idempotency_and_refusals(lab: Lab) -> None:
    with client_for(lab) as c:
        info = c.call(*lab.node("node1").endpoint, "hello")
        assert (info["protocol"], info["node_name"], info["cluster_name"], info["config_version"]) == (
            1, "node1", "labcl", 1)
        reply = push(c, lab, "node1", 2)
        assert reply["old_version"] == 1 and reply["new_version"] == 2
        assert {n: o["outcome"] for n, o in reply["nodes"].items()} == dict.fromkeys(NAMES, "updated")
        assert len(set(versions_of(lab, c).values())) == 1
        again = push(c, lab, "node2", 2)
        assert {n: o["outcome"] for n, o in again["nodes"].items()} == dict.fromkeys(NAMES, "already")
        with pytest.raises(RicciError) as older:
            push(c, lab, "node3", 1)
        assert older.value.code == "version_not_greater"
        assert "Proposed updated config file does not have greater version number." in older.value.message
        assert older.value.details == {"current": 2, "proposed": 1}
        with pytest.raises(RicciError) as same:
            push(c, lab, "node3", 2, "<!-- other -->")
        assert same.value.code == "same_version_differs"
        with pytest.raises(RicciError) as invalid:
            c.call(*lab.node("node1").endpoint, "cluster.set_config",
                   {"xml": conf_xml(NAMES, 3).replace('nodeid="2"', 'nodeid="1"'), "propagate": True})
        assert invalid.value.code == "config_invalid"
        assert any(r["severity"] == "error" for r in invalid.value.details["reports"])
        hist = c.call(*lab.node("node3").endpoint, "cluster.versions")["versions"]
        assert [(h["version"], h["current"]) for h in hist] == [(1, False), (2, True)]
        assert "ricci@" in hist[1]["author"]
        old = c.call(*lab.node("node3").endpoint, "cluster.get_version", {"version": 1})
        assert old["xml"] == conf_xml(NAMES, 1)
        assert (lab.node("node2").root / "etc/cluster/cluster.conf.old").read_text() == conf_xml(NAMES, 1)


def test_concurrent_pushes_of_one_version_exactly_one_wins(lab: Lab) -> None:
    for round_, version in enumerate((2, 3)):
        outcomes: dict[str, object] = {}
        clients = {n: client_for(lab) for n in ("node1", "node2")}
        for n, c in clients.items():
            c.call(*lab.node(n).endpoint, "hello")  # both connections open before the pushes start
        start = threading.Barrier(2, timeout=10)

        def pusher(node: str, extra: str, version: int = version, outcomes: dict = outcomes,
                   start: threading.Barrier = start, clients: dict = clients) -> None:
            start.wait()
            try:
                outcomes[node] = push(clients[node], lab, node, version, extra)
            except RicciError as exc:
                outcomes[node] = exc

        threads = [threading.Thread(target=pusher, args=(n, f"<!-- {n} {round_} -->")) for n in ("node1", "node2")]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(40)
        finally:
            for c in clients.values():
                c.close()
        winners = [n for n, o in outcomes.items() if isinstance(o, dict)]
        losers = [o for o in outcomes.values() if isinstance(o, RicciError)]
        shown = {k: v if isinstance(v, dict) else str(v) for k, v in outcomes.items()}
        assert len(winners) == 1 and len(losers) == 1, json.dumps(shown, indent=1)
        assert losers[0].code == "race_lost" and losers[0].message == RACE_TEXT  # type: ignore[attr-defined]
        expected = conf_xml(NAMES, version, extra=f"<!-- {winners[0]} {round_} -->")
        assert wait_for(lambda e=expected: all(n.config_path.read_text() == e for n in lab.nodes), 10)


def test_node_that_was_down_catches_up_on_start(lab: Lab) -> None:
    lab.stop("node3")
    with client_for(lab, connect_timeout=1.0) as c:
        reply = push(c, lab, "node1", 5)
        assert reply["nodes"]["node3"]["outcome"] == "unreachable"
        assert reply["nodes"]["node2"]["outcome"] == "updated"
        status = c.call(*lab.node("node2").endpoint, "cluster.status")
        assert status["nodes"]["node3"]["reachable"] is False and status["nodes"]["node1"]["in_sync"]
        lab.start("node3")
        assert wait_for(lambda: c.call(*lab.node("node3").endpoint, "hello")["config_version"] == 5, 20)
    assert "Remote copy of cluster.conf is newer than local copy" in log_text(lab.node("node3"))


def test_periodic_poll_pulls_a_version_pushed_to_one_node_only(lab: Lab) -> None:
    with client_for(lab) as c:
        reply = push(c, lab, "node2", 7, propagate=False)
        assert list(reply["nodes"]) == ["node2"]
        assert wait_for(lambda: {v for v, _ in versions_of(lab, c).values()} == {7}, 15)
        hist = c.call(*lab.node("node1").endpoint, "cluster.versions")["versions"]
        assert hist[-1]["author"] == "catch-up from node2"


def test_drift_is_visible_in_status(tmp_path: Path) -> None:
    # ccsd_poll of 10 minutes: nothing repairs the drift during the test
    lab = make_lab(tmp_path, NAMES, conf_xml(NAMES, 4, cman=' ccsd_poll="600000"'))
    try:
        lab.up(no_daemons=True)
        with client_for(lab) as c:
            accepted = c.call(*lab.node("node1").endpoint, "hello")["config_hash"]
            c.call(*lab.node("node3").endpoint, "cluster.set_config",
                   {"xml": conf_xml(NAMES, 5, cman=' ccsd_poll="600000"', extra="<!-- 5 -->"), "propagate": False})
            status = c.call(*lab.node("node1").endpoint, "cluster.status")
        assert status["drift"] is True and status["edited_locally"] == []
        hashes = {n: s["config_hash"] for n, s in status["nodes"].items()}
        assert hashes["node1"] == hashes["node2"] == accepted != hashes["node3"]
        assert [s["config_version"] for s in status["nodes"].values()] == [4, 4, 5]
        assert [s["in_sync"] for s in status["nodes"].values()] == [False, False, True]
    finally:
        lab.down()


def hand_edit(path: Path, text: str) -> None:
    """Save a file as an editor that writes a new file and renames it over the old one: the agents, which poll,
    never see it half written (a test artefact, not the behaviour under test)."""
    tmp = path.with_name(f".{path.name}.edit")
    tmp.write_text(text)
    tmp.replace(path)


def test_a_local_edit_is_reported_and_served_nowhere(tmp_path: Path) -> None:
    # an edit of the live file behind the agent's back: hello and status report it beside the accepted copy,
    # get_config serves the accepted copy, and the peers do not pull it (ccsd_poll 300 ms: many rounds)
    cman = ' ccsd_poll="300"'
    lab = make_lab(tmp_path, NAMES, conf_xml(NAMES, 4, cman=cman))
    try:
        lab.up(no_daemons=True)
        edit = conf_xml(NAMES, 5, cman=cman, extra="<!-- edited by hand -->")
        hand_edit(lab.node("node3").config_path, edit)
        node3 = lab.node("node3").endpoint
        with client_for(lab) as c:
            hello = c.call(*node3, "hello")
            accepted = content_hash(conf_xml(NAMES, 4, cman=cman).encode())
            assert (hello["config_version"], hello["config_hash"]) == (4, accepted)
            assert hello["local_edit"] == {"version": 5, "hash": content_hash(edit.encode()),
                                           "note": "edited locally, not distributed: run cman_tool version -r"}
            served = c.call(*node3, "cluster.get_config")
            assert served["version"] == 4 and served["xml"] == conf_xml(NAMES, 4, cman=cman)
            assert served["local_edit"]["version"] == 5
            time.sleep(2.0)  # six poll rounds
            assert {v for v, _ in versions_of(lab, c).values()} == {4}
            assert lab.node("node1").config_path.read_text() == conf_xml(NAMES, 4, cman=cman)
            status = c.call(*lab.node("node1").endpoint, "cluster.status")
            assert status["drift"] is True and status["edited_locally"] == ["node3"]
            assert status["nodes"]["node3"]["local_edit"]["version"] == 5
            assert status["nodes"]["node3"]["message"].endswith("run cman_tool version -r")
            assert status["nodes"]["node1"]["local_edit"] is None and status["nodes"]["node1"]["in_sync"]
            # a push of the edit's version with other content is refused by that node only, with the reason
            reply = c.call(*lab.node("node1").endpoint, "cluster.set_config",
                           {"xml": conf_xml(NAMES, 5, cman=cman, extra="<!-- pushed -->"), "propagate": True})
            assert reply["nodes"]["node2"]["outcome"] == "updated"
            assert reply["nodes"]["node3"]["outcome"] == "refused"
            assert "edited locally to config_version 5" in reply["nodes"]["node3"]["message"]
            assert lab.node("node3").config_path.read_text() == edit
            # pushing the live file itself (what cman_tool version -r does) makes it the accepted copy
            edit6 = conf_xml(NAMES, 6, cman=cman, extra="<!-- edited by hand -->")
            hand_edit(lab.node("node3").config_path, edit6)
            reply = c.call(*node3, "cluster.set_config", {"xml": edit6, "propagate": True})
            outcomes = {n: o["outcome"] for n, o in reply["nodes"].items()}
            # a peer polling every 300 ms may pull version 6 from node3 before node3's own push reaches it: then it
            # answers "already"; either way every node ends on the edit
            assert outcomes["node3"] == "already" and set(outcomes) == {"node1", "node2", "node3"}, outcomes
            assert {outcomes["node1"], outcomes["node2"]} <= {"updated", "already"}, outcomes
            assert all(lab.node(n).config_path.read_text() == edit6 for n in NAMES)
            assert c.call(*node3, "hello")["local_edit"] is None
            assert c.call(*node3, "cluster.versions")["versions"][-1]["version"] == 6
    finally:
        lab.down()


def test_a_node_down_with_a_local_edit_takes_a_newer_version_and_keeps_the_edit_as_old(lab: Lab) -> None:
    node3 = lab.node("node3")
    lab.stop("node3")
    edit = conf_xml(NAMES, 2, extra="<!-- edited while down -->")
    hand_edit(node3.config_path, edit)
    with client_for(lab, connect_timeout=1.0) as c:
        assert push(c, lab, "node1", 3)["nodes"]["node3"]["outcome"] == "unreachable"
        lab.start("node3")
        assert wait_for(lambda: c.call(*node3.endpoint, "hello")["config_version"] == 3, 20)
        assert c.call(*node3.endpoint, "hello")["local_edit"] is None
    assert node3.config_path.read_text() == conf_xml(NAMES, 3)
    assert node3.config_path.with_name("cluster.conf.old").read_text() == edit
    assert "edited locally (config_version 2, not distributed) was replaced by config_version 3" in log_text(node3)


def test_unknown_and_changed_host_keys_are_refused_with_the_fingerprint(lab: Lab, tmp_path: Path) -> None:
    node = lab.node("node1")
    real_fp = keys.ensure_host_key(node.root)
    stranger = tmp_path / "stranger"
    keys.ensure_client_key(stranger)
    keys.authorize(node.root, keys.ensure_client_key(stranger))
    with RicciClient.for_root(stranger) as c, pytest.raises(RicciError) as unknown:
        c.call(*node.endpoint, "hello")
    assert unknown.value.code == "host_key_unknown" and real_fp in unknown.value.message
    other = tmp_path / "other"
    keys.ensure_host_key(other)
    keys.pin_host_key(stranger, node.address, node.port, keys.host_public_key(other))
    with RicciClient.for_root(stranger) as c, pytest.raises(RicciError) as changed:
        c.call(*node.endpoint, "hello")
    assert changed.value.code == "host_key_changed" and real_fp in changed.value.message
    keys.pin_host_key(stranger, node.address, node.port, keys.host_public_key(node.root))
    with RicciClient.for_root(stranger) as c:
        assert c.call(*node.endpoint, "hello")["node_name"] == "node1"


def test_wrong_client_key_is_refused_and_logged(lab: Lab, tmp_path: Path) -> None:
    node = lab.node("node2")
    intruder = tmp_path / "intruder"
    keys.ensure_client_key(intruder)
    keys.pin_host_key(intruder, node.address, node.port, keys.host_public_key(node.root))
    source = other_address(lab, 98)  # the agents' own logins come from their addresses, never from this one
    with RicciClient.for_root(intruder, source_address=source) as c, pytest.raises(RicciError) as exc:
        c.call(*node.endpoint, "hello")
    assert exc.value.code == "auth_failed"
    fp = keys.fingerprint(keys.ensure_client_key(intruder))
    assert wait_for(lambda: f"auth refused from {source}:" in log_text(node))
    refused = [line for line in log_text(node).splitlines() if f"auth refused from {source}:" in line]
    assert fp in refused[0] and "not in authorized_keys" in refused[0]
    assert f"auth accepted from {source}:" not in log_text(node)


def test_repeated_failed_auth_is_delayed_then_disconnected(lab: Lab, tmp_path: Path) -> None:
    node = lab.node("node1")
    sock = socket.create_connection(node.endpoint, timeout=5)
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=5)
        strangers = []
        for i in range(MAX_AUTH_FAILURES):
            keys.ensure_client_key(tmp_path / f"k{i}")
            strangers.append(paramiko.Ed25519Key.from_private_key_file(str(keys.client_key_path(tmp_path / f"k{i}"))))
        started = time.monotonic()
        for key in strangers:
            with pytest.raises((paramiko.AuthenticationException, paramiko.SSHException, EOFError)):
                transport.auth_publickey("ricci", key)
        assert time.monotonic() - started >= AUTH_FAILURE_DELAY * 0.9
        assert wait_for(lambda: not transport.is_active(), 5)
    finally:
        transport.close()
    assert "after 3 failed authentications" in log_text(node)


def test_cap_on_unauthenticated_connections(lab: Lab) -> None:
    node = lab.node("node3")
    idle = []
    try:
        refused = False
        for i in range(MAX_UNAUTHENTICATED + 1):  # the other agents' own connections may hold a slot briefly
            s = socket.create_connection(node.endpoint, timeout=5, source_address=(other_address(lab, 100 + i), 0))
            first = s.recv(4)
            if first == b"":
                refused = True  # closed at once, unread
                s.close()
                break
            assert first == b"SSH-"  # admitted: the server greets it
            idle.append(s)
        assert refused and MAX_UNAUTHENTICATED - 2 <= len(idle) <= MAX_UNAUTHENTICATED
        assert wait_for(lambda: "already waiting to authenticate" in log_text(node))
    finally:
        for s in idle:
            s.close()
    with client_for(lab) as c:
        assert wait_for(lambda: _hello_ok(c, node.endpoint), 10)


def test_cap_on_unauthenticated_connections_per_source_address(lab: Lab) -> None:
    node = lab.node("node1")
    source = (other_address(lab, 97), 0)
    idle = [socket.create_connection(node.endpoint, timeout=5, source_address=source)
            for _ in range(MAX_UNAUTHENTICATED_PER_SOURCE)]
    try:
        assert all(s.recv(4) == b"SSH-" for s in idle)
        extra = socket.create_connection(node.endpoint, timeout=5, source_address=source)
        assert extra.recv(4) == b""  # closed at once, unread
        extra.close()
        other = socket.create_connection(node.endpoint, timeout=5, source_address=(other_address(lab, 96), 0))
        assert other.recv(4) == b"SSH-"  # another address still gets in
        other.close()
        assert wait_for(lambda: f"connections from {source[0]} are already waiting" in log_text(node))
    finally:
        for s in idle:
            s.close()


def test_a_client_turned_away_before_the_banner_tries_again(lab: Lab) -> None:
    # the per-source cap closes a new connection before the agent's banner: nothing was sent, so the client tries
    # again within its connect bound and gets in as soon as a slot frees (here: one waiting connection closes)
    node = lab.node("node1")
    source = other_address(lab, 95)
    idle = [socket.create_connection(node.endpoint, timeout=5, source_address=(source, 0))
            for _ in range(MAX_UNAUTHENTICATED_PER_SOURCE)]
    timer = threading.Timer(0.25, idle[0].close)
    try:
        assert all(s.recv(4) == b"SSH-" for s in idle)
        timer.start()
        with RicciClient.for_root(lab.client_root, source_address=source, connect_timeout=3.0) as c:
            assert c.call(*node.endpoint, "hello")["protocol"] == 1
        assert wait_for(lambda: f"connections from {source} are already waiting" in log_text(node))
    finally:
        timer.cancel()
        for s in idle:
            s.close()


def other_address(lab: Lab, last: int) -> str:
    """An address of the lab's 127.x.y.0/24 that no agent uses (tests connect from it to be told apart)."""
    return lab.node("node1").address.rsplit(".", 1)[0] + f".{last}"


def _hello_ok(c: RicciClient, target: tuple[str, int]) -> bool:
    try:
        return c.call(*target, "hello")["protocol"] == 1
    except RicciError:
        return False


def test_hung_peer_costs_its_timeout_and_blocks_nobody(lab: Lab) -> None:
    hung = socket.socket()
    hung.bind((lab.node("node1").address.rsplit(".", 1)[0] + ".99", 0))
    hung.listen(8)  # accepts TCP (the kernel does), never answers
    target = hung.getsockname()
    try:
        with client_for(lab, connect_timeout=1.0) as c:
            started = time.monotonic()
            results = c.fan_out([target, lab.node("node1").endpoint, lab.node("node2").endpoint], "hello")
            wall = time.monotonic() - started
        hung_result = results[f"{target[0]}:{target[1]}"]
        assert not hung_result.ok and hung_result.code in ("timeout", "unreachable") and not hung_result.answered
        assert hung_result.elapsed < 2.0 and wall < 2.5  # the hung node: its connect timeout, not more
        assert results[f"{lab.node('node1').address}:11111"].ok
    finally:
        hung.close()


def _raw_exchange(conn, payload: bytes) -> dict:  # type: ignore[no-untyped-def]
    conn.channel.sendall(payload)
    buf = b""
    conn.channel.settimeout(10)
    while b"\n" not in buf:
        chunk = conn.channel.recv(65536)
        assert chunk, "the agent closed the channel"
        buf += chunk
    return json.loads(buf.split(b"\n", 1)[0])


def test_oversize_malformed_and_unknown_requests_get_errors_and_the_channel_survives(lab: Lab) -> None:
    node = lab.node("node1")
    with client_for(lab) as c:
        c.call(*node.endpoint, "hello")
        conn = c._connection(*node.endpoint)
        big = _raw_exchange(conn, b'{"v":1,"id":1,"fn":"hello","args":{"x":"' + b"y" * 200000 + b'"}}\n')
        assert big["ok"] is False and big["error"]["code"] == "message_too_large" and big["id"] is None
        bad = _raw_exchange(conn, b"this is not json\n")
        assert bad["error"]["code"] == "malformed_request"
        unknown = _raw_exchange(conn, request_line(5, "rm -rf /"))
        assert unknown["id"] == 5 and unknown["error"]["code"] == "unknown_function"
        wrong = _raw_exchange(conn, request_line(6, "cluster.get_version", {"version": "x"}))
        assert wrong["error"]["code"] == "bad_arguments"
        assert c.call(*node.endpoint, "hello")["node_name"] == "node1"  # same connection, still fine
    with client_for(lab) as c2:
        assert c2.call(*node.endpoint, "hello")["node_name"] == "node1"  # and the daemon too


def test_no_shell_exec_or_other_subsystem(lab: Lab) -> None:
    node = lab.node("node2")
    with client_for(lab) as c:
        c.call(*node.endpoint, "hello")
        transport = c._connection(*node.endpoint).transport
        for attempt in ("exec", "shell", "sftp"):
            chan = transport.open_session(timeout=5)
            with pytest.raises(paramiko.SSHException):
                if attempt == "exec":
                    chan.exec_command("id")
                elif attempt == "shell":
                    chan.invoke_shell()
                else:
                    chan.invoke_subsystem("sftp")
            chan.close()
        with pytest.raises(paramiko.ChannelException):
            transport.open_channel("direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 40000), timeout=5)
        with pytest.raises(paramiko.SSHException):
            transport.request_port_forward("127.0.0.1", 0)
        assert c.call(*node.endpoint, "hello")["node_name"] == "node2"  # refusals leave the connection usable


def test_other_functions(lab: Lab) -> None:
    node = lab.node("node1")
    with client_for(lab) as c:
        cfg = c.call(*node.endpoint, "cluster.get_config")
        assert cfg["xml"] == conf_xml(NAMES, 1) and cfg["version"] == 1 and len(cfg["hash"]) == 64
        started = c.call(*node.endpoint, "node.start")  # starts cman (`cman_tool join -w`) on node1
        assert started["action"] == "start" and started["daemons"]["cman"]["ok"]
        cman = c.call(*node.endpoint, "cman.status")
        assert cman["running"] and cman["node"]["name"] == "node1"
        summary = c.call(*node.endpoint, "cluster.status")["cman"]
        assert summary["running"] and summary["membership_state"] in ("Joining", "Cluster-Member")
        assert "quorum" in summary and "fencing" in summary
        again = c.call(*node.endpoint, "node.start")
        assert "already running" in again["daemons"]["cman"]["message"]
        stopped = c.call(*node.endpoint, "node.stop")
        assert stopped["action"] == "stop" and stopped["daemons"]["cman"]["ok"]
        assert c.call(*node.endpoint, "cman.status")["running"] is False
        assert c.call(*node.endpoint, "cluster.status")["cman"]["running"] is False
        entries = c.call(*node.endpoint, "log.get", {"age": 300, "tags": ["ricci"]})["entries"]
        assert any("listening on" in e["msg"] for e in entries)
        assert c.call(*node.endpoint, "log.get", {"age": 300, "tags": ["nosuch"]})["entries"] == []
        with pytest.raises(RicciError) as missing:
            c.call(*node.endpoint, "cluster.get_version", {"version": 99})
        assert missing.value.code == "version_not_found"


def test_cli_trust_call_and_clean_sigterm(lab: Lab, tmp_path: Path) -> None:
    node = lab.node("node3")
    env = {**os.environ, "CLUSTER_ROOT": str(lab.client_root)}
    target = f"{node.address}:{node.port}"
    fp = keys.ensure_host_key(node.root)
    (lab.client_root / "etc/ricci/known_hosts").unlink()
    wrong = subprocess.run([str(RICCI), "trust", target, "--fingerprint", "SHA256:nope"], env=env,
                           capture_output=True, text=True, timeout=30)
    assert wrong.returncode != 0 and fp in wrong.stderr and "not pinned" in wrong.stderr
    ok = subprocess.run([str(RICCI), "trust", target, "--fingerprint", fp], env=env, capture_output=True,
                        text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    out = subprocess.run([str(RICCI), "call", target, "hello"], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and json.loads(out.stdout)["node_name"] == "node3"
    bad = subprocess.run([str(RICCI), "call", target, "nope.fn"], env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown_function" in bad.stderr and "Traceback" not in bad.stderr
    assert exit_code(lab.stop("node3")) == 0  # SIGTERM: a clean exit
    no_root = subprocess.run([str(RICCI), "serve"], env={k: v for k, v in os.environ.items() if k != "CLUSTER_ROOT"},
                             capture_output=True, text=True, timeout=30)
    assert no_root.returncode == 1 and no_root.stderr.count("\n") == 1 and "CLUSTER_ROOT" in no_root.stderr


# -- authentication: a key query or a forged signature is not a login ---------------------------------------
class _ForgingAuth(AuthHandler):
    """A client that holds only an authorised *public* key: it sends key queries (no signature) and requests
    with a forged signature, in the order of `plan` ("query" / "forge"), one after each answer."""

    def __init__(self, transport: paramiko.Transport, key: paramiko.PKey, plan: list[str]) -> None:
        super().__init__(transport)
        self.key, self.plan = key, list(plan)
        self.answers: list[str] = []
        self.done = threading.Event()

    def _send_next(self) -> None:
        if not self.plan:
            self.done.set()
            return
        kind = self.plan.pop(0)
        m = Message()
        m.add_byte(cMSG_USERAUTH_REQUEST)
        m.add_string("ricci")
        m.add_string("ssh-connection")
        m.add_string("publickey")
        m.add_boolean(kind == "forge")
        m.add_string(self.key.get_name())
        m.add_string(self.key.asbytes())
        if kind == "forge":
            sig = Message()
            sig.add_string(self.key.get_name())
            sig.add_string(os.urandom(64))
            m.add_string(sig.asbytes())
        self.transport._send_message(m)

    def _parse_service_accept(self, m: Message) -> None:
        self._send_next()

    def _parse_userauth_info_request(self, m: Message) -> None:  # message 60 is USERAUTH_PK_OK here
        self.answers.append("pk_ok")
        self._send_next()

    def _parse_userauth_failure(self, m: Message) -> None:
        self.answers.append("failure")
        self._send_next()

    def _parse_userauth_success(self, m: Message) -> None:
        self.answers.append("success")
        self.done.set()


def _forging_transport(lab: Lab, node_name: str, source: str, plan: list[str]) -> tuple[paramiko.Transport,
                                                                                          _ForgingAuth]:
    node = lab.node(node_name)
    key = paramiko.Ed25519Key.from_private_key_file(str(keys.client_key_path(lab.client_root)))  # its public half only
    sock = socket.create_connection(node.endpoint, timeout=5, source_address=(source, 0))
    transport = paramiko.Transport(sock)
    transport.start_client(timeout=5)
    handler = _ForgingAuth(transport, key, plan)
    transport.auth_handler = handler
    with transport.lock:
        handler._request_auth()
    return transport, handler


@pytest.fixture
def quick_lab(tmp_path: Path) -> Iterator[Lab]:
    """Agents that give a connection 2 s to authenticate."""
    yield from running_lab(tmp_path, NAMES, login_grace=2.0)


def test_key_query_and_forged_signature_are_not_a_login(quick_lab: Lab) -> None:
    lab, node = quick_lab, quick_lab.node("node1")
    source = other_address(lab, 95)
    transport, handler = _forging_transport(lab, "node1", source, ["query", "forge", "query"])
    try:
        assert handler.done.wait(10)
        assert handler.answers == ["pk_ok", "failure", "pk_ok"]  # the key is listed, the signature is not valid
        assert not transport.is_authenticated()
        # the connection still counts as waiting to authenticate: the per-source cap is reached with 2 more
        more = [socket.create_connection(node.endpoint, timeout=5, source_address=(source, 0))
                for _ in range(MAX_UNAUTHENTICATED_PER_SOURCE)]
        try:
            assert [s.recv(4) for s in more] == [b"SSH-"] * (MAX_UNAUTHENTICATED_PER_SOURCE - 1) + [b""]
        finally:
            for s in more:
                s.close()
        # and the grace time closes it (2 s here)
        assert wait_for(lambda: not transport.is_active(), 8)
    finally:
        transport.close()
    text = log_text(node)
    assert f"auth accepted from {source}:" not in text
    assert f"auth refused from {source}:" in text and "invalid signature" in text
    assert f"closing the connection from {source}:" in text and "no authentication within 2 s" in text


def test_auth_attempts_are_counted_queries_included(lab: Lab) -> None:
    node = lab.node("node2")
    source = other_address(lab, 94)
    transport, handler = _forging_transport(lab, "node2", source, ["query"] * (MAX_AUTH_ATTEMPTS + 3))
    try:
        assert wait_for(lambda: not transport.is_active(), 10)  # closed: no endless free queries
        assert handler.answers.count("pk_ok") == MAX_AUTH_ATTEMPTS
    finally:
        transport.close()
    assert f"closing the connection from {source}:" in log_text(node)
    assert f"auth accepted from {source}:" not in log_text(node)


def test_authorized_keys_lines_with_options_are_refused(lab: Lab, tmp_path: Path) -> None:
    node = lab.node("node3")
    optioned = tmp_path / "optioned"
    line = keys.ensure_client_key(optioned)
    keys.pin_host_key(optioned, node.address, node.port, keys.host_public_key(node.root))
    with open(node.root / keys.AUTHORIZED_KEYS, "a") as f:
        f.write(f'from="127.0.0.0/8",command="/bin/true" {line}\n')
    with RicciClient.for_root(optioned) as c, pytest.raises(RicciError) as exc:
        c.call(*node.endpoint, "hello")
    assert exc.value.code == "auth_failed"
    assert "key options or an unknown key type are not supported" in log_text(node)


def test_removing_a_key_from_authorized_keys_closes_its_sessions(lab: Lab, tmp_path: Path) -> None:
    node = lab.node("node1")
    guest = tmp_path / "guest"
    line = keys.ensure_client_key(guest)
    keys.pin_host_key(guest, node.address, node.port, keys.host_public_key(node.root))
    path = node.root / keys.AUTHORIZED_KEYS
    before = path.read_text()
    keys.authorize(node.root, line)
    with RicciClient.for_root(guest) as c:
        assert c.call(*node.endpoint, "hello")["node_name"] == "node1"
        transport = c._connection(*node.endpoint).transport
        path.write_text(before)  # the guest's key is gone
        assert wait_for(lambda: not transport.is_active(), 10)
        with pytest.raises(RicciError) as exc:
            c.call(*node.endpoint, "hello")
        assert exc.value.code in ("auth_failed", "connection_lost")
    assert "is no longer in authorized_keys" in log_text(node)
    with client_for(lab) as admin:  # the others stay in
        assert admin.call(*node.endpoint, "hello")["node_name"] == "node1"


def test_closed_channels_are_counted_out_of_the_per_connection_limit(lab: Lab) -> None:
    node = lab.node("node1")
    with client_for(lab) as c:
        c.call(*node.endpoint, "hello")
        transport = c._connection(*node.endpoint).transport  # holds one channel already
        for _ in range(3):
            extra = [transport.open_session(timeout=5) for _ in range(3)]  # 4 open: the limit
            with pytest.raises(paramiko.ChannelException):
                transport.open_session(timeout=5)
            for chan in extra:
                chan.close()

            def can_open() -> bool:
                try:
                    transport.open_session(timeout=5).close()
                    return True
                except paramiko.ChannelException:
                    return False

            assert wait_for(can_open, 5)
            time.sleep(1.2)  # let the agent count that probe channel out too
        assert c.call(*node.endpoint, "hello")["node_name"] == "node1"


# -- timeouts: a hung (SIGSTOPped) agent ----------------------------------------------------------------------
def test_hung_agent_after_connecting_costs_its_timeouts_and_the_push_still_answers(lab: Lab) -> None:
    hung = lab.node("node3")
    with client_for(lab) as c:
        for node in lab.nodes:
            c.call(*node.endpoint, "hello")
        push(c, lab, "node1", 2)  # node1 now holds open connections to its peers
        assert hung.pid is not None
        os.kill(hung.pid, signal.SIGSTOP)
        try:
            # a request on an already open channel times out; a second caller waiting for that connection gets
            # its own (shorter) timeout instead of queueing behind the first
            results: dict[str, object] = {}

            def first() -> None:
                started = time.monotonic()
                try:
                    c.call(*hung.endpoint, "hello", timeout=3.0)
                except RicciError as exc:
                    results["first"] = (exc.code, time.monotonic() - started)

            t = threading.Thread(target=first)
            t.start()
            time.sleep(0.3)
            started = time.monotonic()
            with pytest.raises(RicciError) as second:
                c.call(*hung.endpoint, "hello", timeout=1.0)
            assert second.value.code == "timeout" and time.monotonic() - started < 2.5
            t.join(10)
            code, elapsed = results["first"]  # type: ignore[misc]
            assert code == "timeout" and 2.5 < elapsed < 5.0
            # a propagated update: the caller's default (long) timeout outlasts the agent's budget for its peers
            started = time.monotonic()
            reply = push(c, lab, "node1", 3)
            assert time.monotonic() - started < 30
            outcomes = {n: o["outcome"] for n, o in reply["nodes"].items()}
            assert outcomes == {"node1": "updated", "node2": "updated", "node3": "unreachable"}
        finally:
            os.kill(hung.pid, signal.SIGCONT)
        assert wait_for(lambda: _version(c, hung) == 3, 20)  # it catches up once it runs again


def _version(c: RicciClient, node) -> int | None:  # type: ignore[no-untyped-def]
    try:
        return c.call(*node.endpoint, "hello")["config_version"]
    except RicciError:
        return None


# -- catch-up skips peers that do not answer ------------------------------------------------------------------
def test_periodic_catch_up_reaches_past_down_neighbours(tmp_path: Path) -> None:
    names = ["node1", "node2", "node3", "node4"]
    lab = make_lab(tmp_path, names, conf_xml(names, 1, cman=' ccsd_poll="300"'))
    try:
        lab.up(no_daemons=True)
        lab.stop("node2")
        lab.stop("node3")  # node1's two ring neighbours are down
        with client_for(lab, connect_timeout=1.0) as c:
            c.call(*lab.node("node4").endpoint, "cluster.set_config",
                   {"xml": conf_xml(names, 2, cman=' ccsd_poll="300"'), "propagate": False})
            assert wait_for(lambda: _version(c, lab.node("node1")) == 2, 30)
        assert "catch-up from node4" in log_text(lab.node("node1")) or (
            "from node4" in log_text(lab.node("node1")))
    finally:
        lab.down()


def test_no_valid_local_config_is_logged_once(tmp_path: Path) -> None:
    lab = make_lab(tmp_path, ["node1"], conf_xml(["node1"], 1))
    node = lab.node("node1")
    shutil.rmtree(node.root / STATE_DIR)  # a node that never accepted a configuration: no history
    node.config_path.write_text("<cluster name='x' config_version='1'><broken")
    try:
        lab.start("node1", no_daemons=True)
        assert wait_for(lambda: "no valid" in log_text(lab.node("node1")), 10)
        time.sleep(2.5)  # two more catch-up rounds
        assert log_text(lab.node("node1")).count("no valid") == 1
    finally:
        lab.down()


# -- replies carry the validation warnings; history names who pushed through whom -----------------------------
def test_warnings_travel_back_on_success_and_the_author_is_attributed(lab: Lab) -> None:
    warned = '<!-- w -->'
    with client_for(lab) as c:
        xml = conf_xml(NAMES, 2).replace("<rm/>", '<rm><service name="web"/><vm name="web"/></rm>') + warned
        reply = c.call(*lab.node("node1").endpoint, "cluster.set_config", {"xml": xml, "propagate": True})
        assert [r["code"] for r in reply["reports"]] == ["SERVICE_VM_NAME_CLASH"]
        assert {o["outcome"] for o in reply["nodes"].values()} == {"updated"}
        local = c.call(*lab.node("node1").endpoint, "cluster.versions")["versions"][-1]["author"]
        remote = c.call(*lab.node("node2").endpoint, "cluster.versions")["versions"][-1]["author"]
        admin = keys.ensure_client_key(lab.client_root).split()[2]  # the admin key's comment: ricci@<hostname>
        assert local.startswith(admin) and " via " not in local
        assert remote.startswith(admin) and remote.endswith(" via ricci@node1")
        # a caller that claims another author is shown with its own key
        xml3 = conf_xml(NAMES, 3)
        staged = c.call(*lab.node("node2").endpoint, "cluster.stage", {"xml": xml3, "author": "root\nforged"})
        assert staged["outcome"] == "staged" and staged["reports"] == []
        c.call(*lab.node("node2").endpoint, "cluster.commit", {"version": 3, "hash": staged["hash"]})
        author = c.call(*lab.node("node2").endpoint, "cluster.versions")["versions"][-1]["author"]
        assert author == f"root forged via {admin}"


# -- bad input ------------------------------------------------------------------------------------------------
def test_unencodable_and_deeply_nested_requests_get_clear_errors(lab: Lab) -> None:
    node = lab.node("node1")
    with client_for(lab) as c:
        c.call(*node.endpoint, "hello")
        conn = c._connection(*node.endpoint)
        surrogate = _raw_exchange(conn, b'{"v":1,"id":1,"fn":"cluster.set_config","args":{"xml":"\\ud800"}}\n')
        assert surrogate["error"]["code"] == "bad_arguments"
        nested = _raw_exchange(conn, b'{"v":1,"id":2,"fn":"hello","args":{"a":' + b"[" * 20000 + b"]" * 20000
                               + b"}}\n")
        assert nested["error"]["code"] == "malformed_request"
        odd_fn = _raw_exchange(conn, b'{"v":1,"id":3,"fn":"\\udc00x","args":{}}\n')
        assert odd_fn["id"] == 3 and odd_fn["error"]["code"] == "unknown_function"
        assert c.call(*node.endpoint, "hello")["node_name"] == "node1"
    assert "internal error" not in log_text(node)


def test_log_get_skips_symlinks(lab: Lab, tmp_path: Path) -> None:
    node = lab.node("node2")
    secret = tmp_path / "secret.txt"
    secret.write_text("2030-01-01T00:00:00.000 secret[1]: do not show\n")
    (node.root / "var/log/cluster/leak.log").symlink_to(secret)
    with client_for(lab) as c:
        entries = c.call(*node.endpoint, "log.get", {"age": 10**9})["entries"]
    assert entries and not any(e["tag"] == "secret" for e in entries)


def test_kill_9_of_an_agent_during_installs_then_restart_recovers(lab: Lab) -> None:
    node = lab.node("node1")
    rng = random.Random(99)
    pad = "<!--" + "x" * 200000 + "-->"
    for round_ in range(3):
        stop = threading.Event()

        def writer(base: int = 10 * (round_ + 1), stop: threading.Event = stop) -> None:
            with client_for(lab) as c:
                for v in range(base, base + 9):
                    if stop.is_set():
                        return
                    try:
                        c.call(*node.endpoint, "cluster.set_config",
                               {"xml": conf_xml(NAMES, v, extra=pad), "propagate": False})
                    except RicciError:
                        return

        t = threading.Thread(target=writer)
        t.start()
        time.sleep(rng.uniform(0.2, 0.6))
        lab.kill("node1")
        stop.set()
        t.join(30)
        data = node.config_path.read_bytes()
        version = ClusterConf.from_bytes(data).config_version  # whole: parses
        lab.start("node1")
        with client_for(lab) as c:
            info = c.call(*node.endpoint, "hello")
            history = c.call(*node.endpoint, "cluster.versions")
        assert info["config_version"] >= version
        assert history["current"]["hash"] == info["config_hash"]  # the live file is a recorded version
        leftovers = [p.name for p in node.config_path.parent.iterdir() if p.name.endswith((".tmp", ".tmp.old"))]
        assert leftovers == []


def test_client_closed_while_connecting_does_not_pool_the_connection(lab: Lab) -> None:
    made: list = []

    class ClosingClient(RicciClient):
        def _connect(self, host: str, port: int):  # type: ignore[no-untyped-def]
            conn = super()._connect(host, port)
            made.append(conn)
            self.close()  # close() lands while this connection is being made
            return conn

    key = paramiko.Ed25519Key.from_private_key_file(str(keys.client_key_path(lab.client_root)))
    client = ClosingClient(lab.client_root, key)
    with pytest.raises(RicciError) as exc:
        client.call(*lab.node("node1").endpoint, "hello")
    assert exc.value.code == "connection_lost"
    assert made and not made[0].transport.is_active() and client._connections == {}


def test_a_stage_from_an_agent_with_the_same_validator_is_not_validated_again(lab: Lab) -> None:
    # A copy the full validation refuses (two nodes with one nodeid) shows which path a stage request took.
    bad = conf_xml(NAMES, 7).replace('nodeid="2"', 'nodeid="1"')
    digest = content_hash(bad.encode())
    target = lab.node("node2").endpoint
    with client_for(lab) as c:
        with pytest.raises(RicciError) as other:  # another validator version: validated in full, refused
            c.call(*target, "cluster.stage", {"xml": bad, "hash": digest, "validator": "cluster_conf-other"})
        assert other.value.code == "config_invalid"
        with pytest.raises(RicciError) as damaged:  # the same validator, but bytes that do not match the hash
            c.call(*target, "cluster.stage", {"xml": bad, "hash": "0" * 64, "validator": validator_version()})
        assert damaged.value.code == "config_invalid" and "do not match the hash" in damaged.value.message
        staged = c.call(*target, "cluster.stage", {"xml": bad, "hash": digest, "validator": validator_version()})
        assert staged["outcome"] == "staged" and staged["hash"] == digest
        c.call(*target, "cluster.abort", {"version": 7, "hash": digest})
        # A real push carries the hash and the validator: every peer takes it on the short path.
        reply = push(c, lab, "node1", 2)
        assert {n: o["outcome"] for n, o in reply["nodes"].items()} == dict.fromkeys(NAMES, "updated")
    assert (lab.node("node2").config_path.read_text(), lab.node("node3").config_path.read_text()) == (
        conf_xml(NAMES, 2), conf_xml(NAMES, 2))


def test_established_connections_use_aes_gcm_wake_rarely_and_close_at_once(lab: Lab) -> None:
    """A pooled connection negotiates AES-GCM (no per-packet HMAC in Python), its transport thread polls its
    socket every IDLE_WAKEUP s instead of paramiko's 0.1 s, and close() still ends it at once; the fan-out
    threads are kept from one fan-out to the next, and a closed client answers connection_lost for every node."""
    targets = [n.endpoint for n in lab.nodes]
    c = client_for(lab)
    try:
        assert all(r.ok for r in c.fan_out(targets, "hello").values())
        conn = c._connection(*targets[0])
        assert conn.transport.remote_cipher == conn.transport.local_cipher == "aes128-gcm@openssh.com"
        assert conn.transport.sock.gettimeout() == IDLE_WAKEUP
        workers = {t.ident for t in threading.enumerate() if t.name.startswith("ricci-fan-out")}
        assert len(workers) >= 2
        assert all(r.ok for r in c.fan_out(targets, "hello").values())
        assert {t.ident for t in threading.enumerate() if t.name.startswith("ricci-fan-out")} == workers
        reader = conn.transport
    finally:
        c.close()
    assert wait_for(lambda: not reader.is_alive(), IDLE_WAKEUP / 2)  # woken by the shutdown, not the timeout
    closed = c.fan_out(targets, "hello")
    assert {r.code for r in closed.values()} == {"connection_lost"}
