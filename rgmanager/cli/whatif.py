"""The what-if verbs of rg_test: `place` and `simulate` (thin adapters over rgmanager.planner).

    rg_test place FILE --online n1,n2,... [--owner SERVICE=NODE ...] [--state STATE.json] [--json]
    rg_test simulate FILE --state STATE.json --event "node-down NODE" [--event ...] [--json]

rg_test.py calls `place_main(argv)` / `simulate_main(argv)` with the arguments after the verb. Exit status: 0 when
the answer was computed (a refused request is an answer), 1 for bad input (one line on stderr saying what and
where), 2 for a usage error. STATE.json is documented in docs/engine.md.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from cluster_conf import ClusterConf, ConfigError
from cluster_conf.model import ClusterView, view
from cluster_conf.validation import validate
from rgmanager.placement import catalog_of
from rgmanager.planner import Plan, plan
from rgmanager.snapshot import (
    ConfigChanged,
    Event,
    Membership,
    MigrateFailed,
    NodeDown,
    NodeUp,
    QuorumFormed,
    QuorumLost,
    ServiceFailed,
    ServiceRecord,
    ServiceTable,
    StopFailed,
    UserOp,
    UserRequest,
    describe_event,
    service_id,
)
from rgmanager.states import ACTIVE_STATES, Flag, State

MAX_STATE_BYTES = 16 * 1024 * 1024


class BadInput(Exception):
    """One line: what is wrong and where."""


# -- loading ------------------------------------------------------------------------------------------------
def load_config(path: str) -> ClusterView:
    """Load and view `path`; a configuration whose services depend on each other in a cycle is refused here with
    the configuration check's own DEPEND_CYCLE report (the planner would refuse every event)."""
    try:
        conf = ClusterConf.load(path)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    config = view(conf)
    if catalog_of(config).cycle:
        cycles = [r for r in validate(conf, lint=False, relaxng=False) if r.code == "DEPEND_CYCLE"]
        if cycles:
            raise BadInput(cycles[0].format(path))
        raise BadInput(f"{path}: services depend on each other in a cycle: {' -> '.join(catalog_of(config).cycle)}")
    return config


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise BadInput(f"{where}: expected a number of seconds >= 0 (finite), got {json.dumps(value)}")
    return float(value)


def _node(value: Any, membership: Membership, where: str) -> str | None:
    """A node name that must be in the configuration."""
    name = _name(value, where)
    if name is not None and membership.node(name) is None:
        raise BadInput(f"{where}: no node {name!r} in the configuration")
    return name


def _name(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"{where}: expected a node name, got {json.dumps(value)}")
    return value.strip()


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadInput(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _known_keys(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise BadInput(f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


class Snapshot:
    """A parsed STATE.json: the time base, the membership and the service table."""

    def __init__(self, now: float, membership: Membership, table: ServiceTable) -> None:
        self.now, self.membership, self.table = now, membership, table


def read_state(path: str, config: ClusterView) -> Snapshot:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_STATE_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_STATE_BYTES:
        raise BadInput(f"{path}: larger than {MAX_STATE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise BadInput(f"{path}: JSON nested too deeply") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = getattr(exc, "lineno", None)
        raise BadInput(f"{path}{f':{line}' if line else ''}: not valid JSON: {getattr(exc, 'msg', exc)}") from None
    return parse_state(data, config, path)


def parse_state(data: Any, config: ClusterView, source: str = "STATE.json") -> Snapshot:
    data = _object(data, source)
    _known_keys(data, {"now", "quorate", "local", "locked", "nodes", "services"}, source)
    now = _number(data.get("now", 1), f"{source}: now")
    quorate = data.get("quorate", True)
    if not isinstance(quorate, bool):
        raise BadInput(f"{source}: quorate: expected true or false")
    membership = Membership.from_config(config, quorate=quorate)
    membership = replace(membership, local=_node(data.get("local"), membership, f"{source}: local"))
    locked = data.get("locked", False)
    if not isinstance(locked, bool):
        raise BadInput(f"{source}: locked: expected true or false")
    membership = replace(membership, locked=locked)
    nodes = _object(data.get("nodes", {}), f"{source}: nodes")
    for name, info in nodes.items():
        where = f"{source}: nodes.{name}"
        info = _object(info, where)
        _known_keys(info, {"online", "clean"}, where)
        online, clean = info.get("online", True), info.get("clean", True)
        if not isinstance(online, bool) or not isinstance(clean, bool):
            raise BadInput(f"{where}: online and clean must be true or false")
        if membership.node(name) is None:
            raise BadInput(f"{where}: no such node in the configuration")
        membership = membership.with_node(name, online=online, clean=clean)
    services = _object(data.get("services", {}), f"{source}: services")
    records: dict[str, ServiceRecord] = {}
    for name, info in services.items():
        record = parse_record(name, info, config, membership, f"{source}: services.{name}")
        if record.name in records:
            raise BadInput(f"{source}: services.{name}: {record.name} is listed twice")
        records[record.name] = record
    return Snapshot(now, membership, ServiceTable(records))


def parse_record(name: str, info: Any, config: ClusterView, membership: Membership, where: str) -> ServiceRecord:
    info = _object(info, where)
    _known_keys(info, {"state", "owner", "last_owner", "restarts", "last_transition", "flags"}, where)
    svc = config.service(name)
    if svc is None:
        raise BadInput(f"{where}: no service {name!r} in the configuration")
    state_value, flags_value = info.get("state", "stopped"), info.get("flags", [])
    if isinstance(state_value, bool) or not isinstance(state_value, str | int):
        raise BadInput(f"{where}: state: expected a state name or code, got {json.dumps(state_value)}")
    if not isinstance(flags_value, str | list) or not all(isinstance(f, str) for f in flags_value):
        raise BadInput(f"{where}: flags: expected a string or a list of strings, got {json.dumps(flags_value)}")
    try:
        state = State.parse(state_value)
        flags = Flag.parse(flags_value)
    except ValueError as exc:
        raise BadInput(f"{where}: {exc}") from None
    restarts = info.get("restarts", [])
    if not isinstance(restarts, list):
        raise BadInput(f"{where}: restarts: expected a list of times")
    owner = _node(info.get("owner"), membership, f"{where}: owner")
    if owner is None and state in ACTIVE_STATES:
        raise BadInput(f"{where}: state {state.label} needs an owner")
    return ServiceRecord(
        svc.id,
        state,
        owner,
        _node(info.get("last_owner"), membership, f"{where}: last_owner"),
        tuple(_number(t, f"{where}: restarts") for t in restarts),
        _number(info.get("last_transition", 1 if owner else 0), f"{where}: last_transition"),
        flags,
    )


def state_to_dict(now: float, membership: Membership, table: ServiceTable) -> dict[str, Any]:
    """The STATE.json form of a snapshot (what `simulate --json` prints as "state", reusable as input)."""
    services: dict[str, Any] = {}
    for sid, r in table.items():
        entry: dict[str, Any] = {"state": r.state.label}
        if r.owner:
            entry["owner"] = r.owner
        if r.last_owner:
            entry["last_owner"] = r.last_owner
        if r.restarts:
            entry["restarts"] = list(r.restarts)
        entry["last_transition"] = r.last_transition
        if r.flags:
            entry["flags"] = list(r.flags.words)
        services[sid] = entry
    return {
        "now": now,
        "quorate": membership.quorate,
        **({"local": membership.local} if membership.local else {}),
        "nodes": {n.name: {"online": n.online, "clean": n.clean} for n in membership.nodes},
        "services": services,
    }


# -- events -------------------------------------------------------------------------------------------------
_OPS = {op.value: op for op in UserOp}
EVENT_HELP = (
    "node-down NODE | node-up NODE | quorum-formed | quorum-lost | "
    "service-fail SERVICE [RESOURCE] [subtree=1|2] [node=NODE] | "
    "stop-failed SERVICE [NODE] | migrate-failed SERVICE NODE RC | config-changed FILE | " + " | ".join(
        f"{op} SERVICE" + (" NODE" if op == "migrate" else " [NODE]" if op in ("enable", "relocate") else "")
        for op in _OPS
    ) + "; each may end with at=SECONDS"
)


def parse_event(text: str, now: float) -> tuple[Event, str | None]:
    """One --event string -> (event, new config file for config-changed)."""
    words = text.split()
    options = {}
    while words and "=" in words[-1]:
        key, _, value = words.pop().partition("=")
        options[key] = value
    if not words:
        raise BadInput(f"--event {text!r}: empty event (expected {EVENT_HELP})")
    verb, args = words[0].lower(), words[1:]
    allowed = {"at"} | ({"subtree", "node"} if verb == "service-fail" else set())
    for key in options:
        if key not in allowed:
            raise BadInput(f"--event {text!r}: unknown option {key}=")
    if "at" in options:
        previous = now
        try:
            now = float(options["at"])
        except ValueError:
            raise BadInput(f"--event {text!r}: at= needs a number of seconds") from None
        if not math.isfinite(now):
            raise BadInput(f"--event {text!r}: at= needs a finite number of seconds")
        if now <= 0:
            raise BadInput(f"--event {text!r}: at= must be > 0 (0 means 'never transitioned')")
        if now < previous:
            raise BadInput(f"--event {text!r}: at={options['at']} is before the previous event's time {previous:g}; "
                           "events happen in order")

    def need(low: int, high: int, shape: str) -> None:
        if not low <= len(args) <= high:
            raise BadInput(f"--event {text!r}: expected '{verb} {shape}'")

    config_file = None
    event: Event
    if verb in ("node-down", "node-up"):
        need(1, 1, "NODE")
        event = NodeDown(args[0], now) if verb == "node-down" else NodeUp(args[0], now)
    elif verb in ("quorum-formed", "quorum-lost"):
        need(0, 0, "")
        event = QuorumFormed(now) if verb == "quorum-formed" else QuorumLost(now)
    elif verb == "service-fail":
        need(1, 2, "SERVICE [RESOURCE] [subtree=1|2]")
        subtree = None
        if "subtree" in options:
            if options["subtree"] not in ("0", "1", "2"):
                raise BadInput(f"--event {text!r}: subtree= is 0, 1 (independent) or 2 (non-critical)")
            subtree = int(options["subtree"])
        event = ServiceFailed(args[0], args[1] if len(args) > 1 else None, subtree, now, options.get("node"))
    elif verb == "stop-failed":
        need(1, 2, "SERVICE [NODE]")
        event = StopFailed(args[0], args[1] if len(args) > 1 else OWNER, now)
    elif verb == "migrate-failed":
        need(3, 3, "SERVICE NODE RC")
        try:
            rc = int(args[2])
        except ValueError:
            raise BadInput(f"--event {text!r}: RC is the agent's return code, an integer") from None
        event = MigrateFailed(args[0], args[1], rc, now)
    elif verb == "config-changed":
        need(1, 1, "FILE")
        event, config_file = ConfigChanged(now), args[0]
    elif verb in _OPS:
        op = _OPS[verb]
        if op is UserOp.MIGRATE:
            need(2, 2, "SERVICE NODE")
        elif op in (UserOp.ENABLE, UserOp.RELOCATE):
            need(1, 2, "SERVICE [NODE]")
        else:
            need(1, 1, "SERVICE")
        event = UserRequest(op, args[0], args[1] if len(args) > 1 else None, now)
    else:
        raise BadInput(f"--event {text!r}: unknown event {verb!r} (expected {EVENT_HELP})")
    return event, config_file


OWNER = ""  # stop-failed without a node: the service's owner (or last owner) when the event runs


def check_event_names(event: Event, config: ClusterView, membership: Membership, text: str) -> None:
    """Unknown nodes in node events are input errors; unknown services and targets are answered by the planner."""
    node = getattr(event, "node", None)
    if node and membership.node(node) is None:
        raise BadInput(f"--event {text!r}: no node {node!r} in the configuration")


def resolve_event(event: Event, config: ClusterView, table: ServiceTable, text: str) -> Event:
    """Fill in what an event takes from the state it runs on: config-changed gets the configuration it replaces,
    stop-failed without a node gets the service's owner (or last owner)."""
    if isinstance(event, ConfigChanged):
        return replace(event, previous=config)
    if isinstance(event, StopFailed) and event.node == OWNER:
        rule = catalog_of(config).find(event.service)
        rec = table.record(rule.id if rule is not None else service_id(event.service))
        node = rec.owner or rec.last_owner
        if node is None:
            raise BadInput(f"--event {text!r}: {rec.name} has no owner or last owner; name the node "
                           "(stop-failed SERVICE NODE)")
        return replace(event, node=node)
    return event


# -- output -------------------------------------------------------------------------------------------------
def placement_rows(config: ClusterView, result: Plan) -> list[dict[str, Any]]:
    """For every configured service: where it runs (or should), its state, and why."""
    catalog = catalog_of(config)
    last_action = {a.service: a for a in result.actions}
    pending = {p.service: p for p in result.pending}
    rows = []
    for rule in catalog.services:
        rec = result.table.record(rule.id)
        node = rec.owner if rec.active else None
        if rule.id in pending:
            reason, code = pending[rule.id].reason, int(pending[rule.id].code)
        elif rule.id in last_action:
            reason, code = last_action[rule.id].reason, None
        else:
            reason, code = _resting_reason(rec), None
        row: dict[str, Any] = {"service": rule.id, "node": node, "state": rec.state.label, "reason": reason}
        if rec.flags:
            row["flags"] = list(rec.flags.words)
        if code is not None:
            row["code"] = code
        rows.append(row)
    return rows


def _resting_reason(rec: ServiceRecord) -> str:
    if rec.active:
        return f"keeps running on {rec.owner}"
    return {
        State.DISABLED: "disabled: starts only with clusvcadm -e",
        State.FAILED: "failed: a stop failed; clean up, then clusvcadm -d",
        State.RECOVERING: "recovering: waiting for its recovery policy",
        State.UNINITIALIZED: "uninitialized",
    }.get(rec.state, rec.state.label)


def format_rows(rows: list[dict[str, Any]]) -> str:
    table = [("service", "node", "state", "reason")] + [
        (r["service"], r["node"] or "-", r["state"] + (f" ({','.join(r['flags'])})" if r.get("flags") else ""),
         r["reason"]) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths, strict=True)) + "  " + row[3] for row in table
    )


def format_plan(index: int, text: str, result: Plan) -> list[str]:
    lines = [f"event {index}: {text}"]
    for n, action in enumerate(result.actions, 1):
        code = f" [{int(action.code)} {action.code.text}]" if action.code is not None else ""
        lines.append(f"  {n}. {action.describe()}{code}")
    if not result.actions:
        lines.append("  (no action)")
    if result.result.value != 0 or result.message:
        lines.append(f"  result: {int(result.result)} {result.result.text}" +
                     (f": {result.message}" if result.message else ""))
    for p in result.pending:
        lines.append(f"  waiting: {p.service}: {p.reason} [{int(p.code)} {p.code.text}]")
    return lines


# -- commands -----------------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _run(body: Any, argv: Sequence[str] | None) -> int:
    try:
        return body(argv)
    except BadInput as exc:
        print(f"rg_test: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else 2


def place_main(argv: Sequence[str] | None = None) -> int:
    """rg_test place: where every service should run, given the online nodes and the current owners."""
    return _run(_place, argv)


def _place(argv: Sequence[str] | None) -> int:
    parser = _Parser(prog="rg_test place", description=place_main.__doc__)
    parser.add_argument("file", metavar="FILE", help="cluster.conf")
    parser.add_argument("--online", required=True, metavar="N1,N2,...", help="the nodes that are up")
    parser.add_argument("--owner", action="append", default=[], metavar="SERVICE=NODE",
                        help="a service currently running on NODE (repeatable)")
    parser.add_argument("--state", metavar="STATE.json", help="the service state table (docs/engine.md)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    config = load_config(args.file)
    online = [n.strip() for n in args.online.split(",") if n.strip()]
    for name in online:
        if config.node(name) is None:
            raise BadInput(f"--online: no node {name!r} in {args.file}")
    if args.state:
        snapshot = read_state(args.state, config)
        now, table = snapshot.now, snapshot.table
        membership = snapshot.membership
        for node in membership.nodes:
            membership = membership.with_node(node.name, online=node.name in online, clean=node.clean)
    else:
        now, table = 1.0, ServiceTable()
        membership = Membership.from_config(config, online)
    records = table.copy_records()
    for item in args.owner:
        name, sep, node = item.partition("=")
        svc = config.service(name.strip())
        if not sep or not node.strip():
            raise BadInput(f"--owner {item!r}: expected SERVICE=NODE")
        if svc is None:
            raise BadInput(f"--owner {item!r}: no service {name.strip()!r} in {args.file}")
        if membership.node(node.strip()) is None:
            raise BadInput(f"--owner {item!r}: no node {node.strip()!r} in {args.file}")
        old = records.get(svc.id) or ServiceRecord(svc.id)
        records[svc.id] = replace(old, state=State.STARTED, owner=node.strip(), last_transition=max(now, 1.0))
    result = plan(config, membership, ServiceTable(records), QuorumFormed(now=max(now, 1.0)))
    rows = placement_rows(config, result)
    if args.json:
        print(json.dumps({"online": list(membership.online), "services": rows,
                          "actions": [a.to_dict() for a in result.actions]}, indent=2))
    else:
        print(format_rows(rows))
    return 0


def simulate_main(argv: Sequence[str] | None = None) -> int:
    """rg_test simulate: the ordered actions the engine takes for a sequence of events, and where services end."""
    return _run(_simulate, argv)


def _simulate(argv: Sequence[str] | None) -> int:
    parser = _Parser(prog="rg_test simulate", description=simulate_main.__doc__, epilog=f"EVENT: {EVENT_HELP}")
    parser.add_argument("file", metavar="FILE", help="cluster.conf")
    parser.add_argument("--state", metavar="STATE.json",
                        help="the starting state (docs/engine.md); without it, every configured node is up and no "
                        "service has a record yet, i.e. a cluster about to form quorum")
    parser.add_argument("--event", action="append", required=True, metavar="EVENT", help="an event (repeatable)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    config = load_config(args.file)
    if args.state:
        snapshot = read_state(args.state, config)
        now, membership, table = snapshot.now, snapshot.membership, snapshot.table
    else:
        now, membership, table = 1.0, Membership.from_config(config), ServiceTable()
    parsed = []
    for text in args.event:  # check every event before running any: bad input prints nothing else
        event, config_file = parse_event(text, now)
        check_event_names(event, config, membership, text)
        parsed.append((text, event, load_config(config_file) if config_file else None))
        now = event.now
    results: list[Plan] = []
    for index, (text, event, new_config) in enumerate(parsed):
        event = resolve_event(event, config, table, text)
        parsed[index] = (text, event, new_config)
        config = new_config or config
        result = plan(config, membership, table, event)
        results.append(result)
        membership, table = result.membership, result.table
    rows = placement_rows(config, results[-1])
    if args.json:
        print(json.dumps({
            "events": [r.to_dict() for r in results],
            "placement": rows,
            "state": state_to_dict(now, membership, table),
        }, indent=2))
        return 0
    lines: list[str] = []
    for i, ((_text, event, _), result) in enumerate(zip(parsed, results, strict=True), 1):
        lines.extend(format_plan(i, describe_event(event), result))
    lines.append("placement:")
    lines.extend("  " + line for line in format_rows(rows).splitlines())
    print("\n".join(lines))
    return 0
