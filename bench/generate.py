"""A deterministic generator of a large, realistic, valid cluster.conf, and of a slightly changed copy.

The default size is what the benchmarks use: 1000 nodes, 1000 fence devices, 100 failover domains and 5000
resource groups (every 50th one a <vm>, the rest <service>s with nested resources).

Layout, so that every cross-reference resolves:
- node N (1-based) has method "ipmi" with its own fence_ipmilan device when N <= ipmi_count (900 of 1000 by
  default), and method "pdu" on an APC switch: switch (N-1) % pdus, port (N-1) // pdus + 1;
- failover domain D holds a contiguous block of nodes; odd domains are ordered (members get priorities), every
  third is restricted, every fifth has nofailback;
- service S uses domain S % domains, references the global <ip> S (`<ip ref=...>`), and holds an inline <fs>
  (with <nfsexport>/<nfsclient>s for two services in three, or an <apache> for the rest) and a <script>; every
  100th service depends on the previous one.
Nothing is random: the same arguments always give the same bytes.
"""
from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass
from xml.sax.saxutils import quoteattr

from lxml import etree


@dataclass(frozen=True, slots=True)
class Size:
    nodes: int = 1000
    fence_devices: int = 1000
    domains: int = 100
    services: int = 5000
    vm_every: int = 50  # every n-th resource group is a <vm>
    rich: bool = True  # False: the reference shape of stack-notes §4 (one fence method per node; services are
    # an ip ref and an fs holding a script), on which the time targets were set

    @property
    def pdus(self) -> int:
        """APC switches: a tenth of the fence devices (at least one); the rest are per-node IPMI boards."""
        return max(1, self.fence_devices // 10)

    @property
    def ipmi_count(self) -> int:
        return min(self.nodes, max(0, self.fence_devices - self.pdus))


BENCH_SIZE = Size()
REFERENCE_SIZE = Size(vm_every=0, rich=False)
SMALL_SIZE = Size(nodes=10, fence_devices=10, domains=3, services=20, vm_every=7)


def _tag(name: str, attrs: dict[str, str], *, close: bool = True) -> str:
    text = " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items())
    return f"<{name} {text}{'/' if close else ''}>" if text else f"<{name}{'/' if close else ''}>"


def node_name(n: int) -> str:
    return f"node{n:04d}.example.com"


def service_name(s: int) -> str:
    return f"svc-{s:04d}"


def _ip(prefix: int, i: int) -> str:
    return f"10.{prefix}.{i // 250}.{i % 250 + 1}"


def _cluster_sections(size: Size) -> list[str]:
    return [
        '  <cman port="5405" cluster_id="4242">',
        '    <multicast addr="239.192.16.42"/>',
        "  </cman>",
        '  <totem token="21000" join="60" token_retransmits_before_loss_const="10"/>',
        '  <fence_daemon post_join_delay="20" post_fail_delay="0" clean_start="0"/>',
        '  <logging to_syslog="yes" syslog_facility="local4" to_logfile="yes"'
        ' logfile="/var/log/cluster/cluster.log" logfile_priority="info">',
        '    <logging_daemon name="rgmanager" debug="on"/>',
        '    <logging_daemon name="corosync" subsys="CMAN" debug="off"/>',
        "  </logging>",
    ]


def _node(n: int, size: Size) -> list[str]:
    pdu = (n - 1) % size.pdus
    port = (n - 1) // size.pdus + 1
    lines = [f"    {_tag('clusternode', {'name': node_name(n), 'nodeid': str(n), 'votes': '1'}, close=False)}"]
    lines.append("      <fence>")
    if not size.rich:
        lines.append('        <method name="power">')
        lines.append(f"          {_tag('device', {'name': f'ipmi-{n:04d}', 'lanplus': '1'})}")
        lines.append("        </method>")
        lines.append("      </fence>")
        lines.append("    </clusternode>")
        return lines
    if n <= size.ipmi_count:
        lines.append('        <method name="ipmi">')
        lines.append(f"          {_tag('device', {'name': f'ipmi-{n:04d}', 'lanplus': '1', 'action': 'reboot'})}")
        lines.append("        </method>")
    lines.append('        <method name="pdu">')
    lines.append(f"          {_tag('device', {'name': f'apc-{pdu:03d}', 'port': str(port), 'switch': '1'})}")
    lines.append("        </method>")
    lines.append("      </fence>")
    lines.append("    </clusternode>")
    return lines


def _fence_devices(size: Size) -> list[str]:
    lines = []
    ipmi_boards = size.ipmi_count if size.rich else size.fence_devices
    for n in range(1, ipmi_boards + 1):
        attrs = {
            "name": f"ipmi-{n:04d}",
            "agent": "fence_ipmilan",
            "ipaddr": _ip(1, n),
            "login": "admin",
            "passwd": f"ipmi-secret-{n:04d}",
            "lanplus": "1",
            "power_wait": "4",
        }
        lines.append(f"    {_tag('fencedevice', attrs)}")
    for p in range(size.pdus if size.rich else 0):
        attrs = {
            "name": f"apc-{p:03d}",
            "agent": "fence_apc",
            "ipaddr": _ip(4, p),
            "login": "apc",
            "passwd": f"apc-secret-{p:03d}",
        }
        lines.append(f"    {_tag('fencedevice', attrs)}")
    return lines


def _domain(d: int, size: Size) -> list[str]:
    ordered = d % 2 == 1
    attrs = {
        "name": f"dom-{d:03d}",
        "ordered": "1" if ordered else "0",
        "restricted": "1" if d % 3 == 0 else "0",
        "nofailback": "1" if d % 5 == 0 else "0",
    }
    per_domain = max(1, size.nodes // size.domains)
    first = (d * per_domain) % size.nodes
    lines = [f"      {_tag('failoverdomain', attrs, close=False)}"]
    for i in range(per_domain):
        member = {"name": node_name((first + i) % size.nodes + 1)}
        if ordered:
            member["priority"] = str(i + 1)
        lines.append(f"        {_tag('failoverdomainnode', member)}")
    lines.append("      </failoverdomain>")
    return lines


def _is_vm(s: int, size: Size) -> bool:
    return bool(size.vm_every) and s % size.vm_every == size.vm_every - 1


def _global_resources(size: Size) -> list[str]:
    """One global <ip> per <service> (vms have none), referenced with ref=."""
    return [
        f"      {_tag('ip', {'address': _ip(2, s), 'monitor_link': '1'})}"
        for s in range(size.services)
        if not _is_vm(s, size)
    ]


def _vm(s: int, size: Size) -> list[str]:
    attrs = {
        "name": f"vm-{s:04d}",
        "domain": f"dom-{s % size.domains:03d}",
        "path": "/etc/libvirt/qemu",
        "migrate": "live",
        "recovery": "restart",
        "max_restarts": "2",
        "restart_expire_time": "600",
    }
    return [f"    {_tag('vm', attrs)}"]


def _service(s: int, size: Size) -> list[str]:
    name = service_name(s)
    attrs = {
        "name": name,
        "domain": f"dom-{s % size.domains:03d}",
        "autostart": "1" if s % 7 else "0",
        "recovery": ("restart", "relocate", "restart-disable")[s % 3],
        "max_restarts": "3",
        "restart_expire_time": "10m",
    }
    if s % 100 == 1:
        attrs["depend"] = f"service:{service_name(s - 1)}"
    fs = {
        "name": f"data-{s:04d}",
        "device": f"/dev/vg_data/lv_{s:04d}",
        "mountpoint": f"/srv/{name}",
        "fstype": "ext4",
        "force_unmount": "1",
        "fsid": str(1000 + s),
    }
    lines = [f"    {_tag('service', attrs, close=False)}", f"      {_tag('ip', {'ref': _ip(2, s)})}"]
    lines.append(f"      {_tag('fs', fs, close=False)}")
    script = {"name": f"app-{s:04d}", "file": f"/etc/init.d/app-{s:04d}"}
    if not size.rich:
        lines.append(f"        {_tag('script', script)}")
        lines.extend(("      </fs>", "    </service>"))
        return lines
    if s % 3:
        lines.append(f"        {_tag('nfsexport', {'name': f'export-{s:04d}'}, close=False)}")
        for c, target in enumerate(("10.3.0.0/16", "backup.example.com")):
            client = {"name": f"client-{s:04d}-{c}", "target": target, "options": "rw,sync" if c == 0 else "ro"}
            lines.append(f"          {_tag('nfsclient', client)}")
        lines.append("        </nfsexport>")
    else:
        apache = {"name": f"httpd-{s:04d}", "server_root": "/etc/httpd", "shutdown_wait": "10"}
        lines.append(f"        {_tag('apache', apache)}")
    lines.append("      </fs>")
    lines.append(f"      {_tag('script', script)}")
    lines.append("    </service>")
    return lines


def generate(size: Size = BENCH_SIZE, *, name: str = "benchcluster", version: int = 1) -> bytes:
    """The whole document, as bytes, in the indented layout ccs_tool and luci write."""
    lines = ['<?xml version="1.0"?>', f"<cluster name={quoteattr(name)} config_version=\"{version}\">"]
    lines.extend(_cluster_sections(size))
    lines.append("  <clusternodes>")
    for n in range(1, size.nodes + 1):
        lines.extend(_node(n, size))
    lines.append("  </clusternodes>")
    lines.append("  <fencedevices>")
    lines.extend(_fence_devices(size))
    lines.append("  </fencedevices>")
    lines.append('  <rm log_level="6">')
    lines.append("    <failoverdomains>")
    for d in range(size.domains):
        lines.extend(_domain(d, size))
    lines.append("    </failoverdomains>")
    lines.append("    <resources>")
    lines.extend(_global_resources(size))
    lines.append("    </resources>")
    for s in range(size.services):
        lines.extend(_vm(s, size) if _is_vm(s, size) else _service(s, size))
    lines.append("  </rm>")
    lines.append("</cluster>")
    return ("\n".join(lines) + "\n").encode("utf-8")


# -- a second version, for the diff benchmark --------------------------------------------------------------
def variant(data: bytes, *, service_fraction: float = 0.01, nodes_changed: int = 3) -> bytes:
    """A next version of `data`: about `service_fraction` of the services and `nodes_changed` nodes edited.

    Edits, all deterministic: config_version + 1; of the picked services, one in four changes its recovery
    policy, one in four its script file, one in four gets a new nfsclient (or a new max_restarts), one in four
    new mount options; the picked nodes change votes, one node is added and the last one removed (with its
    domain memberships); one fence password changes.
    """
    root = etree.fromstring(data)
    out = copy.deepcopy(root)
    out.set("config_version", str(int(root.get("config_version", "0")) + 1))
    _edit_services(out, service_fraction)
    _edit_nodes(out, nodes_changed)
    device = out.find("fencedevices/fencedevice")
    if device is not None:
        device.set("passwd", "rotated-" + (device.get("passwd") or ""))
    return b'<?xml version="1.0"?>\n' + etree.tostring(out) + b"\n"


def _edit_services(root: etree._Element, fraction: float) -> None:
    services = root.findall("rm/service")
    if not services:
        return
    step = max(1, round(1 / fraction)) if fraction > 0 else len(services) + 1
    for i, svc in enumerate(services[::step]):
        action = i % 4
        if action == 0:
            svc.set("recovery", "relocate" if svc.get("recovery") != "relocate" else "restart")
        elif action == 1:
            script = svc.find("script")
            if script is not None:
                script.set("file", (script.get("file") or "") + ".new")
        elif action == 2:
            export = svc.find("fs/nfsexport")
            if export is not None:
                etree.SubElement(export, "nfsclient", name=f"extra-{svc.get('name')}", target="10.9.0.0/16")
            else:
                svc.set("max_restarts", "5")
        else:
            fs = svc.find("fs")
            if fs is not None:
                fs.set("options", "noatime")


def _edit_nodes(root: etree._Element, count: int) -> None:
    nodes = root.find("clusternodes")
    if nodes is None or len(nodes) == 0:
        return
    for node in list(nodes)[1 : 1 + count]:
        node.set("votes", "2")
    removed = nodes[-1]
    ids = [int(n.get("nodeid", "0")) for n in nodes]
    nodes.remove(removed)
    for member in root.iterfind(f"rm/failoverdomains/failoverdomain/failoverdomainnode[@name='{removed.get('name')}']"):
        member.getparent().remove(member)
    added = copy.deepcopy(nodes[0])
    added.set("name", "node-new.example.com")
    added.set("nodeid", str(max(ids) + 1))
    nodes.append(added)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=BENCH_SIZE.nodes)
    parser.add_argument("--fence-devices", type=int, default=BENCH_SIZE.fence_devices)
    parser.add_argument("--domains", type=int, default=BENCH_SIZE.domains)
    parser.add_argument("--services", type=int, default=BENCH_SIZE.services)
    parser.add_argument("--variant", action="store_true", help="write the changed next version instead")
    args = parser.parse_args(argv)
    size = Size(args.nodes, args.fence_devices, args.domains, args.services)
    data = generate(size)
    sys.stdout.buffer.write(variant(data) if args.variant else data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
