"""The nemesis' checker and schedule (tests/nemesis.py), on hand-made ledgers: pure, no lab."""
from __future__ import annotations

import json

import pytest

from tests.nemesis import RunEvent, RunLog, Schedule, Step, check, intervals

HB = 0.2


def start(service: str, node: str, at: float, instance: str) -> dict:
    return {"service": service, "node": node, "instance": instance, "event": "start", "time": at}


def stop(service: str, node: str, at: float, instance: str) -> dict:
    return {"service": service, "node": node, "instance": instance, "event": "stop", "time": at}


def alive(service: str, node: str, instance: str, first: float, last: float) -> list[dict]:
    """Heartbeats every HB from `first` to `last`."""
    count = round((last - first) / HB)
    return [{"service": service, "node": node, "instance": instance, "event": "alive", "time": first + i * HB}
            for i in range(count + 1)]


def off(node: str, at: float, cause: str = "kill") -> dict:
    return {"node": node, "event": "off", "time": at, "cause": cause}


def lines(records: list[dict]) -> list[str]:
    return [json.dumps(r) for r in sorted(records, key=lambda r: r["time"])]


def test_a_service_on_two_nodes_at_once_is_an_overlap() -> None:
    ledger = [start("svc1", "node1", 10.0, "a"), *alive("svc1", "node1", "a", 10.1, 20.1),
              start("svc1", "node2", 15.0, "b"), *alive("svc1", "node2", "b", 15.1, 20.1)]
    problems = check(lines(ledger), services=["svc1"], recovery_bound=5.0, healthy_since=10.0, until=20.0)
    assert [(p.kind, p.service) for p in problems] == [("overlap", "svc1")]
    assert problems[0].start == 15.0 and "node1" in problems[0].detail and "node2" in problems[0].detail


def test_stop_then_start_on_another_node_is_no_overlap() -> None:
    ledger = [start("svc1", "node1", 10.0, "a"), *alive("svc1", "node1", "a", 10.1, 14.9),
              stop("svc1", "node1", 15.0, "a"),
              start("svc1", "node2", 15.01, "b"), *alive("svc1", "node2", "b", 15.1, 20.1)]
    assert check(lines(ledger), services=["svc1"], recovery_bound=5.0, healthy_since=10.0, until=20.0) == []


def test_a_late_heartbeat_after_the_stop_does_not_extend_the_run() -> None:
    """The stop is written once the process is gone: it ends the run even when the heartbeats say later."""
    runs = intervals(lines([start("s", "node1", 0.0, "a"), *alive("s", "node1", "a", 0.0, 5.0),
                            stop("s", "node1", 3.0, "a")]), heartbeat=HB)
    assert [(r.end, r.ended_by) for r in runs] == [(3.0, "stop")]


def test_kill_9_ends_a_run_at_the_off_record_without_a_stop() -> None:
    ledger = [start("svc1", "node1", 10.0, "a"), *alive("svc1", "node1", "a", 10.1, 12.9), off("node1", 13.0),
              start("svc1", "node2", 16.0, "b"), *alive("svc1", "node2", "b", 16.1, 30.1)]
    runs = intervals(lines(ledger), heartbeat=HB)
    assert [(r.node, r.end, r.ended_by) for r in runs] == [("node1", 13.0, "off"), ("node2", 30.1 + HB, "silence")]
    assert check(lines(ledger), services=["svc1"], recovery_bound=5.0, healthy_since=10.0, until=30.0) == []


def test_kill_9_without_an_off_record_ends_a_run_at_its_last_heartbeat() -> None:
    """The process that records the power event may die too: the heartbeats still end the dead run."""
    ledger = [start("svc1", "node1", 10.0, "a"), *alive("svc1", "node1", "a", 10.1, 12.1),
              start("svc1", "node2", 13.0, "b"), *alive("svc1", "node2", "b", 13.1, 30.1)]
    runs = intervals(lines(ledger), heartbeat=HB)
    assert (runs[0].ended_by, runs[0].end) == ("silence", pytest.approx(12.1 + HB))
    assert check(lines(ledger), services=["svc1"], recovery_bound=5.0, healthy_since=10.0, until=30.0) == []
    # a run that never heartbeats ends one period after its start
    assert intervals(lines([start("s", "node1", 1.0, "x")]), heartbeat=HB)[0].end == pytest.approx(1.0 + HB)


def test_an_off_before_the_start_does_not_end_the_run() -> None:
    ledger = [off("node1", 5.0), start("s", "node1", 10.0, "a"), *alive("s", "node1", "a", 10.1, 20.1)]
    assert [r.ended_by for r in intervals(lines(ledger), heartbeat=HB)] == ["silence"]
    assert intervals(lines(ledger), heartbeat=HB)[0].end == pytest.approx(20.1 + HB)


def test_a_silent_run_overlapping_a_new_one_is_an_overlap() -> None:
    """A paused node resumed before its fence: its service heartbeats again while the other node runs it."""
    ledger = [start("s", "node1", 10.0, "a"), *alive("s", "node1", "a", 10.0, 11.0),
              *alive("s", "node1", "a", 16.0, 17.0), off("node1", 17.1, "fence"),
              start("s", "node2", 15.0, "b"), *alive("s", "node2", "b", 15.0, 20.0)]
    problems = check(lines(ledger), services=["s"], recovery_bound=5.0, healthy_since=[], until=20.0)
    assert [p.kind for p in problems] == ["overlap"]
    assert problems[0].end == pytest.approx(17.1)


def test_two_runs_on_the_same_node_are_not_an_overlap_between_nodes() -> None:
    ledger = [start("s", "node1", 0.0, "a"), stop("s", "node1", 1.0, "a"), start("s", "node1", 1.0, "b"),
              *alive("s", "node1", "b", 1.0, 5.0)]
    assert check(lines(ledger), services=["s"], recovery_bound=2.0, healthy_since=0.0, until=5.0) == []


def test_a_service_not_recovered_within_the_bound_while_healthy_is_a_violation() -> None:
    ledger = [start("svc1", "node1", 10.0, "a"), *alive("svc1", "node1", "a", 10.1, 12.9), off("node1", 13.0),
              start("svc1", "node2", 30.0, "b"), *alive("svc1", "node2", "b", 30.1, 40.1)]
    problems = check(lines(ledger), services=["svc1"], recovery_bound=5.0, healthy_since=14.0, until=40.0)
    assert [(p.kind, p.start, p.end) for p in problems] == [("not_running", 14.0, 30.0)]
    # the same gap outside a healthy window is no violation, nor within the bound
    assert check(lines(ledger), services=["svc1"], recovery_bound=5.0, healthy_since=[(10.0, 17.0), (26.0, 40.0)],
                 until=40.0) == []
    assert check(lines(ledger), services=["svc1"], recovery_bound=20.0, healthy_since=14.0, until=40.0) == []


def test_an_autostart_service_that_never_starts_and_one_that_dies_at_the_end() -> None:
    ledger = [start("svc1", "node1", 0.0, "a"), *alive("svc1", "node1", "a", 0.0, 10.0)]
    problems = check(lines(ledger), services=["svc1", "svc2"], recovery_bound=3.0, healthy_since=0.0, until=20.0)
    assert sorted((p.service, round(p.start, 1), p.end) for p in problems) == [
        ("svc1", 10.2, 20.0), ("svc2", 0.0, 20.0)
    ]


def test_services_not_listed_are_checked_for_overlaps_only() -> None:
    ledger = [start("manual", "node1", 0.0, "a"), stop("manual", "node1", 1.0, "a")]
    assert check(lines(ledger), services=[], recovery_bound=1.0, healthy_since=0.0, until=10.0) == []


def test_torn_and_blank_lines_are_skipped() -> None:
    text = [*lines([start("s", "node1", 0.0, "a"), *alive("s", "node1", "a", 0.0, 2.0)]), "", '{"service": "s", "no']
    assert check(text, services=["s"], recovery_bound=1.0, healthy_since=0.0, until=2.0) == []


# -- the schedule -------------------------------------------------------------------------------------------
NODES = ["node1", "node2", "node3", "node4", "node5"]


def affected_over_time(schedule: Schedule) -> list[tuple[float, set[str]]]:
    down: set[str] = set()
    partitioned: set[str] = set()
    seen = []
    for step in schedule.steps:
        if step.action in ("kill", "pause"):
            down |= set(step.nodes)
        elif step.action in ("start", "resume"):
            down -= set(step.nodes)
        elif step.action == "partition":
            assert not partitioned, "two partitions at once"
            partitioned = set(step.nodes)
        else:
            partitioned = set()
        seen.append((step.at, down | partitioned))
    return seen


@pytest.mark.parametrize("seed", range(40))
def test_a_random_schedule_keeps_a_majority_and_undoes_every_fault_before_the_end(seed: int) -> None:
    schedule = Schedule.random(seed, NODES, 120.0)
    assert schedule == Schedule.random(seed, NODES, 120.0)  # replayable from its seed
    assert schedule.steps and all(0 < s.at <= 115.0 for s in schedule.steps)
    history = affected_over_time(schedule)
    assert all(len(affected) <= 2 for _, affected in history)
    assert history[-1][1] == set()
    kinds = {s.action for s in schedule.steps}
    assert kinds <= {"kill", "start", "pause", "resume", "partition", "heal"}
    assert [s.at for s in schedule.steps] == sorted(s.at for s in schedule.steps)


def test_schedules_cover_every_fault_kind_and_differ_by_seed() -> None:
    kinds = {s.action for seed in range(10) for s in Schedule.random(seed, NODES, 120.0).steps}
    assert kinds == {"kill", "start", "pause", "resume", "partition", "heal"}
    assert Schedule.random(1, NODES, 120.0).steps != Schedule.random(2, NODES, 120.0).steps
    assert {s.action for s in Schedule.random(3, NODES, 60.0, faults=["kill"]).steps} == {"kill", "start"}
    assert Schedule.random(3, ["a", "b"], 60.0).steps == ()  # two nodes: no minority to fault
    with pytest.raises(ValueError, match="unknown fault"):
        Schedule.random(3, NODES, 60.0, faults=["reboot"])


def test_healthy_windows_follow_the_faults_as_they_ran() -> None:
    def event(at: float, action: str, *nodes: str, took: float = 0.0) -> RunEvent:
        return RunEvent(Step(at, action, nodes), 100.0 + at, 100.0 + at + took, "ok")

    log = RunLog(1, 100.0, [event(5, "kill", "node2"), event(8, "pause", "node3"), event(10, "start", "node2",
                                                                                          took=4.0),
                            event(12, "resume", "node3"), event(20, "partition", "node1"), event(25, "heal")],
                 ended=140.0)
    assert log.healthy_windows() == [(100.0, 105.0), (112.0, 120.0), (125.0, 140.0)]
    assert log.healthy_windows(until=130.0)[-1] == (125.0, 130.0)
