"""A Jepsen-style nemesis for lab clusters: a random fault schedule, a runner, and a checker of the services' ledger.

    schedule = Schedule.random(seed, ["node1", ..., "node5"], duration=120.0)   # print(schedule.seed) to replay
    lab.set_ledger(ledger)                        # kill/stop/down/fence_lab off record "off" lines there
    log = run(lab, schedule, print)               # kill -9, pause/resume, partition/heal, restart, at their times
    healthy = wait_healthy(lab, timeout=60.0)     # every agent answers, one quorate confirmed view of all nodes
    time.sleep(recovery_bound + 1.0); until = time.time()
    problems = check(read_ledger(ledger), services=[...], recovery_bound=10.0,
                     healthy_since=[*log.healthy_windows(until), (healthy, until)], until=until)
    assert not problems, f"seed {schedule.seed}: " + "; ".join(p.describe() for p in problems)

The ledger (ricci_agent.lab_services) holds JSON lines: `{"service", "node", "instance", "event": "start" | "stop"
| "alive", "time"}` from the ledger services' scripts and `{"node", "event": "off", "time", "cause"}` from the lab.
The checker is pure (tests/test_nemesis_checker.py); the schedule is a pure function of its seed.
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ricci_agent.lab_services import HEARTBEAT

ACTIONS = ("kill", "start", "pause", "resume", "partition", "heal")
FAULTS = ("kill", "pause", "partition")
UNDO = {"kill": "start", "pause": "resume", "partition": "heal"}
Window = tuple[float, float]


# -- the schedule -------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Step:
    """One nemesis action `at` seconds after the run starts. `nodes`: the node (kill, start, pause, resume) or the
    minority side cut off from the rest (partition); empty for heal."""

    at: float
    action: str
    nodes: tuple[str, ...] = ()

    def describe(self) -> str:
        target = " / ".join([",".join(self.nodes), "rest"]) if self.action == "partition" else ",".join(self.nodes)
        return f"t+{self.at:6.2f}s {self.action} {target}".rstrip()


@dataclass(frozen=True, slots=True)
class Schedule:
    seed: int
    nodes: tuple[str, ...]
    duration: float
    steps: tuple[Step, ...]

    @classmethod
    def random(
        cls,
        seed: int,
        nodes: Sequence[str],
        duration: float,
        *,
        faults: Sequence[str] = FAULTS,
        gap: tuple[float, float] = (1.0, 6.0),
        length: tuple[float, float] = (2.0, 10.0),
        short_pause: tuple[float, float] = (0.2, 0.9),
        settle: float = 5.0,
    ) -> Schedule:
        """A random schedule, the same for the same arguments. Faults start `gap` s apart (uniform), last `length`
        s (a pause is short, below the lab's 1 s token, one time in three: a hiccup no one should fence), and are
        all undone `settle` s before `duration` ends. At no moment are more than a minority of the nodes affected
        (killed, paused, or on the minority side of a partition: (n-1)//2 nodes, so a schedule of 1 or 2 nodes
        is empty), and at most one partition holds at a time."""
        unknown = [f for f in faults if f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault kinds {unknown} (use {', '.join(FAULTS)})")
        rng = random.Random(seed)
        names = tuple(nodes)
        minority = (len(names) - 1) // 2
        last_undo = duration - settle
        active: list[tuple[float, float, str, tuple[str, ...]]] = []  # (start, end, kind, nodes)
        steps: list[Step] = []
        t = rng.uniform(*gap)
        while minority > 0 and faults and t < last_undo - min(length[0], short_pause[0]):
            kind = rng.choice(list(faults))
            span = rng.uniform(*short_pause) if kind == "pause" and rng.random() < 1 / 3 else rng.uniform(*length)
            end = min(t + span, last_undo)
            live = [f for f in active if f[1] > t]
            affected = {n for f in live for n in f[3]}
            room = minority - len(affected)
            free = [n for n in names if n not in affected]
            chosen: tuple[str, ...] = ()
            if room > 0 and end > t and not (kind == "partition" and any(f[2] == "partition" for f in live)):
                count = rng.randint(1, room) if kind == "partition" else 1
                chosen = tuple(sorted(rng.sample(free, count), key=names.index))
            if chosen:
                active.append((t, end, kind, chosen))
                steps.append(Step(round(t, 3), kind, chosen))
                steps.append(Step(round(end, 3), UNDO[kind], () if kind == "partition" else chosen))
            t += rng.uniform(*gap)
        order = {a: i for i, a in enumerate(("start", "resume", "heal", "kill", "pause", "partition"))}
        steps.sort(key=lambda s: (s.at, order[s.action]))  # at a tie, undo before the next fault
        return cls(seed, names, duration, tuple(steps))

    def describe(self) -> str:
        head = f"nemesis schedule: seed {self.seed}, {len(self.nodes)} nodes, {self.duration:g} s"
        return "\n".join([head, *(f"  {s.describe()}" for s in self.steps)])


# -- the runner ---------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunEvent:
    """A step as it ran: wall-clock `began` and `done` (time.time(), the ledger's clock) and what happened."""

    step: Step
    began: float
    done: float
    outcome: str  # "ok", or "skipped: <why>" (a node the fence had already rebooted, say)


@dataclass(slots=True)
class RunLog:
    seed: int
    started: float
    events: list[RunEvent] = field(default_factory=list)
    ended: float | None = None

    def healthy_windows(self, until: float | None = None) -> list[Window]:
        """The stretches of the run (up to `until`, default its end) when no fault was outstanding: nothing killed
        and not restarted, paused and not resumed, or partitioned and not healed, by the runner's account. A
        fault counts from the moment its step began; its undo from the moment the undo step was done. Nodes
        still rejoin after that: the recovery bound covers it."""
        end = until if until is not None else (self.ended or time.time())
        outstanding: set[tuple[str, str]] = set()
        windows: list[Window] = []
        since: float | None = self.started
        for event in self.events:
            step = event.step
            if step.action in FAULTS:
                if not outstanding and since is not None and event.began > since:
                    windows.append((since, event.began))
                since = None
                outstanding |= {(step.action, n) for n in (step.nodes or ("*",))}
                if step.action == "partition":
                    outstanding = {k for k in outstanding if k[0] != "partition"} | {("partition", "*")}
            else:
                fault = next(k for k, v in UNDO.items() if v == step.action)
                keys = {("partition", "*")} if fault == "partition" else {(fault, n) for n in step.nodes}
                was = bool(outstanding)
                outstanding -= keys
                if was and not outstanding:
                    since = event.done
        if not outstanding and since is not None and end > since:
            windows.append((since, end))
        return windows


def run(lab: Any, schedule: Schedule, log: Callable[[str], None] = print, *,
        start_timeout: float = 60.0) -> RunLog:
    """Execute the schedule on a running lab (ricci_agent.lab.Lab): each step at its time after the start (a step
    that takes long, a node start, delays the next ones; the log keeps the real times). A step the lab refuses
    (LabError: a node already running because its fence rebooted it, a node not paused any more because it was
    fenced) is logged as skipped. Whatever the run ends with, partitions are healed and paused nodes resumed."""
    from ricci_agent.lab import LabError

    log(f"nemesis: seed {schedule.seed} ({len(schedule.steps)} steps over {schedule.duration:g} s)")
    result = RunLog(schedule.seed, time.time())
    t0 = time.monotonic()
    try:
        for step in schedule.steps:
            delay = t0 + step.at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            began = time.time()
            try:
                _apply(lab, step, start_timeout)
                outcome = "ok"
            except LabError as exc:
                outcome = f"skipped: {exc}"
            result.events.append(RunEvent(step, began, time.time(), outcome))
            log(f"nemesis: {step.describe()}: {outcome} (took {time.time() - began:.2f} s)")
        remaining = t0 + schedule.duration - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
    finally:
        _undo_all(lab, log)
        result.ended = time.time()
    return result


def _apply(lab: Any, step: Step, start_timeout: float) -> None:
    if step.action == "kill":
        lab.kill(step.nodes[0])
    elif step.action == "start":
        lab.start(step.nodes[0], timeout=start_timeout)
    elif step.action == "pause":
        lab.pause(step.nodes[0])
    elif step.action == "resume":
        lab.resume(step.nodes[0])
    elif step.action == "partition":
        lab.partition([list(step.nodes)])  # the nodes named in no group form the other side
    elif step.action == "heal":
        lab.heal()
    else:
        raise ValueError(f"unknown nemesis action {step.action!r}")


def _undo_all(lab: Any, log: Callable[[str], None]) -> None:
    from ricci_agent.lab import LabError

    try:
        if lab.partition_state() is not None:
            lab.heal()
            log("nemesis: healed the partition left at the end")
        for node in lab.nodes:
            if node.paused:
                lab.resume(node.name)
                log(f"nemesis: resumed {node.name}, left paused at the end")
    except LabError as exc:
        log(f"nemesis: could not undo the last faults: {exc}")


def partitions_available() -> str:
    """"" when this process may make partitions (root and nft), else why not (for a skip or for `faults`)."""
    from ricci_agent.lab import LabError, nft_command

    try:
        nft_command()
    except LabError as exc:
        return str(exc)
    return ""


def wait_healthy(lab: Any, timeout: float, poll: float = 0.5) -> float:
    """Wait (bounded) until the lab is healthy: no partition, no node paused, every agent answering, and every
    node's cman in one confirmed, quorate view holding all nodes. Return the time.time() when it was first seen
    so; raise TimeoutError naming what was still wrong."""
    deadline = time.monotonic() + timeout
    problem = "not checked"
    while True:
        problem = _health_problem(lab)
        if not problem:
            return time.time()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the lab was not healthy within {timeout:g} s: {problem}")
        time.sleep(poll)


def _health_problem(lab: Any) -> str:
    if lab.partition_state() is not None:
        return "a partition is set"
    statuses = lab.status(timeout=2.0)
    count = len(statuses)
    generations = set()
    for status in statuses:
        name = status.node.name
        if status.paused or not status.answering:
            return f"{name} is {'paused' if status.paused else 'not answering'}"
        cman = status.cman
        if cman is None:
            return f"{name}: cman {status.cman_problem or 'not answering'}"
        if not cman.get("quorum", {}).get("quorate") or not cman.get("view_confirmed"):
            return f"{name}: view not quorate or not confirmed"
        if len(cman.get("members", [])) != count:
            return f"{name}: view of {len(cman.get('members', []))} of {count} nodes"
        generations.add(cman.get("generation"))
    if len(generations) > 1:
        return f"the nodes hold different views ({sorted(map(str, generations))})"
    return ""


# -- the checker ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Interval:
    """One run of a service on a node: from its start record to `end`, which `ended_by` says: "stop", "off" (the
    lab killed, stopped or fenced the node), "silence" (its last heartbeat + the heartbeat period)."""

    service: str
    node: str
    instance: str
    start: float
    end: float
    ended_by: str


@dataclass(frozen=True, slots=True)
class Violation:
    kind: str  # "overlap" | "not_running"
    service: str
    start: float
    end: float
    detail: str

    def describe(self) -> str:
        return f"{self.kind} {self.service} from {self.start:.3f} to {self.end:.3f} ({self.end - self.start:.3f} s): " \
               f"{self.detail}"


def parse_records(lines: Iterable[str | Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Ledger lines (text or already parsed) as records; blank and torn lines are skipped."""
    records = []
    for line in lines:
        if isinstance(line, Mapping):
            records.append(dict(line))
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def intervals(lines: Iterable[str | Mapping[str, Any]], *, heartbeat: float = HEARTBEAT) -> list[Interval]:
    """Every service run in the ledger, from its start to the earliest of: its stop, the first "off" of its node
    after the start, its last "alive" (the start itself when none) + `heartbeat`. A killed process writes no
    stop, but it stops heartbeating; the lab's off record ends it even if the heartbeat is late."""
    records = parse_records(lines)
    starts: dict[tuple[str, str], dict[str, Any]] = {}
    stops: dict[tuple[str, str], float] = {}
    alive: dict[tuple[str, str], float] = {}
    offs: dict[str, list[float]] = {}
    for r in records:
        event, when = r.get("event"), float(r.get("time", 0.0))
        if event == "off":
            offs.setdefault(str(r.get("node")), []).append(when)
            continue
        key = (str(r.get("service")), str(r.get("instance")))
        if event == "start":
            starts.setdefault(key, r)
        elif event == "stop":
            stops[key] = min(stops.get(key, when), when)
        elif event == "alive":
            alive[key] = max(alive.get(key, when), when)
    result = []
    for key, start in starts.items():
        node, begin = str(start.get("node")), float(start["time"])
        ends = [(max(alive.get(key, begin), begin) + heartbeat, "silence")]
        if key in stops:
            ends.append((stops[key], "stop"))
        later_offs = [t for t in offs.get(node, []) if t >= begin]
        if later_offs:
            ends.append((min(later_offs), "off"))
        end, by = min(ends)
        result.append(Interval(key[0], node, key[1], begin, max(end, begin), by))
    result.sort(key=lambda i: (i.service, i.start))
    return result


def overlaps(runs: Sequence[Interval]) -> list[Violation]:
    """(a) A service running on two nodes at the same moment."""
    found = []
    by_service: dict[str, list[Interval]] = {}
    for run_ in runs:
        by_service.setdefault(run_.service, []).append(run_)
    for service, items in sorted(by_service.items()):
        items.sort(key=lambda i: i.start)
        for i, a in enumerate(items):
            for b in items[i + 1:]:
                if b.start >= a.end:
                    break
                if b.node != a.node:
                    found.append(Violation(
                        "overlap", service, b.start, min(a.end, b.end),
                        f"ran on {a.node} (instance {a.instance}, {a.start:.3f}..{a.end:.3f}, ended by {a.ended_by})"
                        f" and on {b.node} (instance {b.instance}, {b.start:.3f}..{b.end:.3f}, ended by {b.ended_by})",
                    ))
    return found


def not_running(runs: Sequence[Interval], services: Sequence[str], windows: Sequence[Window],
                recovery_bound: float) -> list[Violation]:
    """(b) Within each healthy window, a stretch longer than `recovery_bound` when an autostart service ran
    nowhere (a service down when the window opens must be running within the bound)."""
    found = []
    for service in services:
        runs_of = sorted((r.start, r.end) for r in runs if r.service == service)
        for lo, hi in windows:
            cursor = lo
            for start, end in runs_of:
                if end <= cursor or start >= hi:
                    continue
                if start - cursor > recovery_bound:
                    found.append(_gap(service, cursor, start, lo))
                cursor = max(cursor, end)
            if hi - cursor > recovery_bound:
                found.append(_gap(service, cursor, hi, lo))
    return found


def _gap(service: str, start: float, end: float, healthy: float) -> Violation:
    return Violation("not_running", service, start, end,
                     f"not running anywhere for {end - start:.3f} s while the cluster was healthy "
                     f"(since {healthy:.3f})")


def check(
    ledger_lines: Iterable[str | Mapping[str, Any]],
    *,
    services: Sequence[str],
    recovery_bound: float,
    healthy_since: float | Sequence[Window],
    until: float | None = None,
    heartbeat: float = HEARTBEAT,
) -> list[Violation]:
    """Every violation in the ledger: (a) overlaps of every service found in it; (b) for the autostart
    `services`, stretches longer than `recovery_bound` without the service running inside the healthy windows.
    `healthy_since`: one time (healthy from then until `until`) or a list of (start, end) windows. `until`
    (default: the last record's time) is when the ledger was read; pass the time the run ended, before the lab
    goes down (down records "off" for every node)."""
    records = parse_records(ledger_lines)
    runs = intervals(records, heartbeat=heartbeat)
    if until is None:
        until = max((float(r.get("time", 0.0)) for r in records), default=0.0)
    windows = [(float(healthy_since), until)] if isinstance(healthy_since, (int, float)) else list(healthy_since)
    windows = [(lo, min(hi, until)) for lo, hi in windows if min(hi, until) > lo]
    return overlaps(runs) + not_running(runs, services, windows, recovery_bound)
