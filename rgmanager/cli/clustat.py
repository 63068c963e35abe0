"""clustat: the cluster status display (rhcs-facts §4.1), a thin client of the node's `cmand` and `rgmanager`.

    clustat [-f] [-l] [-m MEMBER] [-s SERVICE] [-x | --json] [-i SECONDS [--count N]] [-I] [-Q] [-v] [-h]

Data: `cman.control.request(root, "status")` (cmand: cluster name, quorum, members, quorum disk) and the same request
on rgmanager's socket (`var/run/cluster/rgmanager.sock`: members' rgmanager/RG-Master/estranged flags, services).
Members are cmand's view with rgmanager's flags laid over it (`-f`: rgmanager's cached view alone, cmand asked only
when rgmanager does not answer). Both requests together are bounded to TOTAL_TIMEOUT (1.9 s, a hard timer on top of
the socket timeouts): clustat never hangs.

Options (the original's, plus `--json` and `--count`):
    -i SECONDS   refresh every SECONDS (a number > 0): clear the screen (ESC[H ESC[2J), print, sleep; Ctrl-C ends it
                 with status 0. Refused with -x: "Error: Options '-i' and '-x' are mutually exclusive".
    --count N    (ours) stop -i after N displays; tests and scripts use it so the loop is bounded.
    -I           print the local node id as 0x%08x
    -m MEMBER    only that member; exit 0 online, 1 offline (1 and a message on stderr when not a member)
    -s SERVICE   only that service (`service:` prefixed when there is no colon); exit 0 when starting, started or
                 stopping, else the numeric state (110, 119, ...); 255 when not found; 1 when rgmanager does not answer
    -l           services as long blocks (Service Information)
    -x           XML (§4.1); with -m/-s only the matching node/group, without <cluster>/<quorum>
    -Q           no output on stdout; exit 0 quorate, 1 not (or when cman does not answer)
    -f           fast: rgmanager's cached view of members and quorum
    -v           "clustat version X"
    --json       (ours) the object below, filtered by -m/-s like the other formats

Text layout: widths from the terminal when stdout is a tty (`shutil.get_terminal_size`), else 80 columns; member
name width cols/2, service and owner widths (cols - 20)/2, state 14. Rows sit one column right of the member
header's labels (the original's quirk). The owner shows as `(last owner)` for stopped, disabled, recoverable and
failed services, `none` when there is none, `unknown` when the name is not among the members. Flags follow the
state, padded to 14 - (2 + len(flags)): `started    [Z]`, `[P]`, `[ZP]`. XML quirk kept: when inquorate, a newline
follows quorate="0".

--json schema (stable; `null` where not known):
    {"cluster": {"name": str, "id": int|null, "generation": int|null},
     "quorum": {"quorate": bool, "groupmember": bool},          # groupmember: rgmanager answers on this node
     "rgmanager": "running" | "not_running" | "timeout",
     "members": [{"name": str, "nodeid": int, "online": bool, "local": bool, "estranged": bool,
                  "rgmanager": bool, "master": bool, "qdisk": bool}, ...],           # by nodeid; qdisk is nodeid 0
     "services": [{"name": str, "state": int, "state_str": str, "flags": int, "flags_str": str,
                   "owner": str|null, "last_owner": str|null, "restarts": int,
                   "last_transition": float|null}, ...] | null}                     # by name; null: no rgmanager

Messages (the original's words, on stderr unless noted): "Could not connect to CMAN: <reason>" (exit 1);
on stdout in place of the service table: "Resource Group Manager not running; no service information available."
and "Timed out waiting for a response from Resource Group Manager" (members still shown, exit 0);
"Membership information not available" when cmand lists no node.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from cluster_conf.cli.common import CliError, Parser, UsageError, print_json, printable, run, suite_version
from cman.control import SOCKET as CMAN_SOCKET
from cman.control import ControlError, request
from rgmanager.endpoints import RG_SOCKET
from rgmanager.states import Flag, State

PROG = "clustat"
XML_VERSION = "4.1.1"  # the XML format's version attribute, as the original writes it
TOTAL_TIMEOUT = 1.9  # seconds for all requests of one display
CMAN_TIMEOUT = 1.0  # cmand's share when rgmanager is asked after it
DEFAULT_COLS = 80
STATE_WIDTH = 14
CLEAR_SCREEN = "\033[H\033[2J"
EXIT_NOT_FOUND = 255
RUNNING_STATES = frozenset({State.STARTING, State.STARTED, State.STOPPING})
LAST_OWNER_STATES = frozenset({State.STOPPED, State.DISABLED, State.RECOVERABLE, State.FAILED})
RG_NOT_RUNNING_TEXT = "Resource Group Manager not running; no service information available."
RG_TIMEOUT_TEXT = "Timed out waiting for a response from Resource Group Manager"
NO_MEMBERSHIP_TEXT = "Membership information not available"
IX_REFUSAL_TEXT = "Error: Options '-i' and '-x' are mutually exclusive"

USAGE = """\
usage: clustat <options>
    -i <interval>      Refresh every <interval> seconds.  May not be used with -x.
    --count <n>        Stop -i after <n> displays
    -I                 Display local node ID and exit
    -m <member>        Display status of <member> and exit
    -s <service>       Display status of <service> and exit
    -v                 Display version and exit
    -x                 Dump information as XML
    --json             Dump information as JSON
    -Q                 Return 0 if quorate, 1 if not (no output)
    -f                 Enable fast clustat reports
    -l                 Use long format for services
    -h                 Display this help and exit
"""


class Snapshot(NamedTuple):
    """One reading of the cluster: what every output format is made from."""

    cluster: dict[str, Any]  # name, id, generation
    quorate: bool
    local_nodeid: int | None
    rgmanager: str  # running | not_running | timeout
    members: list[dict[str, Any]]  # the rgmanager `status` member schema, by nodeid
    services: list[dict[str, Any]] | None  # the rgmanager `status` service schema, by name


class CmanUnavailable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- reading the daemons -------------------------------------------------------------------------------------
def _on_alarm(signum: int, frame: object) -> None:
    raise TimeoutError


def ask_status(root: str, socket_name: str, timeout: float) -> dict[str, Any]:
    """The `status` of one daemon, within `timeout` seconds in total (socket timeouts bound each step; a timer
    bounds the whole when clustat runs in the main thread), else ControlError."""
    timeout = max(timeout, 0.05)
    try:
        previous = signal.signal(signal.SIGALRM, _on_alarm)
    except ValueError:  # not the main thread: the socket timeouts alone
        previous = None
    else:
        signal.setitimer(signal.ITIMER_REAL, timeout + 0.05)
    try:
        result = request(root, "status", socket_name=socket_name, timeout=timeout)
    except TimeoutError:
        raise ControlError("timeout", f"no answer within {timeout:g} s") from None
    finally:
        if previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    if not isinstance(result, dict):
        raise ControlError("bad_reply", "the status is not an object")
    return result


def _cman_reason(exc: ControlError) -> str:
    """perror's words for why cmand cannot be reached."""
    return {"not_running": "Connection refused", "timeout": "Connection timed out"}.get(exc.code, exc.message)


def gather(root: str, *, fast: bool = False) -> Snapshot:
    """Ask cmand and rgmanager (in that order; `fast`: rgmanager first, cmand only when it does not answer)."""
    deadline = time.monotonic() + TOTAL_TIMEOUT
    if fast:
        try:
            rg = ask_status(root, RG_SOCKET, CMAN_TIMEOUT)
        except ControlError as exc:
            rg_state = "timeout" if exc.code == "timeout" else "not_running"
        else:
            return _from_rgmanager(rg)
        cman = _ask_cman(root, deadline - time.monotonic())
        return snapshot_from(cman, None, rg_state)
    cman = _ask_cman(root, min(CMAN_TIMEOUT, deadline - time.monotonic()))
    try:
        rg: dict[str, Any] | None = ask_status(root, RG_SOCKET, deadline - time.monotonic())
        rg_state = "running"
    except ControlError as exc:
        rg, rg_state = None, ("timeout" if exc.code == "timeout" else "not_running")
    return snapshot_from(cman, rg, rg_state)


def _ask_cman(root: str, timeout: float) -> dict[str, Any]:
    try:
        return ask_status(root, CMAN_SOCKET, timeout)
    except ControlError as exc:
        raise CmanUnavailable(_cman_reason(exc)) from None


def _member(name: str, nodeid: int, online: bool, **flags: bool) -> dict[str, Any]:
    row = {"name": name, "nodeid": nodeid, "online": online, "local": False, "rgmanager": False, "master": False,
           "estranged": False, "qdisk": False}
    row.update(flags)
    return row


def snapshot_from(cman: dict[str, Any], rg: dict[str, Any] | None, rg_state: str) -> Snapshot:
    """cmand's members (online = in the view) with rgmanager's flags laid over them by node id: the snapshot
    clustat prints, from the two daemons' status dicts (luci builds its status from ricci's copies of them)."""
    members = [_member(str(n.get("name")), int(n.get("nodeid", 0)), n.get("state") == "M", local=bool(n.get("local")))
               for n in cman.get("nodes") or ()]
    qdisk = cman.get("qdisk")
    if isinstance(qdisk, dict):
        members.append(_member(str(qdisk.get("device", "qdisk")), 0, bool(qdisk.get("alive")), qdisk=True))
    if rg is not None:
        by_id = {m["nodeid"]: m for m in members}
        for extra in rg.get("members") or ():
            row = by_id.get(extra.get("nodeid"))
            if row is None:
                members.append(_member(str(extra.get("name")), int(extra.get("nodeid", 0)),
                                       bool(extra.get("online")), estranged=bool(extra.get("estranged")),
                                       rgmanager=bool(extra.get("rgmanager")), master=bool(extra.get("master")),
                                       qdisk=bool(extra.get("qdisk"))))
            elif not row["qdisk"]:
                row["rgmanager"] = bool(extra.get("rgmanager"))
                row["master"] = bool(extra.get("master"))
                row["estranged"] = bool(extra.get("estranged"))
    members.sort(key=lambda m: m["nodeid"])
    cluster = cman.get("cluster") or {}
    node = cman.get("node") or {}
    return Snapshot(
        cluster={"name": cluster.get("name"), "id": cluster.get("id"), "generation": cman.get("generation")},
        quorate=bool((cman.get("quorum") or {}).get("quorate")),
        local_nodeid=node.get("nodeid"),
        rgmanager=rg_state,
        members=members,
        services=_services(rg) if rg is not None else None,
    )


def _from_rgmanager(rg: dict[str, Any]) -> Snapshot:
    members = [_member(str(m.get("name")), int(m.get("nodeid", 0)), bool(m.get("online")),
                       **{k: bool(m.get(k)) for k in ("local", "rgmanager", "master", "estranged", "qdisk")})
               for m in rg.get("members") or ()]
    members.sort(key=lambda m: m["nodeid"])
    local = next((m["nodeid"] for m in members if m["local"]), None)
    cluster = rg.get("cluster") or {}
    return Snapshot(cluster={"name": cluster.get("name"), "id": cluster.get("id"),
                             "generation": cluster.get("generation")},
                    quorate=bool(rg.get("quorate")), local_nodeid=local, rgmanager="running", members=members,
                    services=_services(rg))


def _services(rg: dict[str, Any]) -> list[dict[str, Any]]:
    services = list(rg.get("services") or ())
    services.sort(key=lambda s: str(s.get("name")))
    return services


# -- selection and exit codes --------------------------------------------------------------------------------
def service_name(text: str) -> str:
    """`-s web` means `service:web`; `vm:x` and `service:x` are taken as they are."""
    return text if ":" in text else f"service:{text}"


def find_member(snapshot: Snapshot, name: str) -> dict[str, Any] | None:
    return next((m for m in snapshot.members if m["name"] == name), None)


def find_service(snapshot: Snapshot, name: str) -> dict[str, Any] | None:
    return next((s for s in snapshot.services or () if s.get("name") == name), None)


def service_exit_code(service: dict[str, Any] | None) -> int:
    """0 when starting, started or stopping; the numeric state otherwise; 255 when there is no such service."""
    if service is None:
        return EXIT_NOT_FOUND
    state = int(service.get("state", 0))
    return 0 if state in RUNNING_STATES else state % 256


# -- text ----------------------------------------------------------------------------------------------------
def terminal_columns() -> int:
    """The terminal's width when stdout is a terminal, else 80 (the original's default)."""
    try:
        tty = sys.stdout.isatty()
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        return DEFAULT_COLS
    import shutil

    return max(shutil.get_terminal_size((DEFAULT_COLS, 24)).columns, 40)


def member_status(member: dict[str, Any]) -> str:
    words = ["Online" if member["online"] else "Offline"]
    if member["local"]:
        words.append("Local")
    if member["estranged"]:
        words.append("Estranged")
    if member["master"]:
        words.append("RG-Master")
    elif member["rgmanager"]:
        words.append("rgmanager")
    if member["qdisk"]:
        words.append("Quorum Disk")
    return ", ".join(words)


def member_table(members: Sequence[dict[str, Any]], cols: int) -> list[str]:
    w = cols // 2
    lines = [f" {'Member Name':<{w}.{w}}{'ID':<4} Status", f" {'------ ----':<{w}.{w}}{'----':<4} ------"]
    lines.extend(f" {m['name']:<{w}.{w}} {m['nodeid']:4d} {member_status(m)}" for m in members)
    return lines


def _owner_text(service: dict[str, Any], state: int, known: frozenset[str]) -> str:
    if state in LAST_OWNER_STATES:
        return f"({_node_name(service.get('last_owner'), known)})"
    return _node_name(service.get("owner"), known)


def _node_name(name: str | None, known: frozenset[str]) -> str:
    if not name:
        return "none"
    return name if not known or name in known else "unknown"


def _state_text(service: dict[str, Any], state: int) -> str:
    label = service.get("state_str") or _state_label(state)
    short = Flag(int(service.get("flags", 0)) & 3).short
    if not short:
        return f"{label:<{STATE_WIDTH}.{STATE_WIDTH}}"
    w = STATE_WIDTH - (2 + len(short))
    return f"{label:<{w}.{w}}[{short}]"


def _state_label(state: int) -> str:
    try:
        return State(state).label
    except ValueError:
        return str(state)


def service_table(services: Sequence[dict[str, Any]], cols: int, known: frozenset[str]) -> list[str]:
    w = (cols - 20) // 2
    lines = [f" {'Service Name':<{w}.{w}} {'Owner (Last)':<{w}.{w}} {'State':<{STATE_WIDTH}}",
             f" {'------- ----':<{w}.{w}} {'----- ------':<{w}.{w}} {'-----':<{STATE_WIDTH}}"]
    for s in services:
        state = int(s.get("state", 0))
        lines.append(f" {s.get('name')!s:<{w}.{w}} {_owner_text(s, state, known):<{w}.{w}} {_state_text(s, state)}")
    return lines


def _ctime(epoch: object) -> str:
    return time.ctime(float(epoch)) if isinstance(epoch, int | float) else "never"


def service_blocks(services: Sequence[dict[str, Any]]) -> list[str]:
    """`-l`: one block per service."""
    lines = ["Service Information", "------- -----------", ""]
    for s in services:
        state, flags = int(s.get("state", 0)), int(s.get("flags", 0))
        lines += [f"Service Name      : {s.get('name')}",
                  f"  Current State   : {s.get('state_str') or _state_label(state)} ({state})",
                  f"  Flags           : {s.get('flags_str') or 'none'} ({flags})",
                  f"  Owner           : {s.get('owner') or 'none'}",
                  f"  Last Owner      : {s.get('last_owner') or 'none'}",
                  f"  Last Transition : {_ctime(s.get('last_transition'))}",
                  ""]
    return lines


def format_text(snapshot: Snapshot, *, cols: int = DEFAULT_COLS, member: str | None = None,
                service: str | None = None, long: bool = False, now: float | None = None) -> str:
    """The §4.1 display; with -m only the member table, with -s only the service table (both: both)."""
    sections: list[list[str]] = []
    whole = member is None and service is None
    if whole:
        sections.append([f"Cluster Status for {snapshot.cluster.get('name')} @ {time.ctime(now)}",
                         f"Member Status: {'Quorate' if snapshot.quorate else 'Inquorate'}"])
    if whole or member is not None:
        members = snapshot.members if member is None else [m for m in snapshot.members if m["name"] == member]
        sections.append(member_table(members, cols) if snapshot.members else [NO_MEMBERSHIP_TEXT])
    if whole or service is not None:
        if snapshot.services is None:
            sections.append([RG_TIMEOUT_TEXT if snapshot.rgmanager == "timeout" else RG_NOT_RUNNING_TEXT])
        else:
            services = snapshot.services if service is None else \
                [s for s in snapshot.services if s.get("name") == service]
            known = frozenset(m["name"] for m in snapshot.members)
            sections.append(service_blocks(services) if long else service_table(services, cols, known))
    return "\n\n".join("\n".join(lines) for lines in sections).rstrip("\n") + "\n"


# -- XML -----------------------------------------------------------------------------------------------------
def _attr(value: object) -> str:
    text = "" if value is None else str(value)
    if any(c in text for c in '&<>"'):
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return text


def _node_xml(m: dict[str, Any]) -> str:
    return (f'    <node name="{_attr(m["name"])}" state="{int(m["online"])}" local="{int(m["local"])}" '
            f'estranged="{int(m["estranged"])}" rgmanager="{int(m["rgmanager"])}" '
            f'rgmanager_master="{int(m["master"])}" qdisk="{int(m["qdisk"])}" nodeid="0x{m["nodeid"]:08x}"/>')


def _group_xml(s: dict[str, Any]) -> str:
    state, transition = int(s.get("state", 0)), s.get("last_transition")
    return (f'    <group name="{_attr(s.get("name"))}" state="{state}" '
            f'state_str="{_attr(s.get("state_str") or _state_label(state))}" flags="{int(s.get("flags", 0))}" '
            f'flags_str="{_attr(s.get("flags_str"))}" owner="{_attr(s.get("owner") or "none")}" '
            f'last_owner="{_attr(s.get("last_owner") or "none")}" restarts="{int(s.get("restarts", 0))}" '
            f'last_transition="{int(transition) if isinstance(transition, int | float) else 0}" '
            f'last_transition_str="{_attr(_ctime(transition))}"/>')


def format_xml(snapshot: Snapshot, *, member: str | None = None, service: str | None = None) -> str:
    lines = ['<?xml version="1.0"?>', f'<clustat version="{XML_VERSION}">']
    whole = member is None and service is None
    if whole:
        c = snapshot.cluster
        lines.append(f'  <cluster name="{_attr(c.get("name"))}" id="{_attr(c.get("id") or 0)}" '
                     f'generation="{_attr(c.get("generation") or 0)}"/>')
        after = '"' if snapshot.quorate else '"\n'  # the original's newline after quorate="0"
        lines.append(f'  <quorum quorate="{int(snapshot.quorate)}{after} '
                     f'groupmember="{int(snapshot.rgmanager == "running")}"/>')
    if whole or member is not None:
        lines.append("  <nodes>")
        lines.extend(_node_xml(m) for m in snapshot.members if member is None or m["name"] == member)
        lines.append("  </nodes>")
    if snapshot.services is not None and (whole or service is not None):
        lines.append("  <groups>")
        lines.extend(_group_xml(s) for s in snapshot.services if service is None or s.get("name") == service)
        lines.append("  </groups>")
    lines.append("</clustat>")
    return "\n".join(lines) + "\n"


# -- JSON ----------------------------------------------------------------------------------------------------
SERVICE_KEYS = ("name", "state", "state_str", "flags", "flags_str", "owner", "last_owner", "restarts",
                "last_transition")


def as_json(snapshot: Snapshot, *, member: str | None = None, service: str | None = None) -> dict[str, Any]:
    """The documented --json object (see the module docstring)."""
    services = None
    if snapshot.services is not None:
        services = []
        for s in snapshot.services:
            if service is None or s.get("name") == service:
                row = {k: s.get(k) for k in SERVICE_KEYS}
                row["state_str"] = row["state_str"] or _state_label(int(row["state"] or 0))
                row["flags"] = int(row["flags"] or 0)
                row["flags_str"] = row["flags_str"] or ""
                row["restarts"] = int(row["restarts"] or 0)
                services.append(row)
    return {
        "cluster": dict(snapshot.cluster),
        "quorum": {"quorate": snapshot.quorate, "groupmember": snapshot.rgmanager == "running"},
        "rgmanager": snapshot.rgmanager,
        "members": [dict(m) for m in snapshot.members if member is None or m["name"] == member],
        "services": services,
    }


# -- the command ---------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, _main, argv)


def _parser() -> Parser:
    parser = Parser(prog=PROG, add_help=False)
    parser.add_argument("-i", dest="interval")
    parser.add_argument("--count", dest="count")
    parser.add_argument("-I", dest="nodeid", action="store_true")
    parser.add_argument("-m", dest="member")
    parser.add_argument("-s", dest="service")
    parser.add_argument("-v", dest="version", action="store_true")
    parser.add_argument("-x", dest="xml", action="store_true")
    parser.add_argument("--json", dest="json", action="store_true")
    parser.add_argument("-Q", dest="quiet", action="store_true")
    parser.add_argument("-f", dest="fast", action="store_true")
    parser.add_argument("-l", dest="long", action="store_true")
    parser.add_argument("-h", "--help", dest="help", action="store_true")
    return parser


def _interval(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:
        raise UsageError(f"argument to -i ({printable(text)}) is not a positive number of seconds")
    return value


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    from cluster_conf.cli.common import parse_int_option

    return parse_int_option("--count", text, minimum=1)


def _main(argv: list[str]) -> int:
    opts = _parser().parse_args(argv)
    if opts.help:
        sys.stdout.write(USAGE)
        return 0
    if opts.version:
        sys.stdout.write(f"clustat version {suite_version()}\n")
        return 0
    interval, count = _interval(opts.interval), _count(opts.count)
    if interval is not None and opts.xml:
        sys.stderr.write(IX_REFUSAL_TEXT + "\n")
        return 1
    if opts.xml and opts.json:
        raise UsageError("-x and --json cannot be combined")
    if opts.member is not None and not opts.member:
        raise UsageError("argument to -m is empty")
    service = service_name(opts.service) if opts.service else None
    root = os.environ.get("CLUSTER_ROOT") or "/"
    if interval is None:
        return display(root, opts, service)
    return refresh(root, opts, service, interval, count)


def refresh(root: str, opts: Any, service: str | None, interval: float, count: int | None) -> int:
    """-i: clear, display, sleep; until Ctrl-C (status 0) or --count displays."""
    shown, status = 0, 0
    try:
        while count is None or shown < count:
            sys.stdout.write(CLEAR_SCREEN)
            status = display(root, opts, service)
            sys.stdout.flush()
            shown += 1
            if count is None or shown < count:
                time.sleep(interval)
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return 0
    return status


def display(root: str, opts: Any, service: str | None) -> int:
    """One reading, printed in the chosen format; the exit status of -Q, -I, -m or -s."""
    try:
        snapshot = gather(root, fast=opts.fast)
    except CmanUnavailable as exc:
        sys.stderr.write(f"Could not connect to CMAN: {exc.reason}\n")
        return 1
    if opts.quiet:
        return 0 if snapshot.quorate else 1
    if opts.nodeid:
        if snapshot.local_nodeid is None:
            raise CliError(NO_MEMBERSHIP_TEXT)
        sys.stdout.write(f"0x{int(snapshot.local_nodeid):08x}\n")
        return 0
    member = opts.member
    if member is not None and find_member(snapshot, member) is None:
        raise CliError(f"member '{printable(member)}' is not in the membership list")
    if service is not None and snapshot.services is not None and find_service(snapshot, service) is None:
        raise CliError(f"service '{printable(service)}' does not exist", exit_code=EXIT_NOT_FOUND)
    if opts.xml:
        sys.stdout.write(format_xml(snapshot, member=member, service=service))
    elif opts.json:
        print_json(as_json(snapshot, member=member, service=service))
    else:
        sys.stdout.write(format_text(snapshot, cols=terminal_columns(), member=member, service=service,
                                     long=opts.long))
    if service is not None:
        return 1 if snapshot.services is None else service_exit_code(find_service(snapshot, service))
    if member is not None:
        found = find_member(snapshot, member)
        return 0 if found is not None and found["online"] else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
