"""Pure fencing decisions (cman.fencing) with a simulated clock: who is fenced, when, retries, manual, rejoin."""
from __future__ import annotations

import pytest

from cman.fencing import (
    FenceBook,
    FenceDaemonConfig,
    FenceRecord,
    FenceReport,
    NotWaiting,
    acknowledge_manual,
    due,
    fence_daemon_config,
    record_result,
    rejoined,
    retry_delay,
    started,
    startup_victims,
    victims_after_view,
)

EMPTY = FenceBook()
ABC = ["a", "b", "c"]
FAILED = FenceReport("failed", "error from agent", "1", "ipmi", "fence_ipmilan")
SUCCESS = FenceReport("success", "fenced", "1", "ipmi", "fence_ipmilan")
MANUAL = FenceReport("manual", "", "1", "human", "fence_manual")


def due_times(book: FenceBook, start: float, end: float, step: float = 1.0, *, quorate: bool = True,
              confirmed: bool = True) -> list[tuple[float, list[str]]]:
    """Walk a simulated clock from start to end; the times at which something is due (bounded loop)."""
    out = []
    t = start
    while t <= end:
        nodes = due(book, t, quorate, confirmed)
        if nodes:
            out.append((t, nodes))
        t += step
    return out


@pytest.mark.parametrize(
    ("left_cleanly", "delay", "expected_pending", "first_due"),
    [
        ((), 0, ["c"], 100.0),
        ((), 5, ["c"], 105.0),
        (("c",), 5, [], None),  # clean leave: never fenced
    ],
)
def test_lost_member_becomes_pending_and_due_after_post_fail_delay(left_cleanly, delay, expected_pending,
                                                                  first_due):
    book = victims_after_view(EMPTY, ABC, ["a", "b"], left_cleanly, True, 100.0, delay)
    assert book.open_victims() == expected_pending
    times = due_times(book, 100.0, 120.0)
    assert (times[0][0] if times else None) == first_due
    if expected_pending:
        assert book["c"].state == "pending" and book["c"].next_retry == 100.0 + delay
        assert due(book, 100.0 + delay - 0.5, True, True) == []


@pytest.mark.parametrize(("quorate", "confirmed"), [(False, True), (True, False), (False, False)])
def test_nothing_is_due_unless_quorate_and_confirmed(quorate, confirmed):
    book = victims_after_view(EMPTY, ABC, ["a"], (), quorate, 0.0, 0)
    assert book.open_victims() == ["b", "c"]
    assert due_times(book, 0.0, 300.0, 10.0, quorate=quorate, confirmed=confirmed) == []
    # the moment the view is quorate and confirmed they are acted on (the delay has long passed)
    assert due(book, 300.0, True, True) == ["b", "c"]


def test_inquorate_victims_say_they_wait_for_quorum():
    book = victims_after_view(EMPTY, ABC, ["a"], (), False, 0.0, 0)
    assert "waiting for quorum" in book["b"].message


def test_an_open_victim_keeps_its_record_on_a_later_view_change():
    book = victims_after_view(EMPTY, ABC, ["a", "b"], (), True, 10.0, 3)
    book = started(book, "c", 13.0)
    again = victims_after_view(book, ["a", "b", "c"], ["a", "b"], (), True, 14.0, 3)
    assert again["c"].state == "running"


def test_failed_fence_retries_5_10_20_40_60_60():
    book = victims_after_view(EMPTY, ABC, ["a", "b"], (), True, 0.0, 0)
    now = 0.0
    retry_times = []
    for _ in range(6):  # bounded: six failed attempts
        assert due(book, now, True, True) == ["c"]
        book = started(book, "c", now)
        assert due(book, now + 1000, True, True) == []  # running: never due twice
        book = record_result(book, "c", FAILED, now)
        record = book["c"]
        assert record.state == "failed" and record.message == "error from agent"
        assert record.agent == "fence_ipmilan" and record.device == "ipmi"
        retry_times.append(record.next_retry - now)
        assert due(book, record.next_retry - 0.1, True, True) == []
        now = record.next_retry
    assert retry_times == [5, 10, 20, 40, 60, 60]
    assert book["c"].attempts == 6
    assert [retry_delay(n) for n in range(1, 8)] == [5, 10, 20, 40, 60, 60, 60]


def test_success_ends_fencing():
    book = victims_after_view(EMPTY, ABC, ["a", "b"], (), True, 0.0, 0)
    book = record_result(started(book, "c", 0.0), "c", SUCCESS, 2.0)
    assert book["c"].state == "succeeded" and book["c"].since == 2.0 and book["c"].next_retry is None
    assert book.open_victims() == []
    assert due_times(book, 0.0, 200.0, 10.0) == []


def test_undefined_counts_as_failed_with_retry():
    book = victims_after_view(EMPTY, ABC, ["a", "b"], (), True, 0.0, 0)
    book = record_result(book, "c", FenceReport("undefined"), 1.0)
    assert book["c"].state == "failed" and book["c"].next_retry == 6.0
    assert book["c"].message == "no fence method configured"


def test_manual_waits_until_acknowledged():
    book = victims_after_view(EMPTY, ABC, ["a", "b"], (), True, 0.0, 0)
    book = record_result(started(book, "c", 0.0), "c", MANUAL, 1.0)
    assert book["c"].state == "manual_wait"
    assert "fence_ack_manual c" in book["c"].message
    assert due_times(book, 0.0, 3600.0, 60.0) == []  # never retried on its own
    assert book.open_victims() == ["c"]
    book = acknowledge_manual(book, "c", 50.0)
    assert book["c"].state == "succeeded" and book["c"].message == "manual fence acknowledged"
    assert book.open_victims() == []


@pytest.mark.parametrize("book", [EMPTY, FenceBook([FenceRecord("c", "pending", 0.0, next_retry=5.0)]),
                                  FenceBook([FenceRecord("c", "succeeded", 0.0)])])
def test_acknowledge_refuses_a_node_not_waiting(book):
    with pytest.raises(NotWaiting, match="c is not waiting for a manual fence"):
        acknowledge_manual(book, "c", 1.0)


def test_acknowledge_overrides_a_failing_fence():
    book = record_result(victims_after_view(EMPTY, ABC, ["a", "b"], (), True, 0.0, 0), "c", FAILED, 1.0)
    assert acknowledge_manual(book, "c", 2.0)["c"].state == "succeeded"


@pytest.mark.parametrize(
    ("clean_start", "members", "expected"),
    [
        (False, ["a"], ["b", "c"]),
        (False, ABC, []),
        (True, ["a"], []),  # clean_start=1: no startup fencing
    ],
)
def test_startup_fencing_after_post_join_delay(clean_start, members, expected):
    book = startup_victims(EMPTY, ABC, members, first_quorate_at=50.0, now=50.0, post_join_delay=6,
                           clean_start=clean_start)
    assert book.open_victims() == expected
    times = due_times(book, 50.0, 70.0)
    assert (times[0] if times else None) == ((56.0, expected) if expected else None)


def test_a_node_joining_during_post_join_delay_is_not_fenced():
    book = startup_victims(EMPTY, ABC, ["a"], 50.0, 50.0, 6, False)
    book = rejoined(book, "b")  # b joined at 53 with its (first) incarnation
    assert due(book, 56.0, True, True) == ["c"]


@pytest.mark.parametrize("state", ["pending", "failed", "manual_wait"])
def test_rejoin_with_a_new_incarnation_cancels(state):
    book = victims_after_view(EMPTY, ABC, ["a", "b"], (), True, 0.0, 10)
    if state == "failed":
        book = record_result(book, "c", FAILED, 10.0)
    elif state == "manual_wait":
        book = record_result(book, "c", MANUAL, 10.0)
    assert book["c"].state == state
    book = rejoined(book, "c")  # came back during post_fail_delay / while fencing was failing
    assert "c" not in book
    assert due_times(book, 0.0, 200.0) == []


def test_rejoin_leaves_a_running_fence_and_the_success_record():
    book = started(victims_after_view(EMPTY, ABC, ["a", "b"], (), True, 0.0, 0), "c", 0.0)
    assert rejoined(book, "c")["c"].state == "running"
    done = record_result(book, "c", SUCCESS, 1.0)
    assert rejoined(done, "c")["c"].state == "succeeded"


def test_a_fenced_node_lost_again_is_a_new_victim():
    book = record_result(victims_after_view(EMPTY, ABC, ["a", "b"], (), True, 0.0, 0), "c", SUCCESS, 1.0)
    again = victims_after_view(book, ABC, ["a", "b"], (), True, 100.0, 2)
    assert again["c"].state == "pending" and again["c"].next_retry == 102.0 and again["c"].attempts == 0


def test_book_is_immutable_and_status_is_plain_data():
    book = victims_after_view(EMPTY, ABC, ["a", "b"], (), True, 7.0, 0)
    assert EMPTY == {} and len(book) == 1
    with pytest.raises(TypeError):
        book["x"] = book["c"]  # type: ignore[index]
    assert book.as_status() == {"c": {"state": "pending", "message": "left the cluster uncleanly", "since": 7.0,
                                      "next_retry": 7.0, "attempts": 0, "method": None, "device": None,
                                      "agent": None}}


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        (None, FenceDaemonConfig(0, 6, False)),
        ({"post_fail_delay": "10", "post_join_delay": "30", "clean_start": "1"}, FenceDaemonConfig(10, 30, True)),
        ({"post_fail_delay": "x", "post_join_delay": "-1", "clean_start": "0"}, FenceDaemonConfig(0, 6, False)),
        ({"clean_start": "yes"}, FenceDaemonConfig(0, 6, True)),
    ],
)
def test_fence_daemon_config(attrs, expected):
    assert fence_daemon_config(attrs) == expected
