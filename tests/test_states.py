"""States, flags, RG codes and the transition guard (rhcs-facts §2.1, §2.2, §2.11)."""
from __future__ import annotations

import pytest

from rgmanager.states import (
    ACTIVE_STATES,
    RG_STRINGS,
    Flag,
    IllegalTransition,
    Request,
    RGCode,
    State,
    allowed,
    check_path,
    check_transition,
)


@pytest.mark.parametrize(
    ("state", "code", "label"),
    [
        (State.STOPPED, 110, "stopped"),
        (State.STARTING, 111, "starting"),
        (State.STARTED, 112, "started"),
        (State.STOPPING, 113, "stopping"),
        (State.FAILED, 114, "failed"),
        (State.UNINITIALIZED, 115, "uninitialized"),
        (State.CHECKING, 116, "checking"),
        (State.RECOVERABLE, 117, "recoverable"),
        (State.RECOVERING, 118, "recovering"),
        (State.DISABLED, 119, "disabled"),
        (State.MIGRATING, 120, "migrating"),
    ],
)
def test_state_codes_and_names(state, code, label):
    assert int(state) == code
    assert state.label == label
    assert State.parse(label) is state
    assert State.parse(code) is state
    assert State.parse(str(code)) is state


def test_state_parse_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown service state 'runing'"):
        State.parse("runing")
    with pytest.raises(ValueError):
        State.parse(121)


def test_flags_short_and_long_forms():
    both = Flag.FROZEN | Flag.PARTIAL
    assert Flag.FROZEN.short == "Z" and Flag.PARTIAL.short == "P" and both.short == "ZP"
    assert Flag.NONE.short == "" and both.words == ("frozen", "partial")
    assert Flag.parse(["frozen"]) is Flag.FROZEN
    assert Flag.parse("ZP") == both
    assert Flag.parse(["P"]) is Flag.PARTIAL
    with pytest.raises(ValueError, match="unknown service flag"):
        Flag.parse(["sleepy"])


EXPECTED_STRINGS = {
    0: "Success",
    -1: "Failure",
    -2: "Aborted; service failed",
    -3: "Service not mastered locally",
    -4: "Service does not exist",
    -5: "Operation would cause a deadlock",
    -6: "Temporary failure; try again",
    -7: "Operation violates dependency rule",
    -8: "Invalid operation for resource",
    -9: "Operation requires quorum",
    -10: "Service is already running",
    -11: "Failure: Service is frozen",
    -12: "Target node dead / nonexistent",
    -13: "Fencing operation pending; try again later",
    -14: "S/Lang Script Error",
    -15: "Service not runnable",
    -16: "Service not runnable: cannot run exclusive",
    -17: "Failed; service running on original owner",
    -18: "Permissing denied",
}


@pytest.mark.parametrize(("code", "text"), sorted(EXPECTED_STRINGS.items()))
def test_rg_error_strings_are_the_originals(code, text):
    assert RGCode(code).text == text


def test_every_code_has_a_string_and_the_typo_is_kept():
    assert set(RG_STRINGS) == set(RGCode)
    assert RGCode.EPERM.text == "Permissing denied"


@pytest.mark.parametrize(
    ("code", "status"),
    [(RGCode.SUCCESS, 0), (RGCode.ERUN, 0), (RGCode.FAIL, 255), (RGCode.EQUORUM, 247), (RGCode.EPERM, 238)],
)
def test_exit_status_is_code_mod_256_and_already_running_is_zero(code, status):
    assert code.exit_status == status


def test_already_running_counts_as_ok():
    assert RGCode.ERUN.ok and RGCode.SUCCESS.ok and not RGCode.EFROZEN.ok


def test_request_names_as_logged():
    assert Request.STOP_RECOVER.label == "stop (recovery)"
    assert Request.START_RECOVER.label == "start (recovery)"
    assert Request.START_REMOTE.label == "remote start"
    assert Request.STOP_USER.label == "user stop"
    assert Request.STOP_EXITING.label == "stop (shutdown)"
    assert {r.label for r in Request} >= {"start", "stop", "status", "disable", "restart", "relocate", "migrate",
                                          "convalesce"}


def test_active_states_are_those_holding_resources():
    assert State.STARTED in ACTIVE_STATES and State.RECOVERABLE in ACTIVE_STATES
    assert not ACTIVE_STATES & {State.STOPPED, State.DISABLED, State.FAILED, State.RECOVERING}


# -- the guard ------------------------------------------------------------------------------------------------
LEGAL = [
    (State.STOPPED, State.STARTING, Request.START),
    (State.DISABLED, State.STARTING, Request.ENABLE),
    (State.UNINITIALIZED, State.STARTING, Request.START_REMOTE),
    (State.RECOVERING, State.STARTING, Request.START_RECOVER),
    (State.STARTED, State.RECOVERABLE, Request.STOP_RECOVER),
    (State.STOPPING, State.DISABLED, Request.DISABLE),
    (State.FAILED, State.DISABLED, Request.DISABLE),
    (State.STARTED, State.MIGRATING, Request.MIGRATE),
    (State.STARTED, State.STOPPED, None),  # the owner died and was fenced: the record is just marked
    (State.DISABLED, State.FAILED, None),  # the stop a disable asked for failed (reported after the plan)
    (State.STOPPED, State.FAILED, None),
    (State.RECOVERING, State.FAILED, None),
]

ILLEGAL = [
    (State.DISABLED, State.STARTING, Request.START),  # disabled never starts automatically
    (State.UNINITIALIZED, State.STARTING, Request.START),
    (State.RECOVERING, State.STARTING, Request.START),  # only start-recover (or central enable)
    (State.FAILED, State.STARTING, Request.ENABLE),  # "#43: has failed; can not start"
    (State.FAILED, State.STOPPING, Request.STOP),  # only disable is accepted from failed
    (State.STARTED, State.DISABLED, Request.DISABLE),  # a disable stops first
    (State.STOPPED, State.STARTED, Request.START),  # starting is not skipped
    (State.STARTED, State.UNINITIALIZED, None),
    (State.STOPPED, State.DISABLED, Request.STOP),
    (State.UNINITIALIZED, State.FAILED, None),  # nothing was ever stopped
]


@pytest.mark.parametrize(("old", "new", "request_"), LEGAL)
def test_guard_accepts_legal_transitions(old, new, request_):
    assert allowed(old, new, request_)
    check_transition("service:x", old, new, request_)


@pytest.mark.parametrize(("old", "new", "request_"), ILLEGAL)
def test_guard_refuses_illegal_transitions_loudly(old, new, request_):
    assert not allowed(old, new, request_)
    with pytest.raises(IllegalTransition) as info:
        check_transition("service:x", old, new, request_)
    message = str(info.value)
    assert "service:x" in message and old.label in message and new.label in message
    assert isinstance(info.value, ValueError)


def test_check_path_walks_every_step():
    assert check_path("service:x", State.STOPPED, (State.STARTING, State.STARTED), Request.START) is State.STARTED
    with pytest.raises(IllegalTransition, match="stopping -> started"):
        check_path("service:x", State.STARTED, (State.STOPPING, State.STARTED), Request.STOP)
