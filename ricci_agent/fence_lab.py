"""fence_lab: the fence agent of local lab clusters (ricci_agent.lab): it really powers a lab node off and on.

Called like every fence agent (rhcs-facts §5.3): with no arguments, `key=value` lines on stdin (blank and `#`
lines ignored; `option` is an alias of `action`; an unknown key prints "Parse error: Ignoring unknown option
'<line>'" on stderr and is skipped), or with options for admins (`fence_lab -o off -n node2 --lab var/lab`).

    action   off | on | reboot (default) | status | list | monitor | metadata  (enable/disable: on/off)
    port     the lab node's name (aliases plug, blade, fm; else `nodename`, which fenced always sends)
    lab      the lab's folder (the lab writes it on its fence device); else the parent of $CLUSTER_ROOT
    delay    seconds to wait before off and reboot (breaks two-node fence races)

off = SIGKILL every process of the node (its agent, its daemons, its services) without waiting for the lab's lock,
then marked stopped in lab.json (a bounded wait for the lock; failing that, a warning); on = the node boots (its
agent, started detached so it never descends from the fencer, then its cluster daemons); reboot = off then on,
a success once the node is off (a failed power-on is a warning on stderr, as in fence-agents). Exit codes: 0
success (and status ON), 2 status OFF, 1 any failure (one line on stderr). It never powers off the node it runs
on (its own CLUSTER_ROOT: fence_lab runs as a child of the fencing node's daemon), nor itself or its ancestors of
the same node (ricci_agent.lab._self_and_ancestors).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ricci_agent.lab import LAB_FILE, Lab, LabError, LabNode, node_processes

PROG = "fence_lab"
EXIT_OK, EXIT_FAILED, EXIT_OFF = 0, 1, 2
ACTIONS = ("on", "off", "reboot", "status", "list", "monitor", "metadata")
ACTION_ALIASES = {"enable": "on", "disable": "off"}
KEY_ALIASES = {"option": "action", "plug": "port", "blade": "port", "fm": "port"}
KNOWN_KEYS = {"action", "port", "nodename", "lab", "delay", "agent"}  # `agent=` is always sent by fenced
MAX_DELAY = 3600.0

METADATA = """<?xml version="1.0" ?>
<resource-agent name="fence_lab" shortdesc="Fence agent for local lab clusters">
<longdesc>fence_lab powers a node of a local lab cluster (python manage.py localcluster) off and on: off kills
every process of the node (its ricci agent, its cluster daemons and its services), on starts the node again.
</longdesc>
<vendor-url>docs/lab.md</vendor-url>
<parameters>
	<parameter name="action" unique="0" required="1">
		<getopt mixed="-o, --action=[action]" />
		<content type="string" default="reboot" />
		<shortdesc lang="en">Fencing action</shortdesc>
	</parameter>
	<parameter name="port" unique="0" required="0">
		<getopt mixed="-n, --plug=[node]" />
		<content type="string" />
		<shortdesc lang="en">The lab node to act on (default: nodename)</shortdesc>
	</parameter>
	<parameter name="nodename" unique="0" required="0">
		<getopt mixed="--nodename=[node]" />
		<content type="string" />
		<shortdesc lang="en">The cluster node being fenced (sent by fenced and fence_node)</shortdesc>
	</parameter>
	<parameter name="lab" unique="0" required="0">
		<getopt mixed="--lab=[dir]" />
		<content type="string" />
		<shortdesc lang="en">The lab's folder (default: the parent of $CLUSTER_ROOT)</shortdesc>
	</parameter>
	<parameter name="delay" unique="0" required="0">
		<getopt mixed="--delay=[seconds]" />
		<content type="second" default="0" />
		<shortdesc lang="en">Wait X seconds before fencing is started</shortdesc>
	</parameter>
</parameters>
<actions>
	<action name="on" automatic="0"/>
	<action name="off" />
	<action name="reboot" />
	<action name="status" />
	<action name="list" />
	<action name="monitor" />
	<action name="metadata" />
</actions>
</resource-agent>
"""


class FenceError(Exception):
    """A failure: its message is the one line printed (after "Failed: ")."""


@dataclass(slots=True)
class Request:
    action: str = "reboot"
    port: str | None = None
    nodename: str | None = None
    lab: str | None = None
    delay: float = 0.0

    @property
    def target(self) -> str | None:
        return self.port or self.nodename


# -- reading the request --------------------------------------------------------------------------------------
def parse_stdin(lines: Iterable[str], errors: TextIO) -> dict[str, str]:
    """The §5.3 stdin convention: `key=value` lines; blank and `#` lines ignored; unknown keys reported on
    `errors` and skipped. Aliases are resolved here (option -> action, plug/blade/fm -> port)."""
    options: dict[str, str] = {}
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = KEY_ALIASES.get(key.strip(), key.strip())
        if not sep or key not in KNOWN_KEYS:
            errors.write(f"Parse error: Ignoring unknown option '{line}'\n")
            continue
        options[key] = value.strip()
    return options


def parse_argv(argv: list[str]) -> dict[str, str]:
    parser = _ArgParser(prog=PROG, description="Fence agent for local lab clusters (docs/lab.md).")
    parser.add_argument("-o", "--action", "--option", dest="action")
    parser.add_argument("-n", "--plug", "--port", dest="port")
    parser.add_argument("--nodename")
    parser.add_argument("--lab")
    parser.add_argument("--delay")
    namespace = parser.parse_args(argv)
    return {k: v for k, v in vars(namespace).items() if v is not None}


class _ArgParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise FenceError(message)


def make_request(options: Mapping[str, str]) -> Request:
    action = options.get("action", "reboot").strip().lower() or "reboot"
    action = ACTION_ALIASES.get(action, action)
    if action not in ACTIONS:
        raise FenceError(f"Unrecognised action '{options.get('action')}'")
    delay_text = options.get("delay", "0") or "0"
    try:
        delay = float(delay_text)
    except ValueError:
        raise FenceError(f"delay must be a number of seconds, not '{delay_text}'") from None
    if not 0 <= delay <= MAX_DELAY:
        raise FenceError(f"delay must be between 0 and {MAX_DELAY:g} seconds, not {delay_text}")
    return Request(action, options.get("port") or None, options.get("nodename") or None,
                   options.get("lab") or None, delay)


# -- the lab ----------------------------------------------------------------------------------------------
def find_lab(request: Request, environ: Mapping[str, str]) -> Lab:
    """The lab named by `lab=`, else the folder holding this node's root ($CLUSTER_ROOT/..) when it has lab.json."""
    if request.lab:
        lab = Lab(request.lab)
        if not lab.exists():
            raise FenceError(f"no lab in {lab.directory} (no {LAB_FILE})")
        return lab
    root = environ.get("CLUSTER_ROOT")
    if root and (Path(root).parent / LAB_FILE).is_file():
        return Lab(Path(root).parent)
    raise FenceError("no lab given: set lab=<lab folder> (or --lab), or run with CLUSTER_ROOT set to a lab node's root")


def target_node(lab: Lab, request: Request, environ: Mapping[str, str]) -> LabNode:
    if not request.target:
        raise FenceError("no node given: set port=<node name> (or -n NODE)")
    try:
        node = lab.node(request.target)
    except LabError as exc:
        raise FenceError(str(exc)) from None
    own = environ.get("CLUSTER_ROOT")
    if request.action in ("off", "reboot") and own and Path(own).resolve() == node.root.resolve():
        raise FenceError(f"refusing to power off {node.name}: fence_lab runs on {node.name} itself (CLUSTER_ROOT)")
    return node


def is_on(node: LabNode) -> bool:
    return bool(node_processes(node))


def power_off(lab: Lab, node: LabNode, errors: TextIO) -> bool:
    """SIGKILL every process of the node, without waiting behind a lab operation that holds the lab's lock; False
    when it was off already. A lab.json that could not be updated is a warning on `errors`, not a failure."""
    try:
        was_on, warning = lab.power_off(node.name)
    except LabError as exc:
        raise FenceError(str(exc)) from None
    if warning:
        errors.write(f"Warning: {' '.join(warning.split())}\n")
    return was_on


def power_on(lab: Lab, node: LabNode) -> bool:
    """Power the node on: its agent is started (detached: never a descendant of this fencer's daemon) and boots
    the node's cluster daemons by itself, as a machine does; like a power switch, this does not wait for the
    boot. False when it was on already."""
    if is_on(node):
        return False
    try:
        lab.start(node.name, detach=True, boot=True)
    except LabError as exc:
        reason = " ".join(str(exc).split())
        raise FenceError(f"Timed out waiting to power ON: {reason}" if "no hello" in reason
                         else f"Unable to power ON: {reason}") from None
    return True


def reboot(lab: Lab, node: LabNode, errors: TextIO) -> None:
    """Off, then on. Once the node is off the fence has succeeded: a failed power-on is only a warning, as in
    fence-agents' fencing.py (it logs "Timed out waiting to power ON" and still prints "Success: Rebooted")."""
    power_off(lab, node, errors)
    try:
        power_on(lab, node)
    except FenceError as exc:
        errors.write(f"Warning: {exc} ({node.name} stays OFF)\n")


def run(request: Request, out: TextIO, environ: Mapping[str, str], errors: TextIO | None = None) -> int:
    errors = sys.stderr if errors is None else errors
    if request.action == "metadata":
        out.write(METADATA)
        return EXIT_OK
    lab = find_lab(request, environ)
    if request.action == "monitor":
        lab.load()  # readable, or LabError
        return EXIT_OK
    if request.action == "list":
        for node in lab.nodes:
            out.write(f"{node.name},{node.address}\n")
        return EXIT_OK
    node = target_node(lab, request, environ)
    if request.action == "status":
        on = is_on(node)
        out.write(f"Status: {'ON' if on else 'OFF'}\n")
        return EXIT_OK if on else EXIT_OFF
    if request.action in ("off", "reboot") and request.delay > 0:
        time.sleep(request.delay)
    if request.action == "off":
        out.write("Success: Powered OFF\n" if power_off(lab, node, errors) else "Success: Already OFF\n")
    elif request.action == "on":
        out.write("Success: Powered ON\n" if power_on(lab, node) else "Success: Already ON\n")
    else:
        reboot(lab, node, errors)
        out.write("Success: Rebooted\n")
    return EXIT_OK


def main(argv: list[str] | None = None, stdin: TextIO | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        options = parse_argv(args) if args else parse_stdin(stdin or sys.stdin, sys.stderr)
        code = run(make_request(options), sys.stdout, os.environ)
    except (FenceError, LabError) as exc:
        sys.stdout.flush()
        sys.stderr.write(f"Failed: {' '.join(str(exc).split())}\n")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
