"""cman's quorum rules for a running cluster, as pure functions (rhcs-facts §5.1).

The arithmetic is `cluster_conf.quorum`; this module adds what only a running cluster knows:

- expected votes: each member carries its own (an admin's `cman_tool expected -e`, else the configuration);
  the cluster uses the highest among members, and never less than the votes present;
- quorum never decreases by itself: a lost member leaves the quorum where it was. It is recomputed downwards
  only on `cman_tool expected`, `cman_tool leave remove` and a configuration change (`allow_decrease`);
- the quorum disk's votes count while the local quorum disk service says this node may claim them;
- `cman_tool expected -e N` is refused unless total_votes/2 <= new quorum <= total_votes.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cluster_conf.quorum import QuorumState, quorum_for


@dataclass(frozen=True, slots=True)
class QuorumInputs:
    """Everything one quorum evaluation reads (an immutable snapshot)."""

    node_votes: Mapping[int, int]  # configured votes per nodeid
    members: frozenset[int]
    member_expected: Mapping[int, int]  # the expected votes each member advertises (the local node included)
    qdisk_votes: int = 0  # votes the quorum disk gives right now (0 when absent, dead or not claimable)
    two_node: bool = False
    previous_quorum: int | None = None  # the quorum in force before this evaluation
    allow_decrease: bool = False


def member_votes(node_votes: Mapping[int, int], members: Iterable[int]) -> int:
    return sum(node_votes.get(m, 1) for m in members)


def evaluate(inputs: QuorumInputs) -> QuorumState:
    """The quorum state of a view: expected, total, quorum, quorate."""
    votes = member_votes(inputs.node_votes, inputs.members)
    total = votes + inputs.qdisk_votes
    expected = max([total, *inputs.member_expected.values()]) if inputs.member_expected else total
    # two_node holds only for exactly two configured nodes (cmand refuses to start otherwise, as cman did): with
    # more, quorum 1 would let both sides of a split act.
    two_node = inputs.two_node and len(inputs.node_votes) == 2
    quorum = quorum_for(expected, total, two_node=two_node, members=len(inputs.members))
    if inputs.previous_quorum is not None and not inputs.allow_decrease and not two_node:
        quorum = max(quorum, inputs.previous_quorum)
    return QuorumState(
        expected_votes=expected,
        total_votes=total,
        quorum=quorum,
        quorate=total >= quorum,
        two_node=two_node,
        qdisk_votes=inputs.qdisk_votes,
        node_votes=votes,
    )


def expected_change_error(new_expected: int, total_votes: int, *, two_node: bool = False, members: int = 0) -> str:
    """Why `cman_tool expected -e new_expected` is refused ('' when it is allowed)."""
    if new_expected < 1:
        return f"expected votes must be a positive number, not {new_expected}"
    quorum = quorum_for(new_expected, total_votes, two_node=two_node, members=members)
    if not total_votes // 2 <= quorum <= total_votes:
        return (f"cannot set expected votes to {new_expected}: the quorum would be {quorum} with {total_votes} "
                "votes present (it must lie between half the votes present and all of them)")
    return ""


def after_remove(expected: int, leaver_votes: int) -> int:
    """`cman_tool leave remove`: the remaining members lower their expected votes by the leaver's votes."""
    return max(expected - leaver_votes, 1)
