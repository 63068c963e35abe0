"""The `ip` agent: a floating IPv4/IPv6 address on the interface whose network contains it.

Real mode (any address outside the loopback range) uses Linux iproute2: `ip -j addr show` to find the interface
whose configured network contains the address, `ip addr add ADDR/PREFIX dev DEV` and `ip addr del`. With
monitor_link="1" (the default) status also fails when that interface's link is down. After adding an IPv4
address a gratuitous ARP is sent when an `arping` program is installed (best effort).

Loopback mode (addresses in 127.0.0.0/8 and ::1): the kernel already routes every such address to `lo`, so the
agent changes no interface; start and status check that the address is usable by binding a socket to it, stop
does nothing. Local test clusters therefore work without root.

Refused before anything runs: IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`: write the IPv4 address, which
also selects loopback mode for ::ffff:127.x), and an explicit IPv4 prefix broader than /8.
"""
from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any

from rgmanager.agents.base import OCF, Agent, AgentError, Result, find_program, register, run_process

Interface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
# An explicit IPv4 prefix broader than this is a typo (10.1.2.3/4), not a network anyone assigns.
MIN_IPV4_PREFIX = 8


def parse_address(text: str | None, family: str | None = None) -> Interface:
    """The resource's address as an interface (address with prefix); AgentError with one clear line if invalid.

    Accepts `10.1.1.5`, `10.1.1.5/24`, `10.1.1.5/255.255.255.0`, `2001:db8::5`, `2001:db8::5/64`.
    """
    raw = (text or "").strip()
    if not raw:
        raise AgentError(OCF.ERR_CONFIGURED, "ip: the address attribute is empty")
    try:
        iface = ipaddress.ip_interface(raw)
    except ValueError:
        raise AgentError(OCF.ERR_CONFIGURED, f"ip: {raw!r} is not a valid IPv4 or IPv6 address") from None
    version = iface.version
    if family == "inet" and version != 4:
        raise AgentError(OCF.ERR_CONFIGURED, f"ip: {raw!r} is not an IPv4 address but family is 'inet'")
    if family == "inet6" and version != 6:
        raise AgentError(OCF.ERR_CONFIGURED, f"ip: {raw!r} is not an IPv6 address but family is 'inet6'")
    addr = iface.ip
    if version == 6 and addr.ipv4_mapped is not None:  # type: ignore[union-attr]
        raise AgentError(OCF.ERR_CONFIGURED, f"ip: {raw!r} is an IPv4-mapped IPv6 address; write the IPv4 "
                         f"address {addr.ipv4_mapped} instead")  # type: ignore[union-attr]
    if "/" in raw and version == 4 and iface.network.prefixlen < MIN_IPV4_PREFIX:
        raise AgentError(OCF.ERR_CONFIGURED, f"ip: {raw!r} has a prefix broader than /{MIN_IPV4_PREFIX}")
    if addr.is_unspecified or addr.is_multicast:
        kind = "unspecified" if addr.is_unspecified else "multicast"
        raise AgentError(OCF.ERR_CONFIGURED, f"ip: {raw!r} is a {kind} address and cannot be assigned")
    edges = (iface.network.network_address, iface.network.broadcast_address)
    if "/" in raw and version == 4 and iface.network.prefixlen < 31 and addr in edges:
        raise AgentError(OCF.ERR_CONFIGURED, f"ip: {raw!r} is the network or broadcast address of its subnet")
    return iface


def is_loopback(iface: Interface) -> bool:
    return iface.ip.is_loopback


def bind_check(address: str, version: int) -> str | None:
    """None if a socket can be bound to `address` (it is usable on this host), else the reason."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


@register
class IpAgent(Agent):
    type_name = "ip"
    description = (
        "A floating IP address. Loopback addresses (127.0.0.0/8, ::1) use loopback mode: no interface changes, "
        "only a check that the address can be bound."
    )
    programs = ("ip", "arping")

    def address(self) -> Interface:
        return parse_address(self.param("address"), self.param("family") or None)

    def check(self) -> None:
        self.address()

    # -- iproute2 ------------------------------------------------------------------------------------------
    def _links(self) -> list[dict[str, Any]]:
        result = self.execute(["ip", "-j", "addr", "show"], check=True, what="ip addr show")
        try:
            data = json.loads(result.stdout or "[]")
        except ValueError:
            raise AgentError(OCF.ERR_GENERIC, "ip -j addr show printed output that is not JSON") from None
        return data if isinstance(data, list) else []

    def _configured_on(self, links: list[dict[str, Any]], iface: Interface) -> tuple[dict[str, Any], int] | None:
        """(link, prefix length) where the address is configured, if it is."""
        family = "inet" if iface.version == 4 else "inet6"
        for link in links:
            for info in link.get("addr_info", []):
                if info.get("family") == family and _same_ip(info.get("local"), iface):
                    return link, int(info.get("prefixlen", iface.network.prefixlen))
        return None

    def _target_link(self, links: list[dict[str, Any]], iface: Interface) -> tuple[dict[str, Any], int]:
        """The link whose configured network contains the address, and the prefix length to use."""
        family = "inet" if iface.version == 4 else "inet6"
        wanted = self.param("prefer_interface")
        explicit = "/" in (self.param("address") or "")
        for link in links:
            if wanted and link.get("ifname") != wanted:
                continue
            for info in link.get("addr_info", []):
                if info.get("family") != family or info.get("scope") == "host":
                    continue
                try:
                    network = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}").network
                except (KeyError, ValueError):
                    continue
                if iface.ip in network:
                    return link, iface.network.prefixlen if explicit else network.prefixlen
        where = f"interface {wanted!r}" if wanted else "no interface"
        raise AgentError(
            OCF.ERR_CONFIGURED,
            f"ip: {where} has a configured network containing {iface.ip}; add a base address on that subnet first",
        )

    def _link_check(self, link: dict[str, Any]) -> None:
        if not self.flag("monitor_link"):
            return
        flags = link.get("flags", [])
        if "UP" not in flags or "LOWER_UP" not in flags or "NO-CARRIER" in flags:
            raise AgentError(OCF.ERR_GENERIC, f"ip: link on {link.get('ifname')} is down")

    def _announce(self, device: str, iface: Interface) -> None:
        """Gratuitous ARP so neighbours update their caches; best effort, only if arping is installed."""
        if iface.version != 4 or find_program("arping") is None:
            return
        result = run_process(
            ["arping", "-U", "-c", "1", "-I", device, "-s", str(iface.ip), str(iface.ip)],
            timeout=min(5.0, self.remaining()),
        )
        if result.rc != 0:
            self.log(f"ip: gratuitous ARP for {iface.ip} on {device} failed: {result.last_line()}")

    # -- operations ----------------------------------------------------------------------------------------
    def _start(self) -> Result:
        iface = self.address()
        if is_loopback(iface):
            return self._loopback_check(iface, "start")
        links = self._links()
        found = self._configured_on(links, iface)
        if found is not None:
            link, _prefix = found
            self._link_check(link)
            return Result(OCF.SUCCESS, f"{iface.ip} is already configured on {link.get('ifname')}")
        link, prefix = self._target_link(links, iface)
        self._link_check(link)
        device = str(link.get("ifname"))
        argv = ["ip", "-4" if iface.version == 4 else "-6", "addr", "add", f"{iface.ip}/{prefix}"]
        if iface.version == 4:
            argv += ["brd", "+"]
        self.execute([*argv, "dev", device], check=True, what=f"ip addr add {iface.ip}")
        self._announce(device, iface)
        return Result(OCF.SUCCESS, f"{iface.ip}/{prefix} added to {device}")

    def _stop(self) -> Result:
        iface = self.address()
        if is_loopback(iface):
            return Result(OCF.SUCCESS, f"loopback mode: {iface.ip} needs no interface change")
        found = self._configured_on(self._links(), iface)
        if found is None:
            return Result(OCF.SUCCESS, f"{iface.ip} is not configured; nothing to remove")
        link, prefix = found
        device = str(link.get("ifname"))
        family = "-4" if iface.version == 4 else "-6"
        self.execute(["ip", family, "addr", "del", f"{iface.ip}/{prefix}", "dev", device],
                     check=True, what=f"ip addr del {iface.ip}")
        return Result(OCF.SUCCESS, f"{iface.ip}/{prefix} removed from {device}")

    def _status(self, depth: int) -> Result:
        iface = self.address()
        if is_loopback(iface):
            return self._loopback_check(iface, "status")
        found = self._configured_on(self._links(), iface)
        if found is None:
            return Result(OCF.NOT_RUNNING, f"{iface.ip} is not configured on any interface")
        link, _prefix = found
        self._link_check(link)
        if depth >= 10:
            reason = bind_check(str(iface.ip), iface.version)
            if reason:
                return Result(OCF.ERR_GENERIC, f"{iface.ip} is configured but cannot be bound: {reason}")
        return Result(OCF.SUCCESS, f"{iface.ip} is configured on {link.get('ifname')}")

    def _loopback_check(self, iface: Interface, op: str) -> Result:
        reason = bind_check(str(iface.ip), iface.version)
        if reason:
            return Result(OCF.ERR_GENERIC, f"loopback mode: cannot bind to {iface.ip}: {reason}")
        return Result(OCF.SUCCESS, f"loopback mode: {iface.ip} is usable (no interface changed)")


def _same_ip(local: object, iface: Interface) -> bool:
    try:
        return ipaddress.ip_address(str(local)) == iface.ip
    except ValueError:
        return False
