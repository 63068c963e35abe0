"""The What-if adapter: luci's status dict and a configuration in, the engine's planner's answer out."""
from __future__ import annotations

import pytest

from cluster_conf import ClusterConf
from luci_web.clusters import whatif
from tests.conftest import SMALL_CONF


def status(owner: str = "n1", online: tuple[str, ...] = ("n1", "n2", "n3")) -> dict:
    return {"at": 1700000000.0, "quorum": {"quorate": True},
            "members": [{"name": n, "online": n in online, "qdisk": False} for n in ("n1", "n2", "n3")],
            "services": [{"name": "service:www", "state": 112, "state_str": "started", "owner": owner,
                          "last_owner": owner, "flags": 0, "last_transition": 1699999000.0},
                         {"name": "service:gone", "state": 112, "state_str": "started", "owner": "n1", "flags": 0}]}


def conf() -> ClusterConf:
    return ClusterConf.from_string(SMALL_CONF)


def test_failing_the_owner_moves_www_to_the_next_node_of_its_domain() -> None:
    out = whatif.simulate(conf(), status(), fail=["n1"])
    (row,) = out.rows  # service:gone is not in the configuration: left out
    assert (row["owner"], row["new_owner"], row["moves"]) == ("n1", "n2", True)
    assert out.steps[0]["event"] == "node-down n1"
    assert any(a.startswith("start service:www on n2") for a in out.steps[0]["actions"])
    assert out.quorate_after and out.online_after == ["n2", "n3"]


def test_nothing_chosen_keeps_everything_where_it_is() -> None:
    out = whatif.simulate(conf(), status())
    assert [(r["owner"], r["new_owner"], r["moves"]) for r in out.rows] == [("n1", "n1", False)]


def test_losing_quorum_stops_every_service() -> None:
    out = whatif.simulate(conf(), status(), fail=["n1", "n2"])
    assert not out.quorate_after
    assert out.rows[0]["new_owner"] is None and out.rows[0]["new_state"] == "stopped"
    assert out.steps[-1]["event"] == "quorum-lost"


def test_a_returning_node_takes_www_back() -> None:
    out = whatif.simulate(conf(), status(owner="n2", online=("n2", "n3")), back=["n1"])
    assert out.rows[0]["new_owner"] == "n1"  # failback: n1 has the better priority in the ordered domain


@pytest.mark.parametrize(("fail", "back", "message"), [
    (["n9"], [], "no node 'n9'"), ([], ["n1"], "is a member already"),
])
def test_bad_choices_are_one_line(fail: list[str], back: list[str], message: str) -> None:
    with pytest.raises(whatif.BadInput, match=message):
        whatif.simulate(conf(), status(), fail=fail, back=back)


def test_nodes_of_lists_members_and_absent_nodes() -> None:
    from cluster_conf.model import view

    rows = whatif.nodes_of(view(conf()), status(online=("n1", "n3")))
    assert rows == [{"name": "n1", "online": True}, {"name": "n2", "online": False}, {"name": "n3", "online": True}]
