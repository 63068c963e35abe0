"""`manage.py demo`: the suite's one-command tour (what `make demo` runs).

Until the console lands (step 6) it is a scripted walkthrough: it creates a three-node cluster in a temporary
CLUSTER_ROOT with ccs_tool, adds fencing, a failover domain, a resource and a service, lists everything, validates
the result and shows the semantic diff against the first version; then asks the service engine (rg_test) for the
start order, the placement, and what it would do when a node fails and returns. Each step runs the real console scripts,
exactly as an admin would type them, and the walkthrough stops at the first failing step.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cluster_conf.schema import is_secret

WALKTHROUGH: list[tuple[str, list[str]]] = [
    ("Create a cluster called 'lab'", ["ccs_tool", "create", "lab"]),
    ("Keep a copy of version 1 to compare with later", ["cp", "{conf}", "{root}/cluster.conf.v1"]),
    (
        "Add a fence device (the password never shows up in listings)",
        ["ccs_tool", "addfence", "apc", "fence_apc", "ipaddr=127.0.0.1", "login=admin", "passwd=secret"],
    ),
    ("Add three nodes fenced by it", ["ccs_tool", "addnode", "-n", "1", "-f", "apc", "node1", "port=1"]),
    ("", ["ccs_tool", "addnode", "-n", "2", "-f", "apc", "node2", "port=2"]),
    ("", ["ccs_tool", "addnode", "-n", "3", "-f", "apc", "node3", "port=3"]),
    ("List the nodes", ["ccs_tool", "lsnode"]),
    ("List the fence devices, verbosely", ["ccs_tool", "lsfence", "-v"]),
    (
        "Add an ordered failover domain",
        ["ccs_tool", "adddomain", "--ordered", "webdomain", "node1:1", "node2:2", "node3:3"],
    ),
    ("Add a floating IP address as a global resource", ["ccs_tool", "addresource", "ip", "address=127.0.0.50"]),
    (
        "Add a web service in that domain, using the address",
        ["ccs_tool", "addservice", "web", "domain=webdomain", "recovery=relocate"],
    ),
    ("", ["ccs_tool", "addserviceresource", "web", "ip", "ref=127.0.0.50"]),
    ("List the services and their resource trees", ["ccs_tool", "lsservice", "-v"]),
    ("Validate the configuration", ["ccs_config_validate", "-f", "{conf}"]),
    ("What changed since version 1", ["ccs_tool", "diff", "{root}/cluster.conf.v1", "{conf}"]),
    ("Query it with XPath", ["ccs_tool", "query", "/cluster/@config_version"]),
    ("The order in which the engine would start the web service", ["rg_test", "noop", "{conf}", "start", "service",
                                                                     "web"]),
    ("Where every service should run with all three nodes up", ["rg_test", "place", "{conf}", "--online",
                                                                "node1,node2,node3"]),
    (
        "What the engine does when node1 fails, then comes back (failback to the better node)",
        ["rg_test", "simulate", "{conf}", "--event", "quorum-formed", "--event", "node-down node1", "--event",
         "node-up node1"],
    ),
]


def _masked(arg: str) -> str:
    """`passwd=…` shown as `passwd=********`: secrets never appear in output, even the demo's own."""
    key, sep, _ = arg.partition("=")
    return f"{key}=********" if sep and is_secret(key) else arg


def _script(name: str) -> str:
    """The console script installed next to this Python (the venv's bin), else whatever is on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


class Command(BaseCommand):
    help = "Run the suite's demo: a scripted ccs_tool walkthrough in a temporary folder."

    def add_arguments(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.add_argument("--keep", action="store_true", help="keep the temporary folder and print its path")

    def handle(self, *args: object, **options: object) -> None:
        root = Path(tempfile.mkdtemp(prefix="rhcs-demo-"))
        conf = root / "etc" / "cluster" / "cluster.conf"
        conf.parent.mkdir(parents=True)
        env = {**os.environ, "CLUSTER_ROOT": str(root)}
        self.stdout.write(f"rhcs-py demo: a cluster.conf walkthrough in {root}\n")
        try:
            for title, argv in WALKTHROUGH:
                argv = [part.format(conf=conf, root=root) for part in argv]
                self._run_step(title, argv, env, root)
        finally:
            if options.get("keep"):
                self.stdout.write(f"\nThe files are in {root}\n")
            else:
                shutil.rmtree(root, ignore_errors=True)
        self.stdout.write(self.style.SUCCESS("\nDemo complete: the cluster was created, edited, listed and validated."))

    def _run_step(self, title: str, argv: list[str], env: dict[str, str], root: Path) -> None:
        if title:
            self.stdout.write(f"\n## {title}")
        shown = " ".join(shlex.quote(_masked(a).replace(str(root), "$CLUSTER_ROOT")) for a in argv)
        self.stdout.write(f"$ {shown}")
        command = [_script(argv[0]) if argv[0] != "cp" else "cp", *argv[1:]]
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
        for stream in (result.stdout, result.stderr):
            if stream.strip():
                self.stdout.write(stream.rstrip("\n").replace(str(root), "$CLUSTER_ROOT"))
        if result.returncode != 0:
            raise CommandError(f"step failed with exit status {result.returncode}: {shown}")
