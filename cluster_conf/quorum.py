"""cman's quorum arithmetic as pure functions (rhcs-facts §5.1).

    quorum = max(floor(expected/2) + 1, floor(total/2) + 1)

where `expected` is the expected votes (CMAN_EXPECTEDVOTES, else <cman expected_votes>, else the sum of the
node votes plus the quorum disk's votes) and `total` the votes present (member votes plus the quorum disk's
votes while it is alive). With two_node="1" and at most two members, quorum is 1.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cluster_conf.model import ClusterView, to_int


@dataclass(frozen=True, slots=True)
class QuorumState:
    expected_votes: int
    total_votes: int
    quorum: int
    quorate: bool
    two_node: bool
    qdisk_votes: int  # votes the quorum disk contributes right now (0 when absent or dead)
    node_votes: int  # votes of the members

    def to_dict(self) -> dict[str, int | bool]:
        return {
            "expected_votes": self.expected_votes,
            "total_votes": self.total_votes,
            "quorum": self.quorum,
            "quorate": self.quorate,
            "two_node": self.two_node,
            "qdisk_votes": self.qdisk_votes,
            "node_votes": self.node_votes,
        }


def quorum_for(expected_votes: int, total_votes: int, *, two_node: bool = False, members: int = 0) -> int:
    """The vote count needed for quorum. two_node forces 1 while at most two nodes are members."""
    if two_node and members <= 2:
        return 1
    return max(expected_votes // 2 + 1, total_votes // 2 + 1)


def node_vote_total(view: ClusterView) -> int:
    """Sum of configured node votes (default 1 each; malformed values count as 1, validation reports them)."""
    return sum(n.votes if n.votes is not None else 1 for n in view.nodes)


def qdisk_votes(explicit: int | None, node_count: int) -> int:
    """A quorum disk's votes: its `votes` attribute when given, else node count − 1."""
    return explicit if explicit is not None else max(node_count - 1, 0)


def qdisk_configured_votes(view: ClusterView) -> int:
    """The configured quorum disk's votes (0 without a quorum disk)."""
    if view.quorumd is None:
        return 0
    return qdisk_votes(view.quorumd.votes, len(view.nodes))


def qdisk_min_score(view: ClusterView) -> int:
    """<quorumd min_score=>, default floor((n+1)/2) where n is the sum of heuristic scores."""
    if view.quorumd is None:
        return 0
    explicit = to_int(view.quorumd.attrs.get("min_score"))
    if explicit is not None:
        return explicit
    total = sum(h.score if h.score is not None else 1 for h in view.quorumd.heuristics)
    return (total + 1) // 2


def expected_votes(view: ClusterView, env: Mapping[str, str] | None = None) -> int:
    """Expected votes: CMAN_EXPECTEDVOTES from `env`, else <cman expected_votes>, else the configured total."""
    if env:
        from_env = to_int(env.get("CMAN_EXPECTEDVOTES"))
        if from_env is not None and from_env > 0:
            return from_env
    configured = to_int((view.cman or {}).get("expected_votes"))
    if configured is not None and configured > 0:
        return configured
    return node_vote_total(view) + qdisk_configured_votes(view)


def compute(
    view: ClusterView,
    members: Iterable[str] | None = None,
    *,
    qdisk_alive: bool = True,
    expected_override: int | None = None,
    member_expected: Iterable[int] = (),
    env: Mapping[str, str] | None = None,
) -> QuorumState:
    """Quorum for the given member names (default: every configured node is a member).

    `expected_override` is what `cman_tool expected -e` set; `member_expected` the expected values other
    members carry (cman uses the highest of all).
    """
    names = {n.name for n in view.nodes} if members is None else set(members)
    node_votes = sum(n.votes if n.votes is not None else 1 for n in view.nodes if n.name in names)
    qvotes = qdisk_configured_votes(view) if qdisk_alive else 0
    total = node_votes + qvotes
    expected = expected_override if expected_override is not None else expected_votes(view, env)
    expected = max([expected, *member_expected])
    two_node = view.two_node
    q = quorum_for(expected, total, two_node=two_node, members=len(names))
    return QuorumState(
        expected_votes=expected,
        total_votes=total,
        quorum=q,
        quorate=total >= q,
        two_node=two_node,
        qdisk_votes=qvotes,
        node_votes=node_votes,
    )
