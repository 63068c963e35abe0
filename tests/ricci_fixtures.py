"""Real ricci agents on loopback for the tests: one root per node, keys trusted, `ricci serve` processes.

Each lab picks its own 127.x.y.0/24 subnet (nodes at .11, .12, ... on port 11111), so it never meets a lab of
`manage.py localcluster` (127.0.0.11...) or another test run. Every process started is stopped at teardown.
"""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ricci_agent import keys

REPO = Path(__file__).resolve().parents[1]
RICCI = Path(sys.executable).with_name("ricci")
START_TIMEOUT = 30.0  # generous: the machine is shared
PORT = 11111


def conf_xml(nodes: list[str], version: int, *, name: str = "labcl", extra: str = "", cman: str = "") -> str:
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


def free_subnet() -> str:
    """A 127.x.y prefix whose .11-.19 addresses have port 11111 free."""
    rng = random.Random()
    for _ in range(50):
        prefix = f"127.{rng.randint(100, 250)}.{rng.randint(1, 250)}"
        try:
            for host in range(11, 20):
                with socket.socket() as s:
                    s.bind((f"{prefix}.{host}", PORT))
        except OSError:
            continue
        return prefix
    raise RuntimeError("no free 127.x.y.0/24 subnet with port 11111 free")


@dataclass
class Node:
    name: str
    root: Path
    address: str
    port: int = PORT
    process: subprocess.Popen | None = None

    @property
    def target(self) -> tuple[str, int]:
        return (self.address, self.port)

    @property
    def conf_path(self) -> Path:
        return self.root / "etc/cluster/cluster.conf"

    def log_text(self) -> str:
        path = self.root / "var/log/cluster/ricci.log"
        return path.read_text() if path.exists() else ""


@dataclass
class Lab:
    base: Path
    nodes: dict[str, Node] = field(default_factory=dict)
    admin: Path = Path()

    def start(self, name: str) -> Node:
        node = self.nodes[name]
        assert node.process is None or node.process.poll() is not None, f"{name} is already running"
        log = open(node.root / "serve.out", "ab")  # noqa: SIM115 - handed to the child
        node.process = subprocess.Popen(
            [str(RICCI), "serve"], env={**os.environ, "CLUSTER_ROOT": str(node.root)}, cwd=REPO,
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        wait_listening(node)
        return node

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int | None:
        node = self.nodes[name]
        if node.process is None or node.process.poll() is not None:
            return node.process.returncode if node.process else None
        node.process.send_signal(sig)
        try:
            return node.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.process.kill()
            return node.process.wait(timeout=10)

    def stop_all(self) -> None:
        for name in self.nodes:
            self.stop(name, signal.SIGKILL)

    def write_conf(self, name: str, text: str) -> None:
        path = self.nodes[name].conf_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def wait_listening(node: Node) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if node.process is not None and node.process.poll() is not None:
            out = (node.root / "serve.out").read_text(errors="replace")
            raise RuntimeError(f"ricci serve for {node.name} exited with {node.process.returncode}: {out}")
        try:
            with socket.create_connection(node.target, timeout=0.5) as s:
                s.settimeout(2)
                if s.recv(8).startswith(b"SSH-"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"ricci serve for {node.name} did not listen within {START_TIMEOUT} s")


def make_lab(base: Path, names: list[str], *, extra_settings: dict | None = None) -> Lab:
    """Roots for `names` plus an `admin` root; all client keys authorised everywhere, all host keys pinned."""
    prefix = free_subnet()
    lab = Lab(base)
    for i, name in enumerate(names):
        root = base / name
        (root / "etc/ricci").mkdir(parents=True)
        node = Node(name, root, f"{prefix}.{11 + i}")
        settings = {"node_name": name, "address": node.address, "port": node.port, **(extra_settings or {})}
        (root / "etc/ricci/ricci.json").write_text(json.dumps(settings))
        lab.nodes[name] = node
    hosts = "".join(f"{n.address} {n.name}\n" for n in lab.nodes.values())
    lab.admin = base / "admin"
    (lab.admin / "etc").mkdir(parents=True)
    client_keys = [keys.ensure_client_key(lab.admin)]
    for node in lab.nodes.values():
        (node.root / "etc/hosts").write_text(hosts)
        keys.ensure_host_key(node.root)
        client_keys.append(keys.ensure_client_key(node.root))
    for root in [n.root for n in lab.nodes.values()] + [lab.admin]:
        for node in lab.nodes.values():
            keys.pin_host_key(root, node.address, node.port, keys.host_public_key(node.root))
    for node in lab.nodes.values():
        for line in client_keys:
            keys.authorize(node.root, line)
    return lab


def running_lab(base: Path, names: list[str], version: int = 1, **kw: object) -> Iterator[Lab]:
    """make_lab + the same cluster.conf on every node + every agent started; stops them all afterwards."""
    lab = make_lab(base, names, **kw)  # type: ignore[arg-type]
    try:
        for name in names:
            lab.write_conf(name, conf_xml(names, version))
            lab.start(name)
        yield lab
    finally:
        lab.stop_all()


def wait_for(predicate, timeout: float = 10.0, step: float = 0.1) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
