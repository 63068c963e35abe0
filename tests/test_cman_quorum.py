"""cman's quorum rules for a running cluster (cman/quorum.py), table-driven: rhcs-facts §5.1."""
from __future__ import annotations

import pytest

from cman.quorum import QuorumInputs, after_remove, evaluate, expected_change_error

THREE = {1: 1, 2: 1, 3: 1}
FIVE = {i: 1 for i in range(1, 6)}


@pytest.mark.parametrize(
    "votes, members, member_expected, extra, expected, total, quorum, quorate",
    [
        (THREE, {1, 2, 3}, {1: 3, 2: 3, 3: 3}, {}, 3, 3, 2, True),
        (THREE, {1, 2}, {1: 3, 2: 3}, {}, 3, 2, 2, True),
        (THREE, {1}, {1: 3}, {}, 3, 1, 2, False),  # Activity blocked
        # the highest expected among members wins
        (THREE, {1, 2}, {1: 2, 2: 5}, {}, 5, 2, 3, False),
        # never less than the votes present
        (FIVE, {1, 2, 3, 4, 5}, {i: 3 for i in range(1, 6)}, {}, 5, 5, 3, True),
        # quorum never decreases by itself
        (FIVE, {1, 2, 3}, {1: 3, 2: 3, 3: 3}, {"previous_quorum": 4}, 3, 3, 4, False),
        # ... unless told (cman_tool expected, leave remove, a new config)
        (FIVE, {1, 2, 3}, {1: 3, 2: 3, 3: 3}, {"previous_quorum": 4, "allow_decrease": True}, 3, 3, 2, True),
        # the quorum disk's votes count while claimed
        ({1: 1, 2: 1}, {1}, {1: 3}, {"qdisk_votes": 1}, 3, 2, 2, True),
        ({1: 1, 2: 1}, {2}, {2: 3}, {"qdisk_votes": 0}, 3, 1, 2, False),
        # two_node: quorum 1 with two configured nodes...
        ({1: 1, 2: 1}, {1}, {1: 1}, {"two_node": True}, 1, 1, 1, True),
        # ... and never with three (both sides of a split would act)
        (THREE, {1}, {1: 1}, {"two_node": True}, 1, 1, 1, True),
    ],
)
def test_quorum(votes, members, member_expected, extra, expected, total, quorum, quorate):
    state = evaluate(QuorumInputs(votes, frozenset(members), member_expected, **extra))
    assert (state.expected_votes, state.total_votes, state.quorum, state.quorate) == (expected, total, quorum,
                                                                                       quorate)


def test_two_node_with_three_nodes_is_not_quorate_on_both_sides():
    minority = evaluate(QuorumInputs(THREE, frozenset({1}), {1: 3}, two_node=True))
    majority = evaluate(QuorumInputs(THREE, frozenset({2, 3}), {2: 3, 3: 3}, two_node=True))
    assert majority.quorate and not minority.quorate and not minority.two_node


@pytest.mark.parametrize(
    "new, total, allowed",
    [(1, 1, True), (3, 3, True), (5, 3, True), (7, 3, False), (0, 3, False), (2, 5, True)],
)
def test_expected_change_is_refused_outside_half_to_all_of_the_votes_present(new, total, allowed):
    assert (expected_change_error(new, total) == "") is allowed


def test_leave_remove_lowers_expected_votes_by_the_leavers_votes():
    assert after_remove(3, 1) == 2
    assert after_remove(1, 1) == 1  # never below one
