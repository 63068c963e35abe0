"""Failover-domain scoring and best_target_node (rhcs-facts §2.3), table-driven.

`build` makes a cluster.conf from a compact description; the planner and what-if tests reuse it.
"""
from __future__ import annotations

from xml.sax.saxutils import quoteattr

import pytest

from cluster_conf import ClusterConf
from cluster_conf.model import ClusterView, view
from rgmanager.placement import UNPRIORITISED, Placer, Score, catalog_of, compile_config, effective_priority
from rgmanager.snapshot import Membership, ServiceRecord
from rgmanager.states import RGCode, State


def _attrs(attrs: dict[str, object]) -> str:
    return "".join(f" {k}={quoteattr(str(v))}" for k, v in attrs.items())


def build_xml(
    nodes: tuple[str, ...] = ("n1", "n2", "n3"),
    domains: dict[str, tuple[dict[str, object], list[tuple[str, int | None]]]] | None = None,
    services: list[dict[str, object]] | None = None,
    body: str = "",
) -> str:
    """domains: name -> (attributes, [(member, priority or None)]); services: attribute dicts, `kind` = vm for VMs,
    `children` = raw XML inside the service; `body` = raw XML inside <rm> (e.g. <resources>)."""
    lines = ['<?xml version="1.0"?>', '<cluster name="lab" config_version="1">', "<clusternodes>"]
    lines += [f'<clusternode name="{n}" nodeid="{i}"/>' for i, n in enumerate(nodes, 1)]
    lines += ["</clusternodes>", "<rm>", "<failoverdomains>"]
    for name, (attrs, members) in (domains or {}).items():
        lines.append(f"<failoverdomain{_attrs({'name': name, **attrs})}>")
        for member, priority in members:
            extra = {"priority": priority} if priority is not None else {}
            lines.append(f"<failoverdomainnode{_attrs({'name': member, **extra})}/>")
        lines.append("</failoverdomain>")
    lines.append("</failoverdomains>")
    lines.append(body)
    for svc in services or []:
        svc = dict(svc)
        kind = svc.pop("kind", "service")
        children = svc.pop("children", "")
        lines.append(f"<{kind}{_attrs(svc)}>{children}</{kind}>")
    lines += ["</rm>", "</cluster>"]
    return "\n".join(lines)


def build(*args: object, **kwargs: object) -> ClusterView:
    return view(ClusterConf.from_string(build_xml(*args, **kwargs)))  # type: ignore[arg-type]


ORDERED = {"ordered": 1}
RESTRICTED = {"restricted": 1}


def placer_for(config: ClusterView, online: tuple[str, ...]) -> Placer:
    return Placer(Membership.from_config(config, online))


def score_of(domain: tuple[dict, list] | None, node: str, online: tuple[str, ...],
             record: ServiceRecord | None = None) -> Score:
    config = build(domains={"d": domain} if domain else None,
                   services=[{"name": "s", **({"domain": "d"} if domain else {})}])
    rule = catalog_of(config).by_id["service:s"]
    return placer_for(config, online).score(rule, node, record or ServiceRecord("service:s"))


def started_on(node: str) -> ServiceRecord:
    return ServiceRecord("service:s", State.STARTED, node, last_transition=5)


ORDERED_2 = (ORDERED, [("n1", 1), ("n2", 2)])
NOFAILBACK_2 = ({"ordered": 1, "nofailback": 1}, [("n1", 1), ("n2", 2)])

# (case, domain, node, online, record, expected) - one row per branch of §2.3
SCORE_CASES = [
    ("offline node is ILLEGAL", None, "n3", ("n1", "n2"), None, Score.ILLEGAL),
    ("no domain: every online node is BEST", None, "n2", ("n1", "n2"), None, Score.BEST),
    ("non-member, no member online, unrestricted: BEST", ({}, [("n1", None)]), "n2", ("n2", "n3"), None, Score.BEST),
    ("non-member, no member online, restricted: ILLEGAL", (RESTRICTED, [("n1", None)]), "n2", ("n2",), None,
     Score.ILLEGAL),
    ("non-member, a member online, unrestricted: GOOD", ({}, [("n1", None)]), "n2", ("n1", "n2"), None, Score.GOOD),
    ("non-member, a member online, restricted: ILLEGAL", (RESTRICTED, [("n1", None)]), "n2", ("n1", "n2"), None,
     Score.ILLEGAL),
    ("ordered, priority above preferred: BETTER", ORDERED_2, "n2", ("n1", "n2"), None, Score.BETTER),
    ("ordered, preferred priority: BEST", ORDERED_2, "n1", ("n1", "n2"), None, Score.BEST),
    ("ordered, preferred member offline: the next one is BEST", ORDERED_2, "n2", ("n2", "n3"), None, Score.BEST),
    ("unordered: every member ties at BEST", ({}, [("n1", 1), ("n2", 2)]), "n2", ("n1", "n2"), None, Score.BEST),
    ("nofailback, worse member running it: BEST (stays)", NOFAILBACK_2, "n2", ("n1", "n2"), started_on("n2"),
     Score.BEST),
    ("nofailback, preferred member while it runs elsewhere: BETTER", NOFAILBACK_2, "n1", ("n1", "n2"),
     started_on("n2"), Score.BETTER),
    ("nofailback, preferred member running it: BEST", NOFAILBACK_2, "n1", ("n1", "n2"), started_on("n1"),
     Score.BEST),
    ("nofailback, owner dead: no stickiness", NOFAILBACK_2, "n1", ("n1", "n3"), started_on("n2"), Score.BEST),
    ("without nofailback the running worse member is BETTER", ORDERED_2, "n2", ("n1", "n2"), started_on("n2"),
     Score.BETTER),
    ("ordered, unprioritised member ranks after priority 1 (our choice)", (ORDERED, [("n1", None), ("n2", 1)]),
     "n1", ("n1", "n2"), None, Score.BETTER),
    ("ordered, unprioritised member alone online is BEST", (ORDERED, [("n1", None), ("n2", 1)]), "n1",
     ("n1", "n3"), None, Score.BEST),
]


@pytest.mark.parametrize(("case", "domain", "node", "online", "record", "expected"), SCORE_CASES,
                         ids=[c[0] for c in SCORE_CASES])
def test_score(case, domain, node, online, record, expected):
    assert score_of(domain, node, online, record) is expected


def test_nonexistent_domain_scores_best_everywhere():
    config = build(services=[{"name": "s", "domain": "nope"}])
    rule = catalog_of(config).by_id["service:s"]
    assert rule.domain is None and rule.domain_name == "nope"
    placer = placer_for(config, ("n1", "n2"))
    assert placer.score(rule, "n1", ServiceRecord("service:s")) is Score.BEST


@pytest.mark.parametrize(
    ("ordered", "priority", "expected"),
    [(True, 1, 1), (True, 100, 100), (True, None, UNPRIORITISED), (True, 0, UNPRIORITISED),
     (True, 101, UNPRIORITISED), (True, -3, UNPRIORITISED), (False, 5, 0), (False, None, 0)],
)
def test_effective_priority(ordered, priority, expected):
    assert effective_priority(ordered, priority) == expected


# -- best_target_node -------------------------------------------------------------------------------------------
def target(config: ClusterView, online: tuple[str, ...], service: str = "service:s", skip: str | None = None,
           running: dict[str, str] | None = None) -> str | None:
    """best_target for `service` with `running` = {service id: node} occupying nodes."""
    catalog = catalog_of(config)
    placer = placer_for(config, online)
    for sid, node in (running or {}).items():
        placer.occupy(node, catalog.by_id[sid].exclusive)
    found = placer.best_target(catalog.by_id[service], ServiceRecord(service), skip)
    return found[0] if found else None


def test_ordered_domain_picks_the_lowest_priority_online_member():
    config = build(domains={"d": (ORDERED, [("n3", 1), ("n1", 2), ("n2", 3)])}, services=[{"name": "s",
                                                                                            "domain": "d"}])
    assert target(config, ("n1", "n2", "n3")) == "n3"
    assert target(config, ("n1", "n2")) == "n1"
    assert target(config, ("n1", "n2", "n3"), skip="n3") == "n1"


def test_tie_goes_to_the_later_node_in_membership_order():
    config = build(domains={"d": ({}, [("n1", None), ("n2", None)])}, services=[{"name": "s", "domain": "d"}])
    assert target(config, ("n1", "n2", "n3")) == "n2"
    no_domain = build(services=[{"name": "s"}])
    assert target(no_domain, ("n1", "n2", "n3")) == "n3"


def test_unrestricted_domain_falls_back_to_a_non_member_when_no_member_is_online():
    config = build(domains={"d": (ORDERED, [("n1", 1)])}, services=[{"name": "s", "domain": "d"}])
    assert target(config, ("n2", "n3")) == "n3"
    assert target(config, ("n1", "n2", "n3")) == "n1"


def test_restricted_domain_without_online_member_has_no_target():
    config = build(domains={"d": (RESTRICTED, [("n1", None)])}, services=[{"name": "s", "domain": "d"}])
    assert target(config, ("n2", "n3")) is None
    rule = catalog_of(config).by_id["service:s"]
    assert placer_for(config, ("n2", "n3")).why_unplaced(rule) == ("Restricted domain unavailable", RGCode.ENORUN)


def test_exhausted_when_only_the_owner_could_take_it():
    config = build(domains={"d": (RESTRICTED, [("n1", None)])}, services=[{"name": "s", "domain": "d"}])
    assert target(config, ("n1", "n2"), skip="n1") is None


EXCLUSIVE_CONF = dict(services=[{"name": "s", "exclusive": 1}, {"name": "o"}, {"name": "x", "exclusive": 1}])


def test_exclusive_service_needs_an_empty_node():
    config = build(**EXCLUSIVE_CONF)
    assert target(config, ("n1", "n2", "n3"), running={"service:o": "n3"}) == "n2"
    assert target(config, ("n1", "n2"), running={"service:o": "n1", "service:x": "n2"}) is None
    rule = catalog_of(config).by_id["service:s"]
    placer = placer_for(config, ("n1",))
    placer.occupy("n1", False)
    assert placer.why_unplaced(rule)[1] is RGCode.EEXCL


def test_ordinary_service_avoids_nodes_running_an_exclusive_one():
    config = build(**EXCLUSIVE_CONF)
    assert target(config, ("n1", "n2", "n3"), "service:o", running={"service:x": "n3"}) == "n2"
    assert target(config, ("n1",), "service:o", running={"service:x": "n1"}) is None


def test_compile_reads_recovery_and_dependency_settings():
    config = build(services=[
        {"name": "a"},
        {"name": "b", "depend": "service:a", "depend_mode": "soft", "recovery": "restart-disable",
         "max_restarts": 3, "restart_expire_time": "5m"},
        {"name": "c", "depend": "a"},
    ])
    catalog = compile_config(config)
    b = catalog.by_id["service:b"]
    assert (b.depend, b.depend_hard, b.recovery, b.max_restarts, b.restart_expire_time) == (
        "service:a", False, "restart-disable", 3, 300)
    assert catalog.by_id["service:c"].depend == "service:a" and catalog.by_id["service:c"].depend_hard
    assert catalog.dependents["service:a"] == ("service:b", "service:c")


def test_evaluation_order_puts_dependencies_first_and_exclusive_services_first():
    config = build(services=[{"name": "b", "depend": "service:a"}, {"name": "a"}, {"name": "x", "exclusive": 1},
                             {"name": "p", "depend": "service:q"}, {"name": "q", "depend": "service:p"}])
    order = catalog_of(config).order
    assert order.index("service:x") == 0
    assert order.index("service:a") < order.index("service:b")
    assert sorted(order) == sorted(s.id for s in config.services)  # a cycle still lists each once


def test_catalog_is_cached_per_view_object():
    config = build(services=[{"name": "a"}])
    assert catalog_of(config) is catalog_of(config)
    assert catalog_of(build(services=[{"name": "a"}])) is not catalog_of(config)
