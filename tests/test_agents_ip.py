"""The ip agent: loopback mode on 127.0.0.x, address validation, and real `ip addr add/del` and link monitoring
inside a network namespace the test creates (`unshare --net`), so the host's interfaces are never touched."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rgmanager.agents import OCF, agent_for
from rgmanager.agents.ip import parse_address

REPO = Path(__file__).resolve().parents[1]


def _ip_state() -> str:
    return subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout


def test_loopback_mode_changes_no_interface_and_checks_the_address_is_usable() -> None:
    before = _ip_state()
    agent = agent_for("ip")({"address": "127.0.0.77"})
    for run in (agent.start, agent.status, lambda: agent.status(10)):
        result = run()
        assert result.ok, result
        assert result.message == "loopback mode: 127.0.0.77 is usable (no interface changed)"
        assert _ip_state() == before  # after start and after each status, not only at the end
    # the address really is usable: a server can listen on it while the resource is "started"
    with socket.socket() as server:
        server.bind(("127.0.0.77", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
    stopped = agent.stop()
    assert stopped.ok and "loopback mode" in stopped.message
    assert _ip_state() == before


def test_loopback_mode_for_ipv6_localhost() -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support")
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"::1 cannot be bound on this host: {exc.strerror}")
    result = agent_for("ip")({"address": "::1"}).start()
    assert result.ok and "loopback mode" in result.message


@pytest.mark.parametrize(
    ("address", "family", "message"),
    [
        ("10.0.0.300", None, "ip: '10.0.0.300' is not a valid IPv4 or IPv6 address"),
        ("not-an-ip", None, "ip: 'not-an-ip' is not a valid IPv4 or IPv6 address"),
        ("10.1.2.3/33", None, "ip: '10.1.2.3/33' is not a valid IPv4 or IPv6 address"),
        ("10.1.2.3; rm -rf /", None, "ip: '10.1.2.3; rm -rf /' is not a valid IPv4 or IPv6 address"),
        ("2001:db8:::1", None, "ip: '2001:db8:::1' is not a valid IPv4 or IPv6 address"),
        ("2001:db8::g", None, "ip: '2001:db8::g' is not a valid IPv4 or IPv6 address"),
        ("0.0.0.0", None, "ip: '0.0.0.0' is a unspecified address and cannot be assigned"),
        ("224.0.0.5", None, "ip: '224.0.0.5' is a multicast address and cannot be assigned"),
        ("ff02::1", None, "ip: 'ff02::1' is a multicast address and cannot be assigned"),
        ("10.1.2.0/24", None, "ip: '10.1.2.0/24' is the network or broadcast address of its subnet"),
        ("10.1.2.255/24", None, "ip: '10.1.2.255/24' is the network or broadcast address of its subnet"),
        ("2001:db8::5", "inet", "ip: '2001:db8::5' is not an IPv4 address but family is 'inet'"),
        ("10.1.2.3", "inet6", "ip: '10.1.2.3' is not an IPv6 address but family is 'inet6'"),
        ("::ffff:10.0.0.1", None,
         "ip: '::ffff:10.0.0.1' is an IPv4-mapped IPv6 address; write the IPv4 address 10.0.0.1 instead"),
        ("::ffff:127.0.0.5", None,
         "ip: '::ffff:127.0.0.5' is an IPv4-mapped IPv6 address; write the IPv4 address 127.0.0.5 instead"),
        ("10.1.2.3/4", None, "ip: '10.1.2.3/4' has a prefix broader than /8"),
        ("10.1.2.3/0", None, "ip: '10.1.2.3/0' has a prefix broader than /8"),
        ("10.1.2.3/240.0.0.0", None, "ip: '10.1.2.3/240.0.0.0' has a prefix broader than /8"),
    ],
)
def test_invalid_addresses_give_one_clear_error(address: str, family: str | None, message: str) -> None:
    attrs = {"address": address, **({"family": family} if family else {})}
    agent = agent_for("ip")(attrs)
    for result in (agent.validate(), agent.start()):
        assert result.rc == OCF.ERR_CONFIGURED
        assert result.message == message
        assert "\n" not in result.message


def test_family_outside_the_allowed_choices_is_refused() -> None:
    result = agent_for("ip")({"address": "10.1.2.3", "family": "ipx"}).validate()
    assert result.rc == OCF.ERR_CONFIGURED and result.message == "ip: family='ipx' is not one of auto, inet, inet6"


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("2001:db8::5", "2001:db8::5/128"),
        ("2001:db8::5/64", "2001:db8::5/64"),
        ("fe80::1/64", "fe80::1/64"),
        ("10.1.2.3/8", "10.1.2.3/8"),
        ("10.1.2.3", "10.1.2.3/32"),
        ("10.1.2.3/255.255.255.0", "10.1.2.3/24"),
    ],
)
def test_valid_addresses_parse(address: str, expected: str) -> None:
    assert str(parse_address(address)) == expected
    assert agent_for("ip")({"address": address}).validate().ok


NAMESPACE_SCENARIO = r"""
import json, subprocess, sys
from rgmanager.agents import agent_for

def sh(*argv):
    subprocess.run(argv, check=True, capture_output=True)

def addrs(dev):
    data = json.loads(subprocess.run(["ip", "-j", "addr", "show", "dev", dev], capture_output=True, text=True,
                                     check=True).stdout)
    return sorted(f"{a['local']}/{a['prefixlen']}" for a in data[0]["addr_info"] if a["scope"] != "link")

out = {}
sh("ip", "link", "set", "lo", "up")
sh("ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1")
sh("ip", "addr", "add", "10.9.0.1/24", "dev", "v0")
sh("ip", "addr", "add", "2001:db8:9::1/64", "dev", "v0", "nodad")
sh("ip", "link", "set", "v1", "up")
sh("ip", "link", "set", "v0", "up")

v4 = agent_for("ip")({"address": "10.9.0.50"}, log=lambda line: None)
out["status_before"] = v4.status().rc
r = v4.start(); out["start"] = [r.rc, r.message]
out["addrs_after_start"] = addrs("v0")
r = v4.start(); out["start_again"] = [r.rc, r.message]
r = v4.status(10); out["status"] = [r.rc, r.message]
sh("ip", "link", "set", "v1", "down")          # carrier lost on v0
r = v4.status(); out["status_link_down"] = [r.rc, r.message]
nomon = agent_for("ip")({"address": "10.9.0.50", "monitor_link": "0"})
out["status_link_down_unmonitored"] = nomon.status().rc
sh("ip", "link", "set", "v1", "up")
r = v4.stop(); out["stop"] = [r.rc, r.message]
out["addrs_after_stop"] = addrs("v0")
out["status_after_stop"] = v4.status().rc
r = v4.stop(); out["stop_again"] = [r.rc, r.message]

v6 = agent_for("ip")({"address": "2001:db8:9::50"})
r = v6.start(); out["v6_start"] = [r.rc, r.message]
out["v6_addrs"] = addrs("v0")
out["v6_status"] = v6.status().rc
r = v6.stop(); out["v6_stop"] = [r.rc, r.message]
out["v6_addrs_after_stop"] = addrs("v0")

r = agent_for("ip")({"address": "10.77.0.1"}).start(); out["no_subnet"] = [r.rc, r.message]
r = agent_for("ip")({"address": "10.9.0.60", "prefer_interface": "lo"}).start(); out["wrong_iface"] = [r.rc, r.message]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def namespace_run() -> dict:
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("ip") is None:
        pytest.skip("needs util-linux 'unshare' and iproute2 'ip' to build a private network namespace")
    probe = subprocess.run([unshare, "--net", "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                           capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace with a veth pair: {probe.stderr.strip()}")
    done = subprocess.run([unshare, "--net", sys.executable, "-c", NAMESPACE_SCENARIO],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_real_ipv4_address_is_added_checked_and_removed(namespace_run: dict) -> None:
    out = namespace_run
    assert out["status_before"] == OCF.NOT_RUNNING
    assert out["start"] == [0, "10.9.0.50/24 added to v0"]
    assert out["addrs_after_start"] == ["10.9.0.1/24", "10.9.0.50/24", "2001:db8:9::1/64"]
    assert out["start_again"] == [0, "10.9.0.50 is already configured on v0"]
    assert out["status"] == [0, "10.9.0.50 is configured on v0"]
    assert out["stop"] == [0, "10.9.0.50/24 removed from v0"]
    assert out["addrs_after_stop"] == ["10.9.0.1/24", "2001:db8:9::1/64"]
    assert out["status_after_stop"] == OCF.NOT_RUNNING
    assert out["stop_again"] == [0, "10.9.0.50 is not configured; nothing to remove"]


def test_link_monitoring_fails_status_when_carrier_is_lost(namespace_run: dict) -> None:
    assert namespace_run["status_link_down"] == [OCF.ERR_GENERIC, "ip: link on v0 is down"]
    assert namespace_run["status_link_down_unmonitored"] == OCF.SUCCESS


def test_real_ipv6_address(namespace_run: dict) -> None:
    out = namespace_run
    assert out["v6_start"] == [0, "2001:db8:9::50/64 added to v0"]
    assert "2001:db8:9::50/64" in out["v6_addrs"]
    assert out["v6_status"] == OCF.SUCCESS
    assert out["v6_stop"] == [0, "2001:db8:9::50/64 removed from v0"]
    assert "2001:db8:9::50/64" not in out["v6_addrs_after_stop"]


def test_address_outside_every_configured_network_is_refused(namespace_run: dict) -> None:
    assert namespace_run["no_subnet"] == [
        OCF.ERR_CONFIGURED,
        "ip: no interface has a configured network containing 10.77.0.1; add a base address on that subnet first",
    ]
    assert namespace_run["wrong_iface"][0] == OCF.ERR_CONFIGURED
    assert "interface 'lo'" in namespace_run["wrong_iface"][1]
