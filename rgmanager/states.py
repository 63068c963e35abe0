"""Service states, flags, RG error codes and request names of rgmanager, plus the transition guard.

Dependency-free on purpose (the supervisor `states.py` shape): the planner, the daemon, clustat and clusvcadm all
read these constants. The numbers and strings are the original ones (rhcs-facts §2.1, §2.11), including the
"Permissing denied" typo, because clustat/clusvcadm output and exit statuses are part of the interface.
"""
from __future__ import annotations

from enum import Enum, IntEnum, IntFlag


class State(IntEnum):
    """A service record's state (rg_state_t.rs_state)."""

    STOPPED = 110
    STARTING = 111
    STARTED = 112
    STOPPING = 113
    FAILED = 114
    UNINITIALIZED = 115
    CHECKING = 116
    RECOVERABLE = 117  # stopping for recovery; clustat shows the owner in parentheses
    RECOVERING = 118  # stopped cleanly after a failure, waiting for the recovery policy
    DISABLED = 119
    MIGRATING = 120

    @property
    def label(self) -> str:
        """The state string clustat prints ("started", "recoverable", ...)."""
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int) -> State:
        """From a code (112, "112") or a name ("started", any case); ValueError otherwise."""
        text = str(value).strip()
        if text.lstrip("-").isdigit():
            return cls(int(text))
        try:
            return cls[text.upper()]
        except KeyError:
            names = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown service state {value!r} (one of: {names})") from None


#: States in which a service may hold resources on its owner: exclusivity and "is it running" read these.
ACTIVE_STATES = frozenset({State.STARTING, State.STARTED, State.STOPPING, State.RECOVERABLE, State.MIGRATING})
#: States the automatic evaluation never starts from (§2.3.4).
NO_AUTOSTART_STATES = frozenset({State.DISABLED, State.FAILED, State.RECOVERING, State.UNINITIALIZED, State.CHECKING})


class Flag(IntFlag):
    """rs_flags: frozen (Z) and partial (P)."""

    NONE = 0
    FROZEN = 1
    PARTIAL = 2

    @property
    def short(self) -> str:
        """clustat's short form: "Z", "P", "ZP" or ""."""
        return "".join(code for flag, code in ((Flag.FROZEN, "Z"), (Flag.PARTIAL, "P")) if flag in self)

    @property
    def words(self) -> tuple[str, ...]:
        return tuple(word for flag, word in ((Flag.FROZEN, "frozen"), (Flag.PARTIAL, "partial")) if flag in self)

    @classmethod
    def parse(cls, items: str | list[str] | tuple[str, ...]) -> Flag:
        """From "frozen"/"partial"/"Z"/"P" items, or a short string such as "ZP"; ValueError otherwise."""
        if isinstance(items, str):
            items = [items] if items.lower() in _FLAG_WORDS else list(items)
        result = cls.NONE
        for item in items:
            key = item.strip().lower()
            if key not in _FLAG_WORDS:
                raise ValueError(f"unknown service flag {item!r} (frozen, partial, Z or P)")
            result |= _FLAG_WORDS[key]
        return result


_FLAG_WORDS = {"frozen": Flag.FROZEN, "z": Flag.FROZEN, "partial": Flag.PARTIAL, "p": Flag.PARTIAL}


class RGCode(IntEnum):
    """The RG_E* return codes clusvcadm prints (§2.11)."""

    SUCCESS = 0
    FAIL = -1
    EABORT = -2
    EFORWARD = -3
    ENOSERVICE = -4
    EDEADLCK = -5
    EAGAIN = -6
    EDEPEND = -7
    EINVAL = -8
    EQUORUM = -9
    ERUN = -10
    EFROZEN = -11
    ENODE = -12
    EFENCE = -13
    ESCRIPT = -14
    ENORUN = -15
    EEXCL = -16
    ERELO = -17
    EPERM = -18

    @property
    def text(self) -> str:
        """The exact string clusvcadm appends after "..."."""
        return RG_STRINGS[self]

    @property
    def exit_status(self) -> int:
        """clusvcadm's exit status: 0 for success and for "already running" (-10), else the code mod 256."""
        return 0 if self in (RGCode.SUCCESS, RGCode.ERUN) else self.value % 256

    @property
    def ok(self) -> bool:
        """True when the request's goal holds afterwards (success, or -10: it was already running)."""
        return self in (RGCode.SUCCESS, RGCode.ERUN)


RG_STRINGS: dict[RGCode, str] = {
    RGCode.SUCCESS: "Success",
    RGCode.FAIL: "Failure",
    RGCode.EABORT: "Aborted; service failed",
    RGCode.EFORWARD: "Service not mastered locally",
    RGCode.ENOSERVICE: "Service does not exist",
    RGCode.EDEADLCK: "Operation would cause a deadlock",
    RGCode.EAGAIN: "Temporary failure; try again",
    RGCode.EDEPEND: "Operation violates dependency rule",
    RGCode.EINVAL: "Invalid operation for resource",
    RGCode.EQUORUM: "Operation requires quorum",
    RGCode.ERUN: "Service is already running",
    RGCode.EFROZEN: "Failure: Service is frozen",
    RGCode.ENODE: "Target node dead / nonexistent",
    RGCode.EFENCE: "Fencing operation pending; try again later",
    RGCode.ESCRIPT: "S/Lang Script Error",
    RGCode.ENORUN: "Service not runnable",
    RGCode.EEXCL: "Service not runnable: cannot run exclusive",
    RGCode.ERELO: "Failed; service running on original owner",
    RGCode.EPERM: "Permissing denied",  # sic: the original string, kept for compatibility
}


class Request(Enum):
    """Request names as rgmanager logs them (rg_req_strings)."""

    START = "start"
    STOP = "stop"
    STATUS = "status"
    DISABLE = "disable"
    STOP_RECOVER = "stop (recovery)"
    START_RECOVER = "start (recovery)"
    RESTART = "restart"
    INIT = "initialize"
    ENABLE = "enable"
    RELOCATE = "relocate"
    CONDSTOP = "conditional stop"
    CONDSTART = "conditional start"
    START_REMOTE = "remote start"
    STOP_USER = "user stop"
    STOP_EXITING = "stop (shutdown)"
    MIGRATE = "migrate"
    FREEZE = "freeze"
    UNFREEZE = "unfreeze"
    CONVALESCE = "convalesce"

    @property
    def label(self) -> str:
        return self.value


# -- the transition guard -----------------------------------------------------------------------------------
class IllegalTransition(ValueError):
    """A state change the state machine does not allow: a bug in the caller, never a user error."""

    def __init__(self, service: str, old: State, new: State, request: Request | None) -> None:
        via = f" (request: {request.label})" if request is not None else ""
        super().__init__(f"illegal state transition for {service}: {old.label} -> {new.label}{via}")
        self.service, self.old, self.new, self.request = service, old, new, request


S = State
R = Request
_STARTS = frozenset({R.START, R.ENABLE, R.START_REMOTE, R.START_RECOVER, R.RESTART, R.RELOCATE, R.CONVALESCE})
_PRIVILEGED_STARTS = frozenset({R.ENABLE, R.START_REMOTE, R.START_RECOVER})
_STOPS = frozenset(
    {R.STOP, R.STOP_USER, R.DISABLE, R.RESTART, R.RELOCATE, R.STOP_EXITING, R.CONDSTOP, R.MIGRATE, R.INIT}
)
_ANY: frozenset[Request] | None = None  # any request, or an internal record update (request None)
_RUNNING = (S.STARTING, S.STARTED, S.STOPPING, S.RECOVERABLE, S.MIGRATING)

#: (old, new) -> the requests allowed to make that change (None: any, including an internal update).
TRANSITIONS: dict[tuple[State, State], frozenset[Request] | None] = {
    # starting (§2.2 Start): from stopped or recoverable; disabled/uninitialized only for enable, remote start or
    # start-recover; recovering only for start-recover (or enable: placement is central here, as in central mode)
    (S.STOPPED, S.STARTING): _STARTS,
    (S.RECOVERABLE, S.STARTING): _STARTS,
    (S.DISABLED, S.STARTING): _PRIVILEGED_STARTS,
    (S.UNINITIALIZED, S.STARTING): _PRIVILEGED_STARTS,
    (S.RECOVERING, S.STARTING): frozenset({R.START_RECOVER, R.ENABLE, R.RELOCATE, R.RESTART}),
    (S.STARTING, S.STARTED): _ANY,
    (S.STARTING, S.STOPPING): _ANY,  # a failed start is stopped again
    (S.STARTING, S.RECOVERABLE): frozenset({R.STOP_RECOVER}),
    # stopping (§2.2 Stop, Disable)
    (S.STARTED, S.STOPPING): _STOPS,
    (S.STARTED, S.RECOVERABLE): frozenset({R.STOP_RECOVER}),
    (S.STOPPING, S.STOPPED): _ANY,
    (S.STOPPING, S.DISABLED): frozenset({R.DISABLE}),
    (S.RECOVERABLE, S.RECOVERING): _ANY,
    (S.FAILED, S.STOPPING): frozenset({R.DISABLE}),
    (S.RECOVERING, S.STOPPED): _ANY,  # recovery found no node: left stopped for the next transition
    # disable is accepted from failed, stopped, disabled and uninitialized, and ends a recovery (policy disable)
    (S.STOPPED, S.DISABLED): frozenset({R.DISABLE, R.INIT}),
    (S.FAILED, S.DISABLED): frozenset({R.DISABLE}),
    (S.UNINITIALIZED, S.DISABLED): frozenset({R.DISABLE, R.INIT}),
    (S.RECOVERING, S.DISABLED): frozenset({R.DISABLE}),
    (S.DISABLED, S.DISABLED): frozenset({R.DISABLE}),
    # initialisation: an uninitialised record becomes stopped; quorum re-formation resets disabled records
    (S.UNINITIALIZED, S.STOPPED): _ANY,
    (S.DISABLED, S.STOPPED): frozenset({R.INIT}),
    (S.STOPPED, S.STOPPED): _ANY,
    # migration keeps the state at started; "migrating" is accepted as a transitional state
    (S.STARTED, S.STARTED): frozenset({R.MIGRATE}),
    (S.STARTED, S.MIGRATING): frozenset({R.MIGRATE}),
    (S.MIGRATING, S.STARTED): _ANY,
}
# A record whose owner died (and was fenced) is just marked stopped; a failed stop marks it failed. A stop failure
# is reported after the plan that asked for the stop already recorded its end (stopped, disabled, recovering), so
# those records can become failed too (an internal update: no request makes it).
for _old in (*_RUNNING, S.STOPPED, S.DISABLED, S.RECOVERING, S.FAILED):
    if _old in _RUNNING:
        TRANSITIONS.setdefault((_old, S.STOPPED), _ANY)
    TRANSITIONS.setdefault((_old, S.FAILED), _ANY)
del _old


def allowed(old: State, new: State, request: Request | None = None) -> bool:
    if (old, new) not in TRANSITIONS:
        return False
    requests = TRANSITIONS[(old, new)]
    return requests is None or (request is not None and request in requests)


def check_transition(service: str, old: State, new: State, request: Request | None = None) -> None:
    """Raise IllegalTransition unless `old -> new` is allowed for `request` (None: an internal record update)."""
    if not allowed(old, new, request):
        raise IllegalTransition(service, old, new, request)


def check_path(service: str, old: State, path: tuple[State, ...], request: Request | None = None) -> State:
    """Check every step of `old -> path[0] -> path[1] ...`; return the final state."""
    for new in path:
        check_transition(service, old, new, request)
        old = new
    return old
