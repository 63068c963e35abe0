"""The planner: events -> ordered actions and the resulting table (rhcs-facts §2.2-2.7, §2.9, §2.11)."""
from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rgmanager.placement import Placer, Score, catalog_of
from rgmanager.planner import ActionKind, Plan, plan
from rgmanager.snapshot import (
    ConfigChanged,
    Membership,
    MigrateFailed,
    NodeDown,
    NodeState,
    NodeUp,
    QuorumFormed,
    QuorumLost,
    ServiceFailed,
    ServiceRecord,
    ServiceTable,
    StopFailed,
    UserOp,
    UserRequest,
)
from rgmanager.states import Flag, Request, RGCode, State
from tests.test_placement import ORDERED, RESTRICTED, build

NODES3 = ("n1", "n2", "n3")


def membership(config, online=None, *, unclean=(), quorate=True, locked=False) -> Membership:
    m = Membership.from_config(config, online, unclean=unclean, quorate=quorate)
    return replace(m, locked=locked)


def run(config, event, online=None, records=(), **kw) -> Plan:
    return plan(config, membership(config, online, **kw), ServiceTable(records), event)


def started(name: str, node: str, **kw) -> ServiceRecord:
    return ServiceRecord(name if ":" in name else f"service:{name}", State.STARTED, node, last_transition=10, **kw)


def rec(name: str, state: State, **kw) -> ServiceRecord:
    return ServiceRecord(name if ":" in name else f"service:{name}", state, last_transition=10, **kw)


def steps(p: Plan) -> list[tuple[str, str, str | None]]:
    return [(a.kind.value, a.service.split(":", 1)[1], a.node) for a in p.actions]


def owner(p: Plan, name: str) -> str | None:
    return p.placement.get(f"service:{name}") or p.placement.get(f"vm:{name}")


def state(p: Plan, name: str) -> State:
    sid = name if ":" in name else f"service:{name}"
    return p.table.record(sid).state


WEB = build(
    domains={"web": (ORDERED, [("n1", 1), ("n2", 2), ("n3", 3)])},
    services=[{"name": "www", "domain": "web"}],
)


# -- quorum and initial placement ------------------------------------------------------------------------------
def test_quorum_formed_starts_every_service_on_its_best_node():
    config = build(
        domains={"web": (ORDERED, [("n2", 1), ("n1", 2)]), "db": (RESTRICTED, [("n3", None)])},
        services=[{"name": "www", "domain": "web"}, {"name": "db", "domain": "db"}, {"name": "free"}],
    )
    p = run(config, QuorumFormed(now=5))
    assert p.placement == {"service:www": "n2", "service:db": "n3", "service:free": "n3"}
    assert all(a.kind is ActionKind.START and a.request is Request.START for a in p.actions)
    assert p.table.record("service:www").last_transition == 5


def test_autostart_0_is_disabled_when_quorum_forms_on_a_new_record():
    config = build(services=[{"name": "manual", "autostart": 0}, {"name": "auto"}])
    p = run(config, QuorumFormed())
    assert state(p, "manual") is State.DISABLED and owner(p, "auto") == "n3"
    assert ("mark-disabled", "manual", None) in steps(p)


def test_autostart_0_record_that_already_ran_is_started_normally():
    config = build(services=[{"name": "manual", "autostart": 0}])
    p = run(config, QuorumFormed(), records=[rec("manual", State.STOPPED)])
    assert owner(p, "manual") == "n3"  # not new: transition time set


def test_restricted_domain_without_member_online_stays_stopped_with_the_reason():
    config = build(domains={"d": (RESTRICTED, [("n1", None)])}, services=[{"name": "s", "domain": "d"}])
    p = run(config, QuorumFormed(), online=("n2", "n3"))
    assert p.placement == {} and state(p, "s") is State.STOPPED
    assert [(x.service, x.reason, x.code) for x in p.pending] == [
        ("service:s", "Restricted domain unavailable", RGCode.ENORUN)]


def test_unrestricted_domain_falls_back_to_a_non_member():
    config = build(domains={"d": (ORDERED, [("n1", 1)])}, services=[{"name": "s", "domain": "d"}])
    assert owner(run(config, QuorumFormed(), online=("n2", "n3")), "s") == "n3"


def test_nothing_happens_without_quorum():
    p = run(WEB, NodeDown("n1"), records=[started("www", "n1")], quorate=False)
    assert p.actions == () and p.result is RGCode.EQUORUM
    r = run(WEB, UserRequest(UserOp.ENABLE, "www"), quorate=False)
    assert r.result is RGCode.EQUORUM and r.result.exit_status == 247


def test_quorum_lost_stops_everything_and_reinitialises_records():
    config = build(services=[{"name": "a"}, {"name": "b", "autostart": 0}, {"name": "c"}, {"name": "f"}])
    records = [started("a", "n1"), rec("b", State.DISABLED), rec("c", State.DISABLED),
               replace(started("f", "n2"), flags=Flag.FROZEN)]
    p = run(config, QuorumLost(), records=records)
    assert ("stop", "a", "n1") in steps(p)
    assert all(a.service != "service:f" for a in p.actions)  # frozen: never touched
    assert p.table["service:a"].is_new and p.table["service:c"].is_new
    assert not p.membership.quorate
    # re-formation: autostart=1 services start again, even the formerly disabled one; autostart=0 is disabled again
    again = plan(config, p.membership, p.table, QuorumFormed(now=20))
    assert owner(again, "a") and owner(again, "c") and state(again, "b") is State.DISABLED
    assert owner(again, "f") == "n2"


# -- node events ----------------------------------------------------------------------------------------------
def test_node_down_takes_over_on_the_next_best_node():
    p = run(WEB, NodeDown("n1"), records=[started("www", "n1")])
    assert steps(p) == [("mark-stopped", "www", "n1"), ("start", "www", "n2")]
    assert "Taking over service service:www from down member n1" in p.actions[1].reason
    assert p.table["service:www"].last_owner == "n1"


def test_unfenced_dead_owner_is_not_moved():
    p = run(WEB, QuorumFormed(), online=("n2", "n3"), unclean=("n1",), records=[started("www", "n1")])
    assert p.actions == () and owner(p, "www") == "n1"
    assert [(x.code, "waiting for fencing" in x.reason) for x in p.pending] == [(RGCode.EFENCE, True)]


def test_frozen_service_is_not_moved_when_its_owner_dies():
    frozen = replace(started("www", "n1"), flags=Flag.FROZEN)
    p = run(WEB, NodeDown("n1"), records=[frozen])
    assert p.actions == () and p.table["service:www"] == frozen
    assert p.pending[0].code is RGCode.EFROZEN


def test_failback_to_a_better_joining_node():
    p = run(WEB, NodeUp("n1"), online=("n2", "n3"), records=[started("www", "n2")])
    assert steps(p) == [("relocate", "www", "n1")]
    assert p.actions[0].source == "n2" and "better node n1" in p.actions[0].reason


def test_no_failback_with_nofailback():
    config = build(domains={"web": ({"ordered": 1, "nofailback": 1}, [("n1", 1), ("n2", 2)])},
                   services=[{"name": "www", "domain": "web"}])
    assert run(config, NodeUp("n1"), online=("n2", "n3"), records=[started("www", "n2")]).actions == ()


def test_no_failback_to_an_equal_node():
    config = build(domains={"web": ({}, [("n1", None), ("n2", None)])}, services=[{"name": "www", "domain": "web"}])
    assert run(config, NodeUp("n1"), online=("n2", "n3"), records=[started("www", "n2")]).actions == ()


def test_failback_migrates_a_vm():
    config = build(domains={"web": (ORDERED, [("n1", 1), ("n2", 2)])},
                   services=[{"kind": "vm", "name": "guest", "domain": "web"}])
    p = run(config, NodeUp("n1"), online=("n2",), records=[started("vm:guest", "n2")])
    assert steps(p) == [("migrate", "guest", "n1")]


def test_failback_from_a_non_member_fallback_node():
    config = build(domains={"d": (ORDERED, [("n1", 1)])}, services=[{"name": "s", "domain": "d"}])
    p = run(config, NodeUp("n1"), online=("n2", "n3"), records=[started("s", "n3")])
    assert steps(p) == [("relocate", "s", "n1")]


def test_node_up_starts_a_service_whose_restricted_domain_comes_back():
    config = build(domains={"d": (RESTRICTED, [("n1", None)])}, services=[{"name": "s", "domain": "d"}])
    p = run(config, NodeUp("n1"), online=("n2",), records=[rec("s", State.STOPPED)])
    assert steps(p) == [("start", "s", "n1")]


# -- exclusivity ----------------------------------------------------------------------------------------------
def test_exclusive_service_does_not_join_an_occupied_node_and_blocks_its_own():
    config = build(services=[{"name": "big", "exclusive": 1}, {"name": "a"}, {"name": "b"}])
    p = run(config, QuorumFormed(), online=("n1", "n2"))
    assert owner(p, "big") == "n2"  # evaluated first, tie -> later node
    assert owner(p, "a") == "n1" and owner(p, "b") == "n1"  # never next to the exclusive one


def test_exclusive_service_cannot_start_when_every_node_is_busy():
    config = build(services=[{"name": "big", "exclusive": 1}, {"name": "a"}])
    p = run(config, QuorumFormed(), online=("n1",), records=[started("a", "n1")])
    assert state(p, "big") is State.STOPPED and p.pending[0].code is RGCode.EEXCL


# -- dependencies ---------------------------------------------------------------------------------------------
DEPS = build(
    domains={"d": (ORDERED, [("n1", 1), ("n2", 2)])},
    services=[{"name": "db", "domain": "d"}, {"name": "app", "depend": "service:db"},
              {"name": "soft", "depend": "service:db", "depend_mode": "soft"}],
)


def test_dependency_starts_first_and_dependents_follow():
    p = run(DEPS, QuorumFormed())
    names = [s for _, s, _ in steps(p)]
    assert names.index("db") < names.index("app") and owner(p, "app")


def test_missing_dependency_keeps_the_dependent_stopped():
    config = build(services=[{"name": "app", "depend": "service:ghost"}])
    p = run(config, QuorumFormed())
    assert state(p, "app") is State.STOPPED and p.pending[0].code is RGCode.EDEPEND
    assert "Dependency missing" in p.pending[0].reason


def test_hard_dependents_stop_before_their_dependency_moves_and_start_again():
    records = [started("db", "n1"), started("app", "n3"), started("soft", "n3")]
    p = run(DEPS, NodeDown("n1"), records=records)
    assert steps(p) == [("stop", "app", "n3"), ("mark-stopped", "db", "n1"), ("start", "db", "n2"),
                        ("start", "app", "n3")]
    assert "Dependency missing" in p.actions[0].reason
    assert owner(p, "soft") == "n3"  # soft: only needed at start


def test_hard_dependents_cascade_down_a_chain():
    config = build(services=[{"name": "a"}, {"name": "b", "depend": "service:a"}, {"name": "c", "depend": "service:b"}])
    records = [started("a", "n1"), started("b", "n2"), started("c", "n3")]
    p = run(config, UserRequest(UserOp.DISABLE, "a"), records=records)
    assert steps(p)[:3] == [("stop", "c", "n3"), ("stop", "b", "n2"), ("stop", "a", "n1")]
    assert p.placement == {}


def test_dependent_waits_when_its_dependency_cannot_restart():
    config = build(domains={"d": (RESTRICTED, [("n1", None)])},
                   services=[{"name": "db", "domain": "d"}, {"name": "app", "depend": "service:db"}])
    p = run(config, NodeDown("n1"), records=[started("db", "n1"), started("app", "n2")])
    assert p.placement == {} and {x.code for x in p.pending} == {RGCode.ENORUN, RGCode.EDEPEND}


# -- status failures and recovery policies ----------------------------------------------------------------------
def recovery_conf(policy: str, max_restarts: int = 0, expire: str = "0") -> object:
    return build(domains={"d": (ORDERED, [("n1", 1), ("n2", 2)])},
                 services=[{"name": "s", "domain": "d", "recovery": policy, "max_restarts": max_restarts,
                            "restart_expire_time": expire}])


def fail_times(config, times: list[float]) -> list[Plan]:
    m = membership(config)
    table = ServiceTable([started("s", "n1")])
    plans = []
    for t in times:
        p = plan(config, m, table, ServiceFailed("s", now=t))
        plans.append(p)
        table = p.table
    return plans


def test_restart_policy_restarts_in_place():
    p = fail_times(recovery_conf("restart"), [50])[0]
    assert steps(p) == [("stop", "s", "n1"), ("start", "s", "n1")]
    assert p.actions[0].request is Request.STOP_RECOVER and p.actions[0].state is State.RECOVERING
    assert p.actions[1].request is Request.START_RECOVER
    assert p.table["service:s"].restarts == (50,)


def test_restart_without_limit_never_relocates():
    plans = fail_times(recovery_conf("restart"), [10, 11, 12, 13, 14])
    assert all(steps(p)[-1] == ("start", "s", "n1") for p in plans)


def test_n_plus_first_failure_relocates():
    plans = fail_times(recovery_conf("restart", 2, "10m"), [10, 20, 30])
    assert [steps(p)[-1] for p in plans] == [("start", "s", "n1"), ("start", "s", "n1"), ("start", "s", "n2")]
    assert "Restart threshold for service:s exceeded; attempting to relocate" in plans[2].actions[-1].reason
    assert plans[2].table["service:s"].restarts == ()


def test_restarts_expire_after_restart_expire_time():
    plans = fail_times(recovery_conf("restart", 2, "60"), [10, 20, 75])  # the first restart is forgotten at 75
    assert steps(plans[2])[-1] == ("start", "s", "n1")
    assert plans[2].table["service:s"].restarts == (20, 75)


def test_restart_disable_disables_past_the_threshold():
    plans = fail_times(recovery_conf("restart-disable", 1), [10, 20])
    assert steps(plans[0])[-1] == ("start", "s", "n1")
    assert steps(plans[1])[-1] == ("mark-disabled", "s", None)
    assert state(plans[1], "s") is State.DISABLED
    assert "Restart threshold for service:s exceeded; disabling" in plans[1].actions[-1].reason


def test_relocate_policy_moves_at_the_first_failure():
    p = fail_times(recovery_conf("relocate"), [10])[0]
    assert steps(p) == [("stop", "s", "n1"), ("start", "s", "n2")]


def test_relocate_policy_with_no_other_node_restarts_locally():
    config = build(domains={"d": (RESTRICTED, [("n1", None)])},
                   services=[{"name": "s", "domain": "d", "recovery": "relocate"}])
    p = plan(config, membership(config), ServiceTable([started("s", "n1")]), ServiceFailed("s"))
    assert steps(p)[-1] == ("start", "s", "n1") and "#70: Failed to relocate" in p.actions[-1].reason


def test_disable_policy():
    p = fail_times(recovery_conf("disable"), [10])[0]
    assert steps(p) == [("stop", "s", "n1"), ("mark-disabled", "s", None)]


def test_failure_of_a_service_that_does_not_run_is_ignored():
    config = recovery_conf("restart")
    p = run(config, ServiceFailed("s"), records=[rec("s", State.STOPPED)])
    assert p.actions == () and "only handled for a started service" in p.message
    frozen = run(config, ServiceFailed("s"), records=[replace(started("s", "n1"), flags=Flag.FROZEN)])
    assert frozen.actions == ()


SUBTREES = build(
    services=[{"name": "s", "children": (
        '<fs name="data" mountpoint="/d" device="/dev/sdb1">'
        '<script name="app" file="/etc/init.d/app" __independent_subtree="1" __max_restarts="2" '
        '__restart_expire_time="60"/>'
        "</fs>"
        '<script name="extra" file="/etc/init.d/extra" __independent_subtree="2"/>'
        '<script name="free" file="/etc/init.d/free" __independent_subtree="1"/>'
    )}],
)


def test_independent_subtree_is_recovered_inline():
    p = run(SUBTREES, ServiceFailed("s", "script:free"), records=[started("s", "n1")])
    assert [(a.kind, a.resource) for a in p.actions] == [(ActionKind.RECOVER_SUBTREE, "script:free")]
    assert "Attempting inline recovery" in p.actions[0].reason and owner(p, "s") == "n1"


def test_independent_subtree_escalates_past_its_threshold():
    m = membership(SUBTREES)
    table = ServiceTable([started("s", "n1")])
    kinds = []
    for t in (10, 20, 30):
        p = plan(SUBTREES, m, table, ServiceFailed("s", "script:app", now=t))
        kinds.append([a.kind for a in p.actions])
        table = p.table
    assert kinds[0] == kinds[1] == [ActionKind.RECOVER_SUBTREE]
    assert kinds[2] == [ActionKind.STOP, ActionKind.START]  # escalated: the whole service is recovered


def test_non_critical_subtree_sets_partial_and_convalesce_clears_it():
    p = run(SUBTREES, ServiceFailed("s", "script:extra"), records=[started("s", "n1")])
    assert [a.kind for a in p.actions] == [ActionKind.SET_PARTIAL]
    assert "clusvcadm -c service:s" in p.actions[0].reason
    assert p.table["service:s"].partial and p.table["service:s"].flags.short == "P"
    c = plan(SUBTREES, p.membership, p.table, UserRequest(UserOp.CONVALESCE, "s"))
    assert [a.kind for a in c.actions] == [ActionKind.CLEAR_PARTIAL] and not c.table["service:s"].partial


def test_explicit_subtree_kind_in_the_event_wins():
    p = run(SUBTREES, ServiceFailed("s", "script:other", subtree=2), records=[started("s", "n1")])
    assert [a.kind for a in p.actions] == [ActionKind.SET_PARTIAL]


def test_stop_failure_marks_failed_and_only_disable_clears_it():
    p = run(WEB, StopFailed("www", "n1"), records=[started("www", "n1")])
    assert steps(p) == [("mark-failed", "www", "n1")] and state(p, "www") is State.FAILED
    assert p.actions[0].reason == "#12: RG service:www failed to stop; intervention required"
    assert plan(WEB, p.membership, p.table, NodeUp("n2")).placement == {}  # never started automatically
    enable = plan(WEB, p.membership, p.table, UserRequest(UserOp.ENABLE, "www"))
    assert enable.result is RGCode.FAIL and enable.message == "#43: Service service:www has failed; can not start."
    disable = plan(WEB, p.membership, p.table, UserRequest(UserOp.DISABLE, "www"))
    assert steps(disable) == [("stop", "www", "n1")] and state(disable, "www") is State.DISABLED


# -- config changes -------------------------------------------------------------------------------------------
def test_config_change_stops_removed_services_and_disables_new_autostart_0():
    old_records = [started("www", "n1"), started("gone", "n2")]
    new = build(domains={"web": (ORDERED, [("n1", 1)])},
                services=[{"name": "www", "domain": "web"}, {"name": "later", "autostart": 0}, {"name": "fresh"}])
    p = run(new, ConfigChanged(), records=old_records)
    assert ("stop", "gone", "n2") in steps(p) and "service:gone" not in p.table
    assert state(p, "later") is State.DISABLED and owner(p, "fresh") and owner(p, "www") == "n1"


def test_config_change_moves_a_service_off_a_node_its_restricted_domain_dropped():
    new = build(domains={"web": (RESTRICTED, [("n2", None)])}, services=[{"name": "www", "domain": "web"}])
    p = run(new, ConfigChanged(), records=[started("www", "n1")])
    assert steps(p) == [("relocate", "www", "n2")]


# -- user requests ----------------------------------------------------------------------------------------------
REQ = build(
    domains={"web": (ORDERED, [("n1", 1), ("n2", 2)]), "only1": (RESTRICTED, [("n1", None)])},
    services=[
        {"name": "www", "domain": "web"},
        {"name": "solo", "domain": "only1"},
        {"name": "big", "exclusive": 1},
        {"name": "app", "depend": "service:www"},
        {"kind": "vm", "name": "guest", "domain": "web"},
    ],
)


def with_rest_disabled(records) -> list[ServiceRecord]:
    """The given records plus every other REQ service disabled, so that only the request acts."""
    given = {r.name for r in records}
    return [*records, *(rec(r.id, State.DISABLED) for r in catalog_of(REQ).services if r.id not in given)]


def request(op: UserOp, service: str, target: str | None = None, records=(), **kw) -> Plan:
    return run(REQ, UserRequest(op, service, target), records=with_rest_disabled(records), **kw)


def test_enable_uses_the_domain_rules_and_m_forces_a_node():
    p = request(UserOp.ENABLE, "www", records=[rec("www", State.DISABLED)])
    assert steps(p)[0] == ("start", "www", "n1") and p.actions[0].request is Request.ENABLE
    m = request(UserOp.ENABLE, "www", "n3", records=[rec("www", State.DISABLED)])
    assert steps(m)[0] == ("start", "www", "n3") and m.result is RGCode.SUCCESS


def test_enable_on_an_occupied_node_starts_an_exclusive_service_elsewhere():
    p = request(UserOp.ENABLE, "big", "n1", records=[rec("big", State.DISABLED), started("www", "n1")])
    assert owner(p, "big") == "n3" and p.message.startswith("Warning: service:big is now running on n3")


def test_relocate_to_a_node_and_by_domain_rules():
    p = request(UserOp.RELOCATE, "www", "n3", records=[started("www", "n1"), started("app", "n2")])
    assert ("relocate", "www", "n3") in steps(p) and p.result is RGCode.SUCCESS
    assert steps(p)[0] == ("stop", "app", "n2")  # hard dependent first, then started again
    q = request(UserOp.RELOCATE, "www", records=[started("www", "n1")])
    assert steps(q) == [("relocate", "www", "n2")]


def test_relocate_to_a_node_outside_a_restricted_domain_goes_elsewhere_or_fails():
    p = request(UserOp.RELOCATE, "solo", "n2", records=[started("solo", "n1")])
    assert p.result is RGCode.ERELO and p.actions == ()


def test_restart_stops_and_starts_in_place():
    p = request(UserOp.RESTART, "www", records=[started("www", "n2")])
    assert steps(p) == [("stop", "www", "n2"), ("start", "www", "n2")]


def test_stop_leaves_it_stopped_until_the_next_transition():
    p = request(UserOp.STOP, "www", records=[started("www", "n1")])
    assert steps(p) == [("stop", "www", "n1")] and state(p, "www") is State.STOPPED
    nxt = plan(REQ, p.membership, p.table, NodeUp("n3"))
    assert owner(nxt, "www") == "n1"


def test_disable_then_nothing_starts_it_automatically():
    p = request(UserOp.DISABLE, "www", records=[started("www", "n1")])
    assert steps(p) == [("stop", "www", "n1")] and p.actions[0].state is State.DISABLED
    assert plan(REQ, p.membership, p.table, NodeDown("n2")).placement.get("service:www") is None


def test_freeze_and_unfreeze():
    p = request(UserOp.FREEZE, "www", records=[started("www", "n1")])
    assert p.table["service:www"].frozen and [a.kind for a in p.actions] == [ActionKind.FREEZE]
    down = plan(REQ, p.membership, p.table, NodeDown("n1"))
    assert down.placement["service:www"] == "n1"  # frozen: not failed over
    thawed = plan(REQ, down.membership, down.table, UserRequest(UserOp.UNFREEZE, "www"))
    assert [a.kind for a in thawed.actions][:1] == [ActionKind.UNFREEZE] and owner(thawed, "www") == "n2"


def test_migrate_moves_a_vm_live():
    p = request(UserOp.MIGRATE, "vm:guest", "n2", records=[started("vm:guest", "n1")])
    assert steps(p) == [("migrate", "guest", "n2")] and p.table["vm:guest"].state is State.STARTED


@pytest.mark.parametrize(
    ("case", "op", "service", "target", "records", "kw", "code"),
    [
        ("no quorum", UserOp.ENABLE, "www", None, [], {"quorate": False}, RGCode.EQUORUM),
        ("unknown service", UserOp.ENABLE, "nope", None, [], {}, RGCode.ENOSERVICE),
        ("target offline", UserOp.ENABLE, "www", "n3", [], {"online": ("n1", "n2")}, RGCode.ENODE),
        ("target not a member", UserOp.RELOCATE, "www", "n9", [], {}, RGCode.ENODE),
        ("frozen", UserOp.RELOCATE, "www", None, [replace(started("www", "n1"), flags=Flag.FROZEN)], {},
         RGCode.EFROZEN),
        ("frozen disable", UserOp.DISABLE, "www", None, [replace(started("www", "n1"), flags=Flag.FROZEN)], {},
         RGCode.EFROZEN),
        ("failed: enable", UserOp.ENABLE, "www", None, [rec("www", State.FAILED)], {}, RGCode.FAIL),
        ("failed: relocate", UserOp.RELOCATE, "www", None, [rec("www", State.FAILED)], {}, RGCode.EINVAL),
        ("already running", UserOp.ENABLE, "www", None, [started("www", "n1")], {}, RGCode.ERUN),
        ("relocate a disabled service", UserOp.RELOCATE, "www", None, [rec("www", State.DISABLED)], {},
         RGCode.EINVAL),
        ("relocate to its owner", UserOp.RELOCATE, "www", "n1", [started("www", "n1")], {}, RGCode.ERUN),
        ("relocate exclusive to an occupied node", UserOp.RELOCATE, "big", "n1",
         [started("big", "n3"), started("www", "n1")], {}, RGCode.EDEPEND),
        ("relocate to a node running an exclusive service", UserOp.RELOCATE, "www", "n3",
         [started("big", "n3"), started("www", "n1")], {}, RGCode.EDEPEND),
        ("relocate with nowhere to go", UserOp.RELOCATE, "solo", None, [started("solo", "n1")], {}, RGCode.ERELO),
        ("enable with a missing dependency", UserOp.ENABLE, "app", None, [], {}, RGCode.EDEPEND),
        ("enable outside a restricted domain", UserOp.ENABLE, "solo", "n2", [], {}, RGCode.ENORUN),
        ("enable with the restricted domain down", UserOp.ENABLE, "solo", None, [], {"online": ("n2", "n3")},
         RGCode.ENORUN),
        ("enable exclusive with every node busy", UserOp.ENABLE, "big", None,
         [started("www", "n1"), started("solo", "n2"), started("vm:guest", "n3")], {}, RGCode.EEXCL),
        ("locked", UserOp.ENABLE, "www", None, [], {"locked": True}, RGCode.EAGAIN),
        ("freeze while recovering", UserOp.FREEZE, "www", None, [rec("www", State.RECOVERING)], {}, RGCode.EAGAIN),
        ("owner down, not fenced", UserOp.ENABLE, "www", None, [started("www", "n1")],
         {"online": ("n2", "n3"), "unclean": ("n1",)}, RGCode.EFENCE),
        ("migrate a service", UserOp.MIGRATE, "www", "n2", [started("www", "n1")], {}, RGCode.EINVAL),
        ("migrate without target", UserOp.MIGRATE, "vm:guest", None, [started("vm:guest", "n1")], {},
         RGCode.EINVAL),
        ("migrate a stopped vm", UserOp.MIGRATE, "vm:guest", "n2", [], {}, RGCode.EINVAL),
        ("migrate onto an exclusive node", UserOp.MIGRATE, "vm:guest", "n3",
         [started("vm:guest", "n1"), started("big", "n3")], {}, RGCode.EDEPEND),
        ("convalesce a stopped service", UserOp.CONVALESCE, "www", None, [], {}, RGCode.EINVAL),
        ("convalesce a service that is not partial", UserOp.CONVALESCE, "www", None, [started("www", "n1")], {},
         RGCode.ERUN),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_request_refusals(case, op, service, target, records, kw, code):
    p = request(op, service, target, records=records, **kw)
    assert p.result is code, (case, p.result, p.message)
    assert p.actions == () and p.message
    assert p.table == ServiceTable(with_rest_disabled(records))  # a refusal changes nothing


def test_migrate_to_a_node_outside_a_restricted_domain_violates_the_dependency_rule():
    config = build(domains={"d": (RESTRICTED, [("n1", None), ("n2", None)])},
                   services=[{"kind": "vm", "name": "g", "domain": "d"}])
    p = run(config, UserRequest(UserOp.MIGRATE, "vm:g", "n3"), records=[started("vm:g", "n1")])
    assert p.result is RGCode.EDEPEND


def test_relocate_of_a_stopped_service_starts_it():
    p = request(UserOp.RELOCATE, "www", "n2", records=[rec("www", State.STOPPED)])
    assert steps(p)[0] == ("start", "www", "n2")


# -- determinism and safety (Hypothesis) ------------------------------------------------------------------------
PROP = build(
    nodes=("n1", "n2", "n3", "n4"),
    domains={
        "a": (ORDERED, [("n1", 1), ("n2", 2), ("n3", None)]),
        "b": ({"restricted": 1, "nofailback": 1}, [("n3", None), ("n4", None)]),
        "c": ({"ordered": 1, "restricted": 1}, [("n2", 2), ("n4", 1)]),
    },
    services=[
        {"name": "s1", "domain": "a"},
        {"name": "s2", "domain": "b", "recovery": "relocate"},
        {"name": "s3", "domain": "c", "depend": "service:s1"},
        {"name": "s4", "exclusive": 1},
        {"name": "s5", "depend": "service:s2", "depend_mode": "soft", "max_restarts": 1},
        {"kind": "vm", "name": "v1", "domain": "a"},
        {"name": "s6", "autostart": 0, "domain": "c"},
    ],
)
NAMES = [s.id for s in PROP.services]
NODES4 = ("n1", "n2", "n3", "n4")

node_st = st.sampled_from(NODES4)
record_st = st.builds(
    lambda sid, st_, node, last, frozen, t, owned: ServiceRecord(
        sid, st_, node if st_ in (State.STARTED, State.STARTING, State.STOPPING, State.MIGRATING)
        or (st_ is State.RECOVERABLE and owned) else None,
        last_owner=last, flags=Flag.FROZEN if frozen else Flag.NONE, last_transition=t),
    st.sampled_from(NAMES),
    st.sampled_from([State.STOPPED, State.STARTED, State.DISABLED, State.FAILED, State.RECOVERING,
                     State.STARTING, State.RECOVERABLE, State.MIGRATING]),
    node_st, st.one_of(st.none(), node_st), st.booleans(), st.sampled_from([0.0, 5.0]), st.booleans(),
)
event_st = st.one_of(
    st.builds(QuorumFormed, now=st.just(50.0)),
    st.builds(QuorumLost, now=st.just(50.0)),
    st.builds(NodeDown, node_st, now=st.just(50.0)),
    st.builds(NodeUp, node_st, now=st.just(50.0)),
    st.builds(ServiceFailed, st.sampled_from(NAMES), now=st.just(50.0)),
    st.builds(StopFailed, st.sampled_from(NAMES), node_st, now=st.just(50.0)),
    st.builds(MigrateFailed, st.sampled_from(NAMES), node_st, st.sampled_from([150, 1]), now=st.just(50.0)),
    st.builds(ServiceFailed, st.sampled_from(NAMES), now=st.just(50.0), node=node_st),
    st.builds(ConfigChanged, now=st.just(50.0)),
    st.builds(UserRequest, st.sampled_from(list(UserOp)), st.sampled_from(NAMES),
              st.one_of(st.none(), node_st), now=st.just(50.0)),
)


@st.composite
def scenario(draw):
    online = draw(st.sets(node_st))
    unclean = draw(st.sets(st.sampled_from(sorted(set(NODES4) - online)))) if len(online) < 4 else set()
    records = {r.name: r for r in draw(st.lists(record_st, max_size=8))}
    m = Membership.from_config(PROP, sorted(online), unclean=sorted(unclean), quorate=draw(st.booleans()))
    return m, ServiceTable(records.values()), draw(event_st)


def _allowed_nodes(p: Plan, sid: str) -> set[str]:
    rule = catalog_of(PROP).by_id[sid]
    placer = Placer(p.membership)
    return {n for n in p.membership.online if placer.score(rule, n, ServiceRecord(sid)) is not Score.ILLEGAL}


def assert_never_on_two_nodes(before: ServiceTable, p: Plan) -> None:
    """Replay the actions: a start only for a service that runs nowhere, a relocation or migration only from
    where it runs; at the end the replayed placement is the plan's."""
    running = {sid: r.owner for sid, r in before.items() if r.active}
    for a in p.actions:
        if a.kind is ActionKind.START:
            assert a.service not in running, (a, running.get(a.service))
            running[a.service] = a.node
        elif a.kind in (ActionKind.RELOCATE, ActionKind.MIGRATE):
            assert running.get(a.service) == a.source, a
            running[a.service] = a.node
        elif a.kind is ActionKind.MARK_STARTED:
            # A failed migration (rc 150): the VM never left its source, which the record names again.
            assert isinstance(p.event, MigrateFailed) and a.code is RGCode.ERELO, a
            running[a.service] = a.node
        elif a.kind in (ActionKind.STOP, ActionKind.MARK_STOPPED, ActionKind.MARK_DISABLED, ActionKind.MARK_FAILED):
            running.pop(a.service, None)
    assert running == p.placement


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenario())
def test_same_input_same_plan_and_safety(case):
    m, table, event = case
    first = plan(PROP, m, table, event)
    assert plan(PROP, m, table, event) == first  # deterministic
    starts = {ActionKind.START, ActionKind.RELOCATE, ActionKind.MIGRATE}
    for action in first.actions:
        if action.kind in starts:
            assert first.membership.is_online(action.node), action  # never on an offline node
            if action.request in (Request.START, Request.ENABLE, Request.RELOCATE, Request.MIGRATE):
                assert action.node in _allowed_nodes(first, action.service), action  # never on an ILLEGAL node
            before = table.record(action.service)
            assert not (before.active and not first.membership.is_online(before.owner)
                        and not first.membership.is_clean(before.owner)), "started while its owner is unfenced"
            assert not before.frozen or isinstance(event, UserRequest)
    assert_never_on_two_nodes(table, first)
    if not first.membership.quorate:
        assert not any(a.kind in starts for a in first.actions)
    if isinstance(event, UserRequest) and not first.result.ok:
        assert first.actions == ()


@settings(max_examples=100, deadline=None)
@given(st.lists(event_st, min_size=1, max_size=6))
def test_event_sequences_keep_exclusivity_and_one_owner(events):
    m = Membership.from_config(PROP)
    table = ServiceTable()
    for event in events:
        p = plan(PROP, m, table, event)
        assert_never_on_two_nodes(table, p)
        m, table = p.membership, p.table
        running: dict[str, list[str]] = {}
        for sid, r in table.items():
            if r.active:
                running.setdefault(r.owner, []).append(sid)
        for node, sids in running.items():
            if "service:s4" in sids and table["service:s4"].state is State.STARTED:
                assert sids == ["service:s4"] or any(table[s].frozen for s in sids), (node, sids)


# -- the benchmark runs (timings are measured there, never asserted here) ------------------------------------------
def test_engine_benchmark_smoke(capsys):
    from bench import engine

    assert engine.main(["--small", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "node-failure replan" in out and "initial placement" in out and "failed:" not in out
    config = engine.build(engine.Shape(8, 40))
    result = plan(config, Membership.from_config(config), ServiceTable(), QuorumFormed())
    assert len(result.placement) == 40 and result.pending == ()


def test_frozen_dependent_is_left_running_when_its_dependency_stops():
    records = [started("db", "n1"), replace(started("app", "n3"), flags=Flag.FROZEN)]
    p = run(DEPS, NodeDown("n1"), records=records)
    assert owner(p, "app") == "n3" and all(a.service != "service:app" for a in p.actions)
    assert [(x.service, x.code) for x in p.pending] == [("service:app", RGCode.EFROZEN)]
    assert owner(p, "db") == "n2"


def test_locked_resource_groups_start_nothing_automatically():
    p = run(WEB, NodeDown("n1"), records=[started("www", "n1")], locked=True)
    assert steps(p) == [("mark-stopped", "www", "n1")]
    assert p.pending[0].code is RGCode.EAGAIN


def test_failure_of_an_unknown_service_is_answered_not_raised():
    assert run(WEB, ServiceFailed("nope")).result is RGCode.ENOSERVICE
    assert run(WEB, StopFailed("nope", "n1")).result is RGCode.ENOSERVICE


def test_event_descriptions():
    from rgmanager.snapshot import describe_event

    assert describe_event(NodeDown("n1")) == "node-down n1"
    assert describe_event(ServiceFailed("service:a", "script:x", 2)) == "service-fail service:a script:x subtree=2"
    assert describe_event(UserRequest(UserOp.RELOCATE, "service:a", "n2")) == "relocate service:a n2"


def test_actions_on_a_node_are_its_share_of_the_plan():
    p = run(WEB, NodeUp("n1"), online=("n2", "n3"), records=[started("www", "n2")])
    assert p.actions_on("n2") == p.actions_on("n1") == p.actions
    assert p.actions_on("n3") == ()


# -- review fixes: failure reports name their node ----------------------------------------------------------------
def test_stop_failed_after_disable_marks_failed_on_that_node():
    d = run(WEB, UserRequest(UserOp.DISABLE, "www"), records=[started("www", "n1")])
    assert state(d, "www") is State.DISABLED
    p = plan(WEB, d.membership, d.table, StopFailed("www", "n1"))
    assert steps(p) == [("mark-failed", "www", "n1")] and state(p, "www") is State.FAILED
    assert p.table["service:www"].last_owner == "n1" and "nothing was being stopped" not in p.message


def test_stop_failed_after_relocate_blames_the_source_and_stops_any_copy_on_the_target():
    r = run(WEB, UserRequest(UserOp.RELOCATE, "www", "n2"), records=[started("www", "n1")])
    assert steps(r) == [("relocate", "www", "n2")]
    p = plan(WEB, r.membership, r.table, StopFailed("www", "n1"))
    assert steps(p) == [("stop", "www", "n2"), ("mark-failed", "www", "n1")]
    assert p.table["service:www"].last_owner == "n1" and state(p, "www") is State.FAILED and p.placement == {}


def test_late_service_failure_about_an_old_owner_is_dropped():
    p = run(WEB, ServiceFailed("www", node="n1"), records=[started("www", "n2")])
    assert p.actions == () and "late report dropped" in p.message
    q = run(WEB, ServiceFailed("www", node="n2"), records=[started("www", "n2")])
    assert q.actions[0].request is Request.STOP_RECOVER


# -- dependency cycles and long chains -------------------------------------------------------------------------------
CYCLE = build(services=[{"name": "a", "depend": "service:b"}, {"name": "b", "depend": "service:a"}])


def test_dependency_cycle_is_refused_with_one_clear_reason():
    p = run(CYCLE, QuorumFormed(), records=[started("a", "n1"), started("b", "n2")])
    assert p.result is RGCode.EDEADLCK and p.actions == ()
    assert "service:a -> service:b -> service:a" in p.message
    lost = run(CYCLE, QuorumLost(), records=[started("a", "n1"), started("b", "n2")])
    assert lost.result is RGCode.SUCCESS and {a.service for a in lost.actions} == {"service:a", "service:b"}


def test_cascade_through_a_cycle_terminates():
    from rgmanager.planner import _Planner

    table = ServiceTable([started("a", "n1"), started("b", "n2")])
    planner = _Planner(catalog_of(CYCLE), membership(CYCLE), table, QuorumFormed())
    planner.stop("service:a", Request.STOP, "test")
    assert [(a.service, a.node) for a in planner.actions] == [("service:b", "n2"), ("service:a", "n1")]


def test_a_700_long_dependency_chain_stops_deepest_first():
    n = 700
    config = build(services=[{"name": "s0"}] + [{"name": f"s{i}", "depend": f"service:s{i - 1}"}
                                                 for i in range(1, n)])
    records = [started(f"s{i}", "n1") for i in range(n)]
    p = run(config, UserRequest(UserOp.DISABLE, "s0"), records=records)
    assert len(p.actions) == n and p.result is RGCode.SUCCESS
    assert p.actions[0].service == f"service:s{n - 1}" and p.actions[-1].service == "service:s0"
    assert state(p, "s0") is State.DISABLED and p.placement == {}
    q = run(config, QuorumFormed(), records=[])
    assert len(q.placement) == n


def test_transitional_hard_dependents_are_stopped_with_their_dependency():
    for st_ in (State.STARTING, State.STOPPING, State.RECOVERABLE):
        records = [started("db", "n1"), ServiceRecord("service:app", st_, "n3", last_transition=10)]
        p = run(DEPS, UserRequest(UserOp.DISABLE, "db"), records=records)
        assert steps(p)[0] == ("stop", "app", "n3"), st_
        assert "service:app" not in p.placement


# -- config changes: fencing, order, reconfiguration delta -------------------------------------------------------------
def test_removed_service_whose_owner_is_down_but_not_fenced_keeps_its_record():
    p = run(WEB, ConfigChanged(), online=("n1", "n2"), unclean=("n3",),
            records=[started("www", "n1"), started("gone", "n3")])
    assert "service:gone" in p.table and p.table["service:gone"].owner == "n3"
    assert [(x.service, x.code) for x in p.pending] == [("service:gone", RGCode.EFENCE)]
    fenced = plan(WEB, p.membership, p.table, NodeDown("n3"))
    after = plan(WEB, fenced.membership, fenced.table, ConfigChanged())
    assert "service:gone" not in after.table


def test_removed_services_are_processed_in_sorted_order():
    records = [started(name, "n2") for name in ("zeta", "mid", "alpha")]  # reverse order in the table
    p = run(WEB, ConfigChanged(), records=records)
    assert [a.service for a in p.actions if a.kind is ActionKind.STOP] == [
        "service:alpha", "service:mid", "service:zeta"]


RECONF_OLD = build(services=[
    {"name": "www", "children": '<fs name="data" device="/dev/sdb1" mountpoint="/d">'
                                '<script name="app" file="/etc/init.d/app"/></fs>'},
    {"name": "same", "children": '<script name="s" file="/etc/init.d/s"/>'},
    {"name": "moved", "children": '<script name="m" file="/etc/init.d/m"/>'},
])
RECONF_NEW = build(
    domains={"only3": (RESTRICTED, [("n3", None)])},
    services=[
        {"name": "www", "children": '<fs name="data" device="/dev/sdb1" mountpoint="/d">'
                                    '<script name="app" file="/etc/init.d/app2"/></fs>'},
        {"name": "same", "children": '<script name="s" file="/etc/init.d/s"/>'},
        {"name": "moved", "domain": "only3", "children": '<script name="m" file="/etc/init.d/m2"/>'},
        {"name": "fresh"},
    ],
)


def test_config_change_reconfigures_only_the_changed_resources_of_running_services():
    records = [started("www", "n1"), started("same", "n2"), started("moved", "n1")]
    p = run(RECONF_NEW, ConfigChanged(previous=RECONF_OLD), records=records)
    reconf = [a for a in p.actions if a.kind is ActionKind.RECONFIGURE]
    assert [(a.service, a.node, a.stop_ids, a.start_ids) for a in reconf] == [
        ("service:www", "n1", ("script:app",), ("script:app",))]  # "moved" relocates instead, "same" unchanged
    assert ("relocate", "moved", "n3") in steps(p) and owner(p, "fresh") is not None
    assert reconf[0].to_dict()["stop"] == ["script:app"] and "stop script:app" in reconf[0].describe()
    assert all(a.kind is not ActionKind.RECONFIGURE for a in run(RECONF_NEW, ConfigChanged(), records=records).actions)


# -- failback and the rgmanager lock -----------------------------------------------------------------------------------
def test_failback_is_skipped_while_resource_groups_are_locked():
    p = run(WEB, NodeUp("n1"), online=("n2", "n3"), records=[started("www", "n2")], locked=True)
    assert p.actions == () and owner(p, "www") == "n2"
    assert steps(run(WEB, NodeUp("n1"), online=("n2", "n3"), records=[started("www", "n2")])) == [
        ("relocate", "www", "n1")]


# -- __max_failures / __failure_expire_time, restree's special attributes ---------------------------------------------
FAILURES = build(services=[{"name": "s", "__max_failures": 2, "__failure_expire_time": 60, "children": (
    '<script name="app" file="/etc/init.d/app" __max_failures="1" __failure_expire_time="30"/>'
    '<script name="plain" file="/etc/init.d/plain"/>'
    '<script name="nc" file="/etc/init.d/nc" __independent_subtree="2" __max_restarts="-1" '
    '__restart_expire_time="60"/>'
)}])


def fail_sequence(config, events) -> list[Plan]:
    table, m, out = ServiceTable([started("s", "n1")]), membership(config), []
    for event in events:
        p = plan(config, m, table, event)
        out.append(p)
        table = p.table
    return out


def test_failures_below_max_failures_are_ignored_per_resource():
    plans = fail_sequence(FAILURES, [ServiceFailed("s", "script:app", now=t) for t in (10, 20, 30)])
    assert [p.actions for p in plans[:1]] == [()] and "ignored" in plans[0].message
    assert plans[1].actions[0].request is Request.STOP_RECOVER  # the 2nd within 30 s exceeds max 1
    assert plans[1].table["service:s"].failure_history("script:app") == ()
    assert plans[2].actions == ()  # counting starts again
    late = fail_sequence(FAILURES, [ServiceFailed("s", "script:app", now=t) for t in (10, 45)])
    assert late[1].actions == ()  # the failure at 10 expired at 40


def test_service_level_max_failures_applies_when_no_resource_is_named():
    plans = fail_sequence(FAILURES, [ServiceFailed("s", now=t) for t in (10, 20, 30)])
    assert [bool(p.actions) for p in plans] == [False, False, True]
    plain = fail_sequence(FAILURES, [ServiceFailed("s", "script:plain", now=10)])
    assert plain[0].actions[0].request is Request.STOP_RECOVER  # its own node has no threshold


def test_negative_max_restarts_is_ignored_as_restree_ignores_it():
    p = run(FAILURES, ServiceFailed("s", "script:nc"), records=[started("s", "n1")])
    assert [a.kind for a in p.actions] == [ActionKind.SET_PARTIAL]  # no threshold: stopped, flagged partial


NESTED = build(
    body='<resources><fs name="shared" device="/dev/sdc" mountpoint="/s" __independent_subtree="1" '
         '__max_restarts="1" __restart_expire_time="60"/></resources>',
    services=[{"name": "s", "children": '<fs ref="shared"><ip address="10.1.1.1"/></fs>'}],
)


def test_failure_inside_an_independent_subtree_recovers_that_subtree_by_restree_id():
    plans = fail_sequence(NESTED, [ServiceFailed("s", "ip:10.1.1.1", now=t) for t in (10, 20)])
    assert [(a.kind, a.resource) for a in plans[0].actions] == [(ActionKind.RECOVER_SUBTREE, "fs:shared")]
    assert plans[1].actions[0].request is Request.STOP_RECOVER  # the subtree's own threshold (1) is exceeded


# -- migration failures --------------------------------------------------------------------------------------------
def test_migrate_failure_150_keeps_the_vm_on_its_source():
    m = plan(REQ, membership(REQ), ServiceTable([started("vm:guest", "n1")]),
             UserRequest(UserOp.MIGRATE, "vm:guest", "n2"))
    assert owner(m, "guest") == "n2"
    p = plan(REQ, m.membership, m.table, MigrateFailed("vm:guest", "n1", 150))
    assert owner(p, "guest") == "n1" and p.result is RGCode.ERELO
    assert [(a.kind, a.node, a.code) for a in p.actions] == [(ActionKind.MARK_STARTED, "n1", RGCode.ERELO)]
    q = plan(REQ, m.membership, m.table, MigrateFailed("vm:guest", "n1", 1))
    assert state(q, "vm:guest") is State.FAILED and q.table["vm:guest"].last_owner == "n1"
    stale = plan(REQ, m.membership, m.table, MigrateFailed("vm:guest", "n3", 150))
    assert stale.actions == () and "late report" in stale.message


# -- records that arrive mid-recovery ------------------------------------------------------------------------------
def test_recovering_record_gets_its_recovery_policy_on_the_last_owner():
    config = recovery_conf("restart")
    p = run(config, NodeUp("n3"), records=[rec("s", State.RECOVERING, last_owner="n2")])
    assert steps(p) == [("start", "s", "n2")] and p.actions[0].request is Request.START_RECOVER
    lost_owner = run(config, NodeUp("n3"), online=("n1", "n3"), records=[rec("s", State.RECOVERING, last_owner="n2")])
    assert owner(lost_owner, "s") == "n1"
    recoverable = run(recovery_conf("relocate"), NodeUp("n3"),
                      records=[rec("s", State.RECOVERABLE, last_owner="n1")])
    assert owner(recoverable, "s") == "n2" and recoverable.actions[-1].request is Request.START_RECOVER


def test_restart_at_the_expiry_boundary_is_forgotten():
    from rgmanager.recovery import live_restarts

    assert live_restarts((10.0,), 60, 70.0) == ()  # now - t == expire: forgotten
    assert live_restarts((10.0,), 60, 69.9) == (10.0,)
    plans = fail_times(recovery_conf("restart", 1, "60"), [10, 70])
    assert steps(plans[1])[-1] == ("start", "s", "n1")  # not a second restart inside the window
    assert plans[1].table["service:s"].restarts == (70,)


def test_membership_with_node_keeps_node_id_order():
    m = Membership((NodeState("n1", 1), NodeState("n3", 3)))
    assert [n.name for n in m.with_node("n2", online=True, node_id=2).nodes] == ["n1", "n2", "n3"]
    assert [n.name for n in m.with_node("n9", online=False).nodes] == ["n1", "n3", "n9"]  # id unknown: last
