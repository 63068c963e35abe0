"""clusvcadm: the service administration tool (rhcs-facts §4.2), a thin client of the node's `rgmanager`.

    clusvcadm -e SVC [-m|-n MEMBER] [-F]   enable (on MEMBER; -F: where the failover domain says)
    clusvcadm -d SVC                       disable
    clusvcadm -r SVC [-m MEMBER]           relocate (to MEMBER)
    clusvcadm -M SVC -m MEMBER             migrate to MEMBER
    clusvcadm -R SVC | -s SVC | -Z SVC | -U SVC | -c SVC
                                           restart in place, stop, freeze, unfreeze, convalesce
    clusvcadm -l | -u | -S                 lock, unlock this node's rgmanager, show its lock state
    clusvcadm -q ...                       quiet: nothing on stdout;  -v version;  -h help

A service name without a colon gets the `service:` prefix (`-e vm:guest` for a VM). The output lines are the
original's: `Trying to relocate service:web to node2...Success`, `Local machine disabling service:web...Success`,
`Member node2 trying to enable service:web...Success`, then after a successful enable or relocate
`service:web is now running on node2` (`Warning: ` first when it ended on another node than the one named).
The part before `...` is printed and flushed before the request is sent, the result string of rhcs-facts §2.11
(`rgmanager.states.RGCode.text`) when rgmanager answers.

Daemons: cmand (`cman.control`, $CLUSTER_ROOT/var/run/cluster/cman.sock) answers for the member list; rgmanager
($CLUSTER_ROOT/var/run/cluster/rgmanager.sock, the same JSON-lines framing) carries out `service`, `lock`,
`unlock` and `lock_status`. As in the original, the cluster service is asked first ("Could not connect to cluster
service"), then rgmanager is reached before anything is printed ("Could not connect to resource group manager").
A service request waits for rgmanager's answer at most REQUEST_TIMEOUT (120 s: a relocation stops and starts
resource trees whose agents may each take tens of seconds); without an answer by then clusvcadm says so and exits 1
(the operation may still complete: clustat shows the outcome).

Member names (-m/-n) are matched against the configured nodes cmand reports: an exact name, else the one name
sharing the longest prefix with it (`'x' not in membership list`, `Closest match: 'y'`, and the request goes on
with `y`); no name sharing a first character: `No matches for 'x' found`; two or more equally close:
`More than one possible match for 'x' found`. Migration needs the target online (`'x' is offline`).
Choices where the original gives no rule: one action per call (two are a usage error); the resolved name, not the
typed one, appears in the output; -F is refused with -m/-n and means nothing for actions other than -e; a member
named for -d, -s, -R, -Z, -U, -c is passed on as the request's target.

Exit status: 0 success and "Service is already running" (-10); otherwise the RG code mod 256 (Failure 255,
Operation requires quorum 247, ...); 1 for usage errors, member-matching failures, a daemon that does not answer,
and lock operations that failed. Errors other than the §4.2 result lines go to stderr as `clusvcadm: <message>`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cluster_conf.cli.common import CliError, Parser, UsageError, printable, run, version_text
from rgmanager.endpoints import RG_SOCKET
from rgmanager.states import RGCode

PROG = "clusvcadm"
REQUEST_TIMEOUT = 120.0  # a service request: stops and starts of whole resource trees
CONNECT_TIMEOUT = 5.0  # reaching rgmanager before printing anything; lock requests
CMAN_TIMEOUT = 2.0  # cmand's member list (it answers from memory)
EXIT_FAILURE = 1

CLUSTER_NOT_RUNNING_TEXT = "Could not connect to cluster service"
RG_NOT_RUNNING_TEXT = "Could not connect to resource group manager"
MIGRATE_NEEDS_TARGET_TEXT = "Migration requires a target cluster member"
F_WITH_MEMBER_TEXT = "Cannot use '-F' with '-n' or '-m'"

USAGE = """\
usage: clusvcadm [-q] <action>

Service actions (a name without ':' means service:<name>; use vm:<name> for a VM):
  -e <service>               Enable the service here
  -e <service> -m <member>   Enable the service on <member> (-n is the same as -m)
  -e <service> -F            Enable the service where its failover domain says
  -d <service>               Disable: stop it until an administrator enables it again
  -r <service> [-m <member>] Relocate: stop it and start it on another member (on <member>)
  -M <service> -m <member>   Migrate it to <member> (live migration of VMs)
  -R <service>               Restart it in place
  -s <service>               Stop it until the next member or service transition
  -Z <service>               Freeze it: no status checks, starts, stops or failover
  -U <service>               Unfreeze it
  -c <service>               Convalesce: start its failed non-critical resources again
Locking of this node's resource group manager (for cluster shutdown):
  -l                         Lock: no service starts here
  -u                         Unlock
  -S                         Show the lock state
Other:
  -q                         Quiet: print nothing on stdout
  -v                         Print the version, then exit
  -h                         Print this help, then exit

Exit status: 0 success (also "Service is already running"); the RG error code mod 256 (Failure 255, ...);
1 usage errors, unknown members, and a daemon that does not answer.
"""


@dataclass(frozen=True)
class Action:
    """One service action: the daemon's op and the words of its output line."""

    flag: str
    op: str
    words: str  # "trying to enable" ("Local machine trying to enable service:web..."), or the verb after "Trying to"

    @property
    def trying_form(self) -> bool:
        """relocate/migrate print `Trying to relocate service:web[ to node2]...`."""
        return self.op in ("relocate", "migrate")

    @property
    def reports_owner(self) -> bool:
        """Whether a success is followed by `service:web is now running on node2` (not for migrate)."""
        return self.op in ("enable", "relocate")


ACTIONS: dict[str, Action] = {a.flag: a for a in (
    Action("-e", "enable", "trying to enable"),
    Action("-d", "disable", "disabling"),
    Action("-r", "relocate", "relocate"),
    Action("-M", "migrate", "migrate"),
    Action("-R", "restart", "trying to restart"),
    Action("-s", "stop", "stopping"),
    Action("-Z", "freeze", "freezing"),
    Action("-U", "unfreeze", "unfreezing"),
    Action("-c", "convalesce", "convalescing"),
)}
LOCK_FLAGS = {"-l": "lock", "-u": "unlock", "-S": "lock_status"}


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write(USAGE)
        return EXIT_FAILURE
    args = _parser().parse_args(argv)
    if args.help:
        sys.stdout.write(USAGE)
        return 0
    if args.version:
        sys.stdout.write(version_text(PROG))
        return 0
    flag, service = _the_action(args)
    with _quiet(args.quiet):
        if flag in LOCK_FLAGS:
            return do_lock(_root(), LOCK_FLAGS[flag])
        return do_service(_root(), ACTIONS[flag], service_name(service), args.member, policy=args.policy)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, add_help=False, usage="%(prog)s [-q] <action>; try 'clusvcadm -h'")
    for flag in ACTIONS:
        parser.add_argument(flag, dest=f"act{flag}", metavar="SERVICE")
    for flag in LOCK_FLAGS:
        parser.add_argument(flag, dest=f"act{flag}", action="store_true")
    parser.add_argument("-m", "-n", dest="member", metavar="MEMBER")
    parser.add_argument("-F", dest="policy", action="store_true")
    parser.add_argument("-q", dest="quiet", action="store_true")
    parser.add_argument("-v", dest="version", action="store_true")
    parser.add_argument("-h", dest="help", action="store_true")
    return parser


def _the_action(args: argparse.Namespace) -> tuple[str, str | None]:
    """(flag, service) of the one action asked for, its companion options checked."""
    chosen: list[tuple[str, str | None]] = [
        (flag, getattr(args, f"act{flag}")) for flag in ACTIONS if getattr(args, f"act{flag}") is not None]
    chosen.extend((flag, None) for flag in LOCK_FLAGS if getattr(args, f"act{flag}"))
    if not chosen:
        raise UsageError(f"no action given (-e, -d, -r, -M, -R, -s, -Z, -U, -c, -l, -u or -S); try '{PROG} -h'")
    if len(chosen) > 1:
        raise UsageError(f"give one action at a time, not {' and '.join(flag for flag, _ in chosen)}")
    _check_combination(chosen[0][0], args)
    return chosen[0]


def _check_combination(flag: str, args: argparse.Namespace) -> None:
    if args.policy and args.member is not None:
        raise UsageError(F_WITH_MEMBER_TEXT)
    if flag == "-M" and args.member is None:
        raise UsageError(MIGRATE_NEEDS_TARGET_TEXT)
    if flag in LOCK_FLAGS and (args.member is not None or args.policy):
        raise UsageError(f"{flag} takes no member and no -F")


def service_name(name: str | None) -> str:
    """`web` -> `service:web`; a name with a colon (`vm:guest`, `service:web`) is kept."""
    if not name or not name.strip():
        raise UsageError("the service name is empty")
    if any(not c.isprintable() for c in name):
        raise UsageError(f"the service name '{printable(name)}' contains a control character")
    return name if ":" in name else f"service:{name}"


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """-q: stdout goes nowhere for the rest of the run (the original closed it); stderr stays."""
    if not enabled:
        yield
        return
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield


def _root() -> str:
    from cluster_conf.cli.editing import cluster_root

    return os.path.abspath(cluster_root())


# -- the service actions ------------------------------------------------------------------------------------
def do_service(root: str, action: Action, service: str, member: str | None, *, policy: bool) -> int:
    nodes = cluster_nodes(root)
    target = None
    if member is not None:
        node = match_member(nodes, member)
        target = str(node["name"])
        if action.op == "migrate" and node.get("state") != "M":
            raise CliError(f"'{printable(target)}' is offline")
    reach_rgmanager(root)
    _say(prefix_line(action, service, target))
    reply = ask_rgmanager(root, "service", timeout=REQUEST_TIMEOUT, op=action.op, service=service, target=target,
                          policy=policy and action.op == "enable", after_prefix=True)
    code, text, owner = _read_result(reply)
    print(text)
    if code == 0 and action.reports_owner and owner:
        warning = "Warning: " if target is not None and owner != target else ""
        print(f"{warning}{service} is now running on {owner}")
    return exit_status(code)


def prefix_line(action: Action, service: str, target: str | None) -> str:
    """What is printed before the request goes out, up to and including the `...`."""
    if action.trying_form:
        where = f" to {target}" if target is not None else ""
        return f"Trying to {action.words} {service}{where}..."
    who = f"Member {target}" if target is not None else "Local machine"
    return f"{who} {action.words} {service}..."


def exit_status(code: int) -> int:
    """0 for success and "already running" (-10), else the code mod 256."""
    try:
        return RGCode(code).exit_status
    except ValueError:
        return code % 256


def result_text(code: int, fallback: str) -> str:
    """The §2.11 string of `code`; the daemon's own text for a code this tool does not know."""
    try:
        return RGCode(code).text
    except ValueError:
        return fallback or f"Unknown error {code}"


def _read_result(reply: Any) -> tuple[int, str, str | None]:
    if not isinstance(reply, Mapping) or not isinstance(reply.get("code"), int) or isinstance(reply["code"], bool):
        print()
        raise CliError("the resource group manager sent a reply without a result code")
    code = reply["code"]
    owner = reply.get("owner")
    return code, result_text(code, str(reply.get("text") or "")), owner if isinstance(owner, str) else None


def _say(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# -- the lock -----------------------------------------------------------------------------------------------
LOCK_LINES = {
    "lock": (lambda locked: "Resource groups locked" if locked else None, "Lock operation failed"),
    "unlock": (lambda locked: "Resource groups unlocked" if not locked else None, "Unlock operation failed"),
    "lock_status": (lambda locked: f"Resource groups {'locked' if locked else 'unlocked'}", "Query operation failed"),
}


def do_lock(root: str, command: str) -> int:
    """-l / -u / -S on this node's rgmanager (the lock is local to it, as in the original)."""
    from cman.control import ControlError, request

    cluster_nodes(root)
    success_line, failure_line = LOCK_LINES[command]
    try:
        reply = request(root, command, timeout=CONNECT_TIMEOUT, socket_name=RG_SOCKET)
    except ControlError as exc:
        if exc.code == "not_running":
            raise CliError(RG_NOT_RUNNING_TEXT) from None
        print(failure_line)
        return EXIT_FAILURE
    locked = reply.get("locked") if isinstance(reply, Mapping) else None
    line = success_line(locked) if isinstance(locked, bool) else None
    if line is None:
        print(failure_line)
        return EXIT_FAILURE
    print(line)
    return 0


# -- the daemons --------------------------------------------------------------------------------------------
def cluster_nodes(root: str) -> list[Mapping[str, Any]]:
    """The configured nodes as cmand reports them (name, nodeid, state "M" member / "X" / "d" disallowed)."""
    from cman.control import ControlError, request

    try:
        status = request(root, "status", timeout=CMAN_TIMEOUT)
    except ControlError:
        raise CliError(CLUSTER_NOT_RUNNING_TEXT) from None
    nodes = status.get("nodes") if isinstance(status, Mapping) else None
    if not isinstance(nodes, list):
        raise CliError("the cluster service sent a status without a node list")
    return [n for n in nodes if isinstance(n, Mapping) and isinstance(n.get("name"), str)]


def reach_rgmanager(root: str) -> None:
    """Make sure rgmanager answers before anything is printed (the original opened its connection first)."""
    ask_rgmanager(root, "lock_status", timeout=CONNECT_TIMEOUT)


def ask_rgmanager(root: str, command: str, *, timeout: float, after_prefix: bool = False, **args: Any) -> Any:
    """One rgmanager request. A daemon that does not answer is one line on stderr; after a printed prefix the
    prefix's line is ended first, so the error stands on its own line."""
    from cman.control import ControlError, request

    try:
        return request(root, command, timeout=timeout, socket_name=RG_SOCKET, **args)
    except ControlError as exc:
        if after_prefix:
            print()
        if exc.code == "not_running":
            raise CliError(RG_NOT_RUNNING_TEXT) from None
        if exc.code == "timeout":
            raise CliError(f"the resource group manager did not answer within {timeout:g} s; the request may "
                           "still complete (see clustat)") from None
        if exc.code == "bad_reply":
            raise CliError("the resource group manager sent no readable answer; the request may still complete "
                           "(see clustat)") from None
        raise CliError(f"the resource group manager refused the request: {exc.message}") from None


def match_member(nodes: Sequence[Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    """The node called `name`, else the one whose name shares the longest prefix with it (printing the original's
    `'x' not in membership list` / `Closest match: 'y'`); CliError when none or several are closest."""
    for node in nodes:
        if node["name"] == name:
            return node
    shown = printable(name)
    print(f"'{shown}' not in membership list")
    lengths = [(_common_prefix(str(node["name"]), name), node) for node in nodes]
    best = max((length for length, _ in lengths), default=0)
    if best == 0:
        raise CliError(f"No matches for '{shown}' found")
    closest = [node for length, node in lengths if length == best]
    if len(closest) > 1:
        raise CliError(f"More than one possible match for '{shown}' found")
    print(f"Closest match: '{closest[0]['name']}'")
    return closest[0]


def _common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


if __name__ == "__main__":
    sys.exit(main())
