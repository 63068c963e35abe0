"""cman quorum arithmetic (rhcs-facts §5.1)."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cluster_conf import ClusterConf
from cluster_conf.model import view
from cluster_conf.quorum import compute, expected_votes, qdisk_min_score, quorum_for


def conf_with(nodes: list[int], cman: str = "", quorumd: str = "") -> ClusterConf:
    body = "".join(f'<clusternode name="n{i}" nodeid="{i}" votes="{v}"/>' for i, v in enumerate(nodes, 1))
    return ClusterConf.from_string(
        f'<cluster name="q" config_version="1">{cman}<clusternodes>{body}</clusternodes>{quorumd}</cluster>'
    )


def test_three_nodes_need_two() -> None:
    v = view(conf_with([1, 1, 1]))
    assert compute(v).quorum == 2
    assert compute(v, members=["n1", "n2"]).quorate
    assert not compute(v, members=["n1"]).quorate


def test_expected_votes_sources_in_order() -> None:
    v = view(conf_with([1, 1, 1], cman='<cman expected_votes="5"/>'))
    assert expected_votes(v) == 5
    assert expected_votes(v, {"CMAN_EXPECTEDVOTES": "7"}) == 7
    assert expected_votes(view(conf_with([2, 1, 1]))) == 4


def test_quorum_uses_the_larger_of_expected_and_total() -> None:
    # expected 3 but 5 votes present: quorum follows the total (floor(5/2)+1 = 3).
    v = view(conf_with([1, 1, 1, 1, 1], cman='<cman expected_votes="3"/>'))
    assert compute(v).quorum == 3


def test_two_node() -> None:
    v = view(conf_with([1, 1], cman='<cman two_node="1" expected_votes="1"/>'))
    state = compute(v, members=["n1"])
    assert state.quorum == 1 and state.quorate and state.two_node


def test_quorum_disk_votes_count_only_while_alive() -> None:
    qd = '<quorumd label="qd"><heuristic program="true" score="1"/><heuristic program="true" score="2"/></quorumd>'
    v = view(conf_with([1, 1, 1], cman='<cman expected_votes="5"/>', quorumd=qd))
    assert compute(v, members=["n1"], qdisk_alive=True).total_votes == 3  # 1 + default qdisk votes (3-1)
    assert compute(v, members=["n1"], qdisk_alive=True).quorate
    assert not compute(v, members=["n1"], qdisk_alive=False).quorate
    assert qdisk_min_score(v) == 2  # floor((1+2+1)/2)


def test_highest_expected_among_members_wins() -> None:
    v = view(conf_with([1, 1, 1]))
    assert compute(v, member_expected=[5]).expected_votes == 5


@given(expected=st.integers(1, 600), total=st.integers(0, 600))
def test_quorum_formula(expected: int, total: int) -> None:
    q = quorum_for(expected, total)
    assert q == max(expected // 2 + 1, total // 2 + 1)
    # A strict majority of the larger of the two: two disjoint partitions can never both be quorate.
    assert 2 * q > max(expected, total)
