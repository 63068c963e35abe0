"""Recovery policy (rhcs-facts §2.6), inline-restart thresholds of independent subtrees and status-failure
thresholds (§1.4, §2.5).

Pure functions over histories (tuples of times): the record keeps the history, the caller passes `now`. An entry
at time t is forgotten once `now - t >= window` (0: never forgotten).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from rgmanager.restree import ResourceNode, Threshold

POLICIES = ("restart", "relocate", "disable", "restart-disable")


class Decision(Enum):
    RESTART = "restart"  # start again on the same node (start-recover)
    RELOCATE = "relocate"  # start-recover on another node, best_target_node order
    DISABLE = "disable"


@dataclass(frozen=True, slots=True)
class Outcome:
    decision: Decision
    restarts: tuple[float, ...]  # the history to store afterwards
    reason: str


def live_restarts(times: tuple[float, ...], expire: int, now: float) -> tuple[float, ...]:
    """The restarts still counted at `now`."""
    if expire <= 0:
        return times
    return tuple(t for t in times if now - t < expire)


def decide(policy: str, max_restarts: int, expire: int, restarts: tuple[float, ...], now: float,
           service: str) -> Outcome:
    """handle_recover_req: what to do with a service that failed and was stopped for recovery.

    max_restarts=N allows N local restarts inside the window; the (N+1)th failure relocates (restart) or disables
    (restart-disable). max_restarts=0 means no limit. An unknown policy behaves as the default, restart.
    """
    if policy == "disable":
        return Outcome(Decision.DISABLE, (), "recovery policy is disable")
    if policy == "relocate":
        return Outcome(Decision.RELOCATE, (), "recovery policy is relocate")
    counted = live_restarts(restarts, expire, now)
    if max_restarts > 0 and len(counted) >= max_restarts:
        if policy == "restart-disable":
            return Outcome(Decision.DISABLE, (), f"Restart threshold for {service} exceeded; disabling")
        return Outcome(Decision.RELOCATE, (), f"Restart threshold for {service} exceeded; attempting to relocate")
    done = (*counted, now)
    limit = f" of {max_restarts}" if max_restarts > 0 else ""
    return Outcome(Decision.RESTART, done, f"local restart {len(done)}{limit} (recovery policy {policy})")


# -- independent subtrees and failure thresholds ------------------------------------------------------------
# The special attributes are parsed once, by `rgmanager.restree` (`ResourceNode.independent`, `.non_critical`,
# `.restart_threshold`, `.failure_threshold`); this module only reads those fields.
def find_node(tree: ResourceNode | None, resource: str | None) -> ResourceNode | None:
    """The node of `tree` whose id (`type:primary`) is `resource`; the first one in tree order."""
    if tree is None or resource is None:
        return None
    return next((n for n in tree.walk() if n.id == resource), None)


def subtree_root(node: ResourceNode | None) -> ResourceNode | None:
    """The independent subtree a failure of `node` is recovered in: the nearest node at or above it marked
    `__independent_subtree` (the top-level service never counts), None when there is none. A failure propagates
    up the tree until a marked node takes it, as in the original's status walk."""
    while node is not None and node.parent is not None:
        if node.independent:
            return node
        node = node.parent
    return None


def subtree_kind(root: ResourceNode | None) -> int:
    """0 none, 1 independent, 2 non-critical."""
    if root is None:
        return 0
    return 2 if root.non_critical else 1


def inline_allowed(threshold: Threshold | None, history: tuple[float, ...], now: float
                   ) -> tuple[bool, tuple[float, ...]]:
    """May the subtree be restarted inline once more (`__max_restarts` within `__restart_expire_time`)? Returns
    the verdict and the history to store. Without a threshold (or a count of 0) there is no limit and nothing to
    remember."""
    if threshold is None or threshold.count <= 0:
        return True, ()
    counted = live_restarts(history, threshold.window, now)
    if len(counted) >= threshold.count:
        return False, ()
    return True, (*counted, now)


def failure_ignored(threshold: Threshold | None, history: tuple[float, ...], now: float
                    ) -> tuple[bool, tuple[float, ...]]:
    """§2.5: "a failure is ignored while `__max_failures` has not been exceeded within `__failure_expire_time`".

    The failure at `now` is counted with the live ones; up to `count` of them are ignored, the next one is acted
    on and the history is cleared. Returns (ignored, history to store). No threshold or a count of 0: every
    failure is acted on."""
    if threshold is None or threshold.count <= 0:
        return False, ()
    counted = (*live_restarts(history, threshold.window, now), now)
    if len(counted) > threshold.count:
        return False, ()
    return True, counted
