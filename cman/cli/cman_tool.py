"""cman_tool: the cluster manager's admin tool (rhcs-facts §4.4), a thin client of the node's `cmand`.

    cman_tool status [--json]          the §4.4 field layout (--json: the daemon's status dict; our extension)
    cman_tool nodes [-a] [-f] [-n NAME] [-F FIELDS]
                                       the node table; -a addresses, -f last fenced and fence state, -F a
                                       comma list of id,name,type,addr,votes,exp,state (one line per node)
    cman_tool fence [--history [NODE]] [--json]
                                       fencing state per node / the fence history (our extension)
    cman_tool join [-w] [-q] [-t SECONDS]
                                       start cmand on this node; wait until it answers (-w: until it is a
                                       cluster member, -q: until quorate), at most -t seconds (default 60)
    cman_tool leave [-w] [-t SECONDS] [remove] [force]
                                       ask cmand to leave (remove: the others lower quorum); wait until it exited
    cman_tool expected -e VOTES        set expected votes (the daemon refuses what would break quorum)
    cman_tool wait [-q] [-t SECONDS]   wait until this node is a member (-q: quorate); default at most 60 s
    cman_tool version [-r [-S]]        `<suite version> config <N>`; -r reload and distribute (-S: this node)

The daemon is reached over its control socket ($CLUSTER_ROOT/var/run/cluster/cman.sock, cman.control); when
none answers: `cman_tool: Cannot open connection to cman, is it running ?` and exit 1 (the original's words).
`join` runs the `cmand` console script installed next to this Python (else `python -m cman.daemon`), in the
caller's process group (the lab stops or kills a node by process group), output appended to
var/log/cluster/cmand.out. CMAN_DAEMON, when set, replaces that command (shlex-split; meant for tests).

`version` (unchanged): the configuration a node "runs" is the version its ricci agent has accepted (the last
one recorded in its history, `cluster.versions`); a local edit of cluster.conf is not running until
`cman_tool version -r` pushes it; the agent is found through etc/ricci/ricci.json.

Choices where the original gives no rule: `nodes` prints the incarnation modulo 100000 in the 5-wide Inc
column (ours are microsecond timestamps); `-F addr` prints the first address; `-F state` prints `Member`,
`Not-member` or `Disallowed`, `-F type` the Sts letter. `votes -v` and `kill -n` are not supported.

Exit status: 0 success; 1 any other failure (one line `cman_tool: <message>`); 253 "Unable to retrive the new
config version" (no readable file or no config_version in it); 254 "Not reloading, config version older or equal
the running config". See docs/cli.md.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cluster_conf.cli.common import (
    CliError,
    Parser,
    UsageError,
    print_json,
    run,
    suite_version,
    version_text,
    warn,
)

PROG = "cman_tool"
EXIT_NO_NEW_VERSION = 253
EXIT_NOT_NEWER = 254
NO_NEW_VERSION_TEXT = "Unable to retrive the new config version"  # sic: the original's spelling, kept for grep
NOT_NEWER_TEXT = "Not reloading, config version older or equal the running config"
NOT_RUNNING_TEXT = "Cannot open connection to cman, is it running ?"
ALREADY_ACTIVE_TEXT = "Node is already active"
NOT_SUPPORTED = ("kill", "votes", "services", "debug")
DAEMON_ENV = "CMAN_DAEMON"
DAEMON_OUT = "var/log/cluster/cmand.out"
DEFAULT_WAIT = 60.0
POLL_INTERVAL = 0.1
NODE_FIELDS = ("id", "name", "type", "addr", "votes", "exp", "state")
STATE_WORDS = {"M": "Member", "X": "Not-member", "d": "Disallowed"}
NO_TIME = " " * 19

USAGE = """\
Usage:

cman_tool <join|leave|expected|version|wait|status|nodes|fence> [options]

Options:
  -h               Print this help, then exit
  -V               Print program version information, then exit

join
  -w               Wait until the node is a cluster member
  -q               Wait until the cluster is quorate
  -t <secs>        Maximum time to wait (default 60)

leave
  -w               If cman is busy, retry until -t
  -t <secs>        Maximum time to wait for cman to exit (default 60)
  remove           Tell the other nodes to lower quorum
  force            Leave even if cman is busy

status
  --json           Print the daemon's status as JSON

nodes
  -a               Also show the node addresses
  -f               Also show the last time each node was fenced, and fencing in progress
  -n <nodename>    Only show that node
  -F <fields>      Comma list of id,name,type,addr,votes,exp,state

fence
  --history [node] Show the fence history (of one node)
  --json           Print as JSON

expected
  -e <votes>       New value of expected votes for the cluster

wait
  -q               Wait until the cluster is quorate
  -t <secs>        Maximum time to wait (default 60)

version
  -r               Reload cluster.conf and update config version.
  -S               Don't run ccs_sync to distribute cluster.conf (if appropriate)

Not supported: kill, votes, services, debug.
Exit status: 0 success, 1 failure, 253 no new config version, 254 config version not newer.
"""


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write(USAGE)
        return 1
    if argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        sys.stdout.write(version_text(PROG))
        return 0
    command, rest = argv[0], argv[1:]
    if command == "version":
        return cmd_version(_version_parser().parse_args(rest))
    handler = COMMANDS.get(command)
    if handler is not None:
        parser, body = handler
        return body(parser().parse_args(rest))
    if command in NOT_SUPPORTED:
        raise CliError(f"'{command}' is not supported by this cluster manager")
    raise UsageError(f"Unknown command, {command}. Try 'cman_tool -h' for help.")


# -- talking to the daemon -----------------------------------------------------------------------------------
def _root() -> str:
    from cluster_conf.cli.editing import cluster_root

    return os.path.abspath(cluster_root())


def ask(root: str, command: str, *, timeout: float = 2.0, **args: Any) -> Any:
    """One control request; a daemon that does not answer is the original's message, any refusal one line."""
    from cman.control import ControlError, request

    try:
        return request(root, command, timeout=timeout, **args)
    except ControlError as exc:
        if exc.code == "not_running":
            raise CliError(NOT_RUNNING_TEXT) from None
        raise CliError(exc.message) from None


def ask_status(root: str) -> dict[str, Any]:
    status = ask(root, "status")
    if not isinstance(status, dict):
        raise CliError("the cluster manager sent a status that is not a JSON object")
    return status


def _try_status(root: str) -> tuple[dict[str, Any] | None, str | None]:
    """(status, None) when the daemon answers, else (None, the ControlError code)."""
    from cman.control import ControlError, request

    try:
        result = request(root, "status", timeout=1.0)
    except ControlError as exc:
        return None, exc.code
    return (result, None) if isinstance(result, dict) else (None, "bad_reply")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"argument to -t ({text}) is not a number of seconds") from None
    if not 0 < value < 1e7:
        raise UsageError(f"argument to -t must be a positive number of seconds, got {text}")
    return value


def _clock(timestamp: float | None) -> str:
    if not isinstance(timestamp, int | float) or timestamp <= 0:
        return NO_TIME
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


# -- status --------------------------------------------------------------------------------------------------
def _status_parser() -> Parser:
    parser = Parser(prog=f"{PROG} status", usage=f"{PROG} status [--json]")
    parser.add_argument("--json", action="store_true", help="print the daemon's status dict as JSON")
    return parser


def cmd_status(opts: argparse.Namespace) -> int:
    status = ask_status(_root())
    if opts.json:
        print_json(status)
    else:
        sys.stdout.write(format_status(status, suite_version()))
    return 0


def format_status(status: Mapping[str, Any], version: str) -> str:
    """`cman_tool status` in the §4.4 layout, from the daemon's status dict."""
    node = status.get("node") or {}
    cluster = status.get("cluster") or {}
    quorum = status.get("quorum") or {}
    qdisk = status.get("qdisk")
    member = status.get("membership_state") == "Cluster-Member"
    quorate = bool(quorum.get("quorate")) and not status.get("activity_blocked")
    lines = [
        f"Version: {version}",
        f"Config Version: {cluster.get('config_version', 0)}",
        f"Cluster Name: {cluster.get('name', '')}",
        f"Cluster Id: {cluster.get('id', 0)}",
        f"Cluster Member: {'Yes' if member else 'No'}",
        f"Cluster Generation: {status.get('generation', 0)}",
        f"Membership state: {status.get('membership_state', 'Not-in-Cluster')}",
        f"Nodes: {len(status.get('members') or [])}",
        f"Expected votes: {quorum.get('expected_votes', 0)}",
    ]
    if isinstance(qdisk, Mapping) and qdisk.get("alive"):
        lines.append(f"Quorum device votes: {quorum.get('qdisk_votes', 0)}")
    lines += [
        f"Total votes: {quorum.get('total_votes', 0)}",
        f"Node votes: {quorum.get('node_votes', node.get('votes', 0))}",
        f"Quorum: {quorum.get('quorum', 0)} {' ' if quorate else 'Activity blocked'}",
        f"Active subsystems: {status.get('active_subsystems', 1)}",
        "Flags:" + "".join(f" {flag}" for flag in status.get("flags") or []) + " ",
        "Ports Bound: " + " ".join(str(port) for port in status.get("ports_bound") or [0]),
        f"Node name: {node.get('name', '')}",
        f"Node ID: {node.get('nodeid', 0)}",
        f"Multicast addresses: {status.get('multicast') or ''}",
        f"Node addresses: {node.get('address', '')}",
    ]
    disallowed = [n.get("name", "") for n in status.get("nodes") or [] if n.get("state") == "d"]
    if disallowed:
        lines.append("Disallowed nodes: " + " ".join(disallowed))
    return "".join(line + "\n" for line in lines)


# -- nodes ---------------------------------------------------------------------------------------------------
def _nodes_parser() -> Parser:
    parser = Parser(prog=f"{PROG} nodes", usage=f"{PROG} nodes [-a] [-f] [-n NAME] [-F id,name,...]")
    parser.add_argument("-a", dest="addresses", action="store_true", help="show the node addresses")
    parser.add_argument("-f", dest="fenced", action="store_true", help="show the last fencing of each node")
    parser.add_argument("-n", dest="name", metavar="NAME", help="only show this node")
    parser.add_argument("-F", dest="fields", metavar="FIELDS", help="comma list of " + ",".join(NODE_FIELDS))
    return parser


def cmd_nodes(opts: argparse.Namespace) -> int:
    fields = parse_fields(opts.fields) if opts.fields is not None else None
    status = ask_status(_root())
    sys.stdout.write(format_nodes(status, addresses=opts.addresses, fenced=opts.fenced, name=opts.name,
                                  fields=fields))
    return 0


def parse_fields(text: str) -> list[str]:
    fields = [f.strip() for f in text.split(",")]
    unknown = [f for f in fields if f not in NODE_FIELDS]
    if unknown or not fields:
        raise UsageError(f"unknown field '{unknown[0] if unknown else text}' in -F; fields are "
                         + ",".join(NODE_FIELDS))
    return fields


def format_nodes(status: Mapping[str, Any], *, addresses: bool = False, fenced: bool = False,
                 name: str | None = None, fields: Sequence[str] | None = None) -> str:
    """`cman_tool nodes`: the §4.4 table, or one line of `fields` per node (-F)."""
    nodes = sorted(status.get("nodes") or [], key=lambda n: n.get("nodeid") or 0)
    if name is not None:
        nodes = [n for n in nodes if n.get("name") == name]
        if not nodes:
            raise CliError(f"node {name} is not in the cluster configuration")
    if fields is not None:
        return "".join(" ".join(_field(n, f) for f in fields) + "\n" for n in nodes)
    out = []
    disallowed = sum(1 for n in status.get("nodes") or [] if n.get("state") == "d")
    if disallowed:
        out += [f"NOTE: There are {disallowed} disallowed nodes,",
                "      members list may seem inconsistent across the cluster"]
    out.append("Node  Sts   Inc   Joined               Name")
    fencing = status.get("fencing") or {}
    for node in nodes:
        incarnation = int(node.get("incarnation") or 0) % 100000
        nodeid, state = int(node.get("nodeid") or 0), str(node.get("state") or "X")[:1]
        out.append(f"{nodeid:4d}   {state}  {incarnation:5d}   {_clock(node.get('joined'))}  {node.get('name', '')}")
        if addresses:
            out.append("       Addresses: " + " ".join(node.get("addresses") or []))
        if fenced:
            out += _fence_lines(node, fencing.get(node.get("name")))
    return "".join(line + "\n" for line in out)


def _field(node: Mapping[str, Any], field: str) -> str:
    state = str(node.get("state") or "X")[:1]
    values: dict[str, Callable[[], Any]] = {
        "id": lambda: node.get("nodeid") or 0,
        "name": lambda: node.get("name", ""),
        "type": lambda: state,
        "addr": lambda: (node.get("addresses") or [""])[0],
        "votes": lambda: node.get("votes", 0),
        "exp": lambda: node.get("expected", 0),
        "state": lambda: STATE_WORDS.get(state, state),
    }
    return str(values[field]())


def _fence_lines(node: Mapping[str, Any], fencing: Mapping[str, Any] | None) -> list[str]:
    """RHEL5's `nodes -f`: when the node was last fenced and by what; plus fencing in progress (ours)."""
    lines = []
    if node.get("fenced_at"):
        agent = (fencing or {}).get("agent") or "unknown agent"
        lines.append(f"       Last fenced:   {_clock(node['fenced_at'])} by {agent}")
    if fencing and fencing.get("state") != "succeeded":
        lines.append(f"       Fencing:       {_fence_summary(fencing)}")
    return lines


# -- fence (ours) --------------------------------------------------------------------------------------------
def _fence_parser() -> Parser:
    parser = Parser(prog=f"{PROG} fence", usage=f"{PROG} fence [--history [NODE]] [--json]")
    parser.add_argument("--history", nargs="?", const="", default=None, metavar="NODE",
                        help="show the fence history (of NODE)")
    parser.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print as JSON")
    return parser


def cmd_fence(opts: argparse.Namespace) -> int:
    root = _root()
    if opts.history is not None:
        args: dict[str, Any] = {"node": opts.history} if opts.history else {}
        if opts.limit is not None:
            args["limit"] = opts.limit
        history = ask(root, "fence_history", **args)
        if opts.json:
            print_json(history)
        else:
            sys.stdout.write(format_fence_history(history))
        return 0
    fencing = ask_status(root).get("fencing") or {}
    if opts.json:
        print_json(fencing)
    else:
        sys.stdout.write(format_fencing(fencing))
    return 0


def format_fencing(fencing: Mapping[str, Mapping[str, Any]]) -> str:
    if not fencing:
        return "No fencing actions\n"
    return "".join(f"{name}: {_fence_summary(entry)}\n" for name, entry in sorted(fencing.items()))


def _fence_summary(entry: Mapping[str, Any]) -> str:
    parts = [str(entry.get("state", "unknown"))]
    if entry.get("since"):
        parts.append(f"since {_clock(entry['since'])}")
    how = [f"{k} {entry[k]}" for k in ("method", "device", "agent") if entry.get(k)]
    if how:
        parts.append("(" + ", ".join(how) + ")")
    if entry.get("message"):
        parts.append(f"- {entry['message']}")
    if entry.get("next_retry"):
        parts.append(f"- next retry {_clock(entry['next_retry'])}")
    return " ".join(parts)


def format_fence_history(history: Any) -> str:
    """The daemon's `fence_history` result: a list of cman.fence_agents history entries (time, actor, node,
    action, status, method, device, agent, message), or a dict holding one under `history`/`entries`."""
    if isinstance(history, Mapping):
        history = history.get("history", history.get("entries", []))
    entries = [e for e in history or [] if isinstance(e, Mapping)]
    if not entries:
        return "No fence history\n"
    lines = []
    for entry in entries:
        result = entry.get("status") or ("success" if entry.get("ok") else "failed" if "ok" in entry else "")
        how = " ".join(f"{k} {entry[k]}" for k in ("method", "device", "agent") if entry.get(k))
        text = (f"{_clock(entry.get('time'))}  {entry.get('node', '?')}  {entry.get('action') or 'fence'} "
                f"{result}")
        if how:
            text += f"  {how}"
        if entry.get("message"):
            text += f"  {entry['message']}"
        if entry.get("actor"):
            text += f"  (by {entry['actor']})"
        lines.append(text.rstrip())
    return "".join(line + "\n" for line in lines)


# -- join / leave / wait -------------------------------------------------------------------------------------
def _join_parser() -> Parser:
    parser = Parser(prog=f"{PROG} join", usage=f"{PROG} join [-w] [-q] [-t SECONDS]")
    parser.add_argument("-w", dest="wait_member", action="store_true", help="wait until a cluster member")
    parser.add_argument("-q", dest="wait_quorate", action="store_true", help="wait until quorate")
    parser.add_argument("-t", dest="timeout", type=_seconds, default=DEFAULT_WAIT, help="at most this long")
    return parser


def daemon_command(environ: Mapping[str, str] | None = None) -> list[str]:
    """$CMAN_DAEMON (shlex-split), else the `cmand` script next to this Python, else `python -m cman.daemon`."""
    env = os.environ if environ is None else environ
    override = env.get(DAEMON_ENV, "").strip()
    if override:
        return shlex.split(override)
    script = Path(sys.executable).parent / "cmand"
    if os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "cman.daemon"]


def cmd_join(opts: argparse.Namespace) -> int:
    root = _root()
    status, code = _try_status(root)
    if status is not None or code not in ("not_running", None) or _daemon_pid(root) is not None:
        raise CliError(ALREADY_ACTIVE_TEXT)
    proc = start_daemon(root)
    deadline = time.monotonic() + opts.timeout
    want = "quorate" if opts.wait_quorate else "member" if opts.wait_member else "running"
    while True:
        status, _code = _try_status(root)
        if status is not None and _reached(status, want):
            return 0
        exited = proc.poll()
        if exited is not None and status is None:
            raise CliError(f"cmand exited with status {exited} before it answered: {_last_output(root)}")
        if time.monotonic() >= deadline:
            raise CliError(f"cmand started but {_goal(want)} within {opts.timeout:g} s; it keeps trying "
                           f"(see {Path(root) / DAEMON_OUT})")
        time.sleep(POLL_INTERVAL)


def start_daemon(root: str) -> subprocess.Popen[bytes]:
    """Start cmand for the node at `root`, in the caller's process group (never a new session)."""
    command = daemon_command()
    out = Path(root) / DAEMON_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CLUSTER_ROOT": root}
    with open(out, "ab") as log:
        try:
            return subprocess.Popen(command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, close_fds=True, start_new_session=False)
        except OSError as exc:
            raise CliError(f"cannot start the cluster manager ({shlex.join(command)}): {exc.strerror}") from None


def _reached(status: Mapping[str, Any], want: str) -> bool:
    if want == "member":
        return status.get("membership_state") == "Cluster-Member"
    if want == "quorate":
        return status.get("membership_state") == "Cluster-Member" and bool((status.get("quorum") or {})
                                                                           .get("quorate"))
    return True


def _goal(want: str) -> str:
    return {"member": "this node is not a cluster member",
            "quorate": "the cluster is not quorate",
            "running": "it did not answer"}[want]


def _last_output(root: str, lines: int = 5) -> str:
    try:
        text = (Path(root) / DAEMON_OUT).read_text(errors="replace")
    except OSError:
        return "(no output)"
    tail = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(tail) or "(no output)"


def _daemon_pid(root: str) -> int | None:
    """The pid in var/run/cluster/cmand.pid when that process is alive (not a zombie), else None."""
    from cman.control import PIDFILE

    try:
        pid = int((Path(root) / PIDFILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if pid > 0 and _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited daemon nobody reaped yet is gone for us
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _leave_parser() -> Parser:
    parser = Parser(prog=f"{PROG} leave", usage=f"{PROG} leave [-w] [-t SECONDS] [remove] [force]")
    parser.add_argument("-w", dest="retry", action="store_true", help="if cman is busy, retry until -t")
    parser.add_argument("-t", dest="timeout", type=_seconds, default=DEFAULT_WAIT, help="at most this long")
    parser.add_argument("words", nargs="*", metavar="remove|force")
    return parser


def cmd_leave(opts: argparse.Namespace) -> int:
    bad = [w for w in opts.words if w not in ("remove", "force")]
    if bad:
        raise UsageError(f"unknown leave option '{bad[0]}'; use remove and/or force")
    root = _root()
    pid = _daemon_pid(root)
    deadline = time.monotonic() + opts.timeout
    from cman.control import ControlError, request

    while True:
        try:
            request(root, "leave", remove="remove" in opts.words, force="force" in opts.words)
            break
        except ControlError as exc:
            if exc.code == "not_running":
                raise CliError(NOT_RUNNING_TEXT) from None
            if not (opts.retry and exc.code == "busy" and time.monotonic() < deadline):
                raise CliError(exc.message) from None
        time.sleep(POLL_INTERVAL * 5)
    while pid is not None and _alive(pid):
        if time.monotonic() >= deadline:
            raise CliError(f"cmand (pid {pid}) is still running {opts.timeout:g} s after it was asked to leave")
        time.sleep(POLL_INTERVAL)
    return 0


def _wait_parser() -> Parser:
    parser = Parser(prog=f"{PROG} wait", usage=f"{PROG} wait [-q] [-t SECONDS]")
    parser.add_argument("-q", dest="wait_quorate", action="store_true", help="wait until quorate")
    parser.add_argument("-t", dest="timeout", type=_seconds, default=DEFAULT_WAIT, help="at most this long")
    return parser


def cmd_wait(opts: argparse.Namespace) -> int:
    root = _root()
    want = "quorate" if opts.wait_quorate else "member"
    deadline = time.monotonic() + opts.timeout
    while True:
        status, code = _try_status(root)
        if status is not None and _reached(status, want):
            return 0
        if time.monotonic() >= deadline:
            if status is None and code == "not_running":
                raise CliError(NOT_RUNNING_TEXT)
            raise CliError(f"timed out after {opts.timeout:g} s: {_goal(want)}")
        time.sleep(POLL_INTERVAL)


# -- expected ------------------------------------------------------------------------------------------------
def _expected_parser() -> Parser:
    parser = Parser(prog=f"{PROG} expected", usage=f"{PROG} expected -e VOTES")
    parser.add_argument("-e", dest="votes", required=True, metavar="VOTES", help="new expected votes")
    return parser


def cmd_expected(opts: argparse.Namespace) -> int:
    from cluster_conf.cli.common import parse_int_option

    votes = parse_int_option("-e", opts.votes, minimum=1)
    ask(_root(), "expected", votes=votes)
    return 0


COMMANDS: dict[str, tuple[Callable[[], Parser], Callable[[argparse.Namespace], int]]] = {
    "status": (_status_parser, cmd_status),
    "nodes": (_nodes_parser, cmd_nodes),
    "fence": (_fence_parser, cmd_fence),
    "join": (_join_parser, cmd_join),
    "leave": (_leave_parser, cmd_leave),
    "wait": (_wait_parser, cmd_wait),
    "expected": (_expected_parser, cmd_expected),
}


# -- version -------------------------------------------------------------------------------------------------
def _version_parser() -> Parser:
    parser = Parser(prog=f"{PROG} version", usage=f"{PROG} version [-r [-S]]",
                    description="Show the configuration version, or reload the configuration (-r)")
    parser.add_argument("-r", dest="reload", nargs="?", const=True, default=False, metavar="",
                        help="reload cluster.conf, distribute it and update the config version")
    parser.add_argument("-S", dest="no_sync", action="store_true",
                        help="reload on this node only: do not distribute cluster.conf")
    return parser


def cmd_version(opts: argparse.Namespace) -> int:
    if opts.reload not in (True, False):
        raise UsageError(
            f"-r takes no version number here (got {opts.reload}): raise config_version in the file, "
            "then run 'cman_tool version -r'"
        )
    if opts.no_sync and not opts.reload:
        raise UsageError("-S only goes with -r (cman_tool version -r -S)")
    from cluster_conf.cli.editing import agent_request, cluster_root

    agent = _agent(cluster_root())
    if not opts.reload:
        sys.stdout.write(f"{suite_version()} config {running_version(agent_request(agent, 'cluster.versions'))}\n")
        return 0
    return reload(agent, cluster_root(), sync=not opts.no_sync)


def _agent(root: str):  # -> LocalAgent
    from cluster_conf.cli.editing import AGENT_SETTINGS, local_agent

    agent = local_agent(root)
    if agent is None:
        raise CliError(f"this node has no ricci agent ({os.path.join(root, AGENT_SETTINGS)} is missing); "
                       "cannot tell the running config version")
    return agent


def running_version(versions_reply: dict) -> int:
    """The version the agent accepted (cluster.versions `accepted`: the last one recorded in its history, never a
    local edit of the live file): what this node runs. Agents that do not report it: the newest in the history.
    0 when none yet."""
    accepted = versions_reply.get("accepted")
    if isinstance(accepted, dict) and isinstance(accepted.get("version"), int):
        return accepted["version"]
    entries = versions_reply.get("versions")
    numbers = [e.get("version") for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    return max((n for n in numbers if isinstance(n, int)), default=0)


def reload(agent, root: str, *, sync: bool) -> int:  # agent: LocalAgent
    """`version -r [-S]`: validate the local file, refuse a version that is not newer than the running one, then
    have the agent take it (and, with `sync`, every node); unreachable nodes are named and catch up later."""
    from cluster_conf import validate
    from cluster_conf.cli.common import default_config_path
    from cluster_conf.cli.editing import AgentRefusal, agent_request, outcome_lines, push_config
    from cluster_conf.document import ClusterConf
    from cluster_conf.reports import ConfigError

    path = default_config_path({"CLUSTER_ROOT": root})
    if not os.path.isfile(path):
        raise CliError(NO_NEW_VERSION_TEXT, exit_code=EXIT_NO_NEW_VERSION, details=[f"{path}: no such file"])
    try:
        conf = ClusterConf.load(path)
    except ConfigError as exc:
        raise CliError(f"{path} is not valid; not reloading", details=[str(exc)]) from None
    new = conf.config_version
    if new is None:
        raise CliError(NO_NEW_VERSION_TEXT, exit_code=EXIT_NO_NEW_VERSION,
                       details=[f"{path}: <cluster> has no integer config_version"])
    errors = [r for r in validate(conf, lint=False) if r.is_error]
    if errors:
        raise CliError(f"{path} is not valid; not reloading", details=[r.format(path) for r in errors])
    running = running_version(agent_request(agent, "cluster.versions"))
    if new <= running:
        raise CliError(NOT_NEWER_TEXT, exit_code=EXIT_NOT_NEWER,
                       details=[f"running config_version {running}, {path} has {new}"])
    try:
        # The agent records the file as the version this node runs, also when it is already the live file (a hand
        # edit); unless -S, it distributes it too (the original's ccs_sync).
        result = push_config(agent, conf, propagate=sync)
    except AgentRefusal as exc:
        if exc.code in ("version_not_greater", "same_version_differs"):
            raise CliError(NOT_NEWER_TEXT, exit_code=EXIT_NOT_NEWER, details=[exc.message]) from None
        raise CliError(exc.message) from None
    unreachable = sorted(n for n, (outcome, _) in result.failed.items() if outcome == "unreachable")
    refused = sorted(n for n in result.failed if n not in unreachable)
    if refused:
        raise CliError(
            f"ccs_sync failed: config version {new} was refused by {', '.join(refused)}",
            details=[line.strip() for line in outcome_lines(result)],
        )
    for name in unreachable:
        warn(PROG, f"{name} did not get config version {new} (unreachable); it catches up when its agent is back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
