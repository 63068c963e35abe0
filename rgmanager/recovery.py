"""Recovery policy (rhcs-facts §2.6) and inline-restart thresholds of independent subtrees (§1.4, §2.5).

Pure functions over restart histories (tuples of times): the record keeps the history, the caller passes `now`.
A restart at time t is forgotten once `now - t >= restart_expire_time` (0: never forgotten).
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum

from cluster_conf.model import ClusterView, Resource, Service
from cluster_conf.schema import is_true, parse_time

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


# -- independent subtrees ------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SubtreeRule:
    """What the config says about one failed resource: its subtree kind and the inline-restart threshold."""

    kind: int  # 0 none, 1 independent, 2 non-critical
    max_restarts: int | None  # both set, or both None (the attributes only work together)
    expire: int | None


NO_SUBTREE = SubtreeRule(0, None, None)


def subtree_kind(value: str | None) -> int:
    """`__independent_subtree`: "1"/"yes" -> 1, "2"/"non-critical" -> 2, anything else 0."""
    text = (value or "").strip().lower()
    if text in ("2", "non-critical"):
        return 2
    return 1 if is_true(text) else 0


def resource_id(resource: Resource) -> str:
    return f"{resource.type}:{resource.key or ''}"


def _walk(children: tuple[Resource, ...], ancestors: tuple[Resource, ...]) -> Iterator[tuple[Resource, tuple]]:
    for child in children:
        yield child, ancestors
        yield from _walk(child.children, (*ancestors, child))


def _attr(resource: Resource, globals_: dict[tuple[str, str], Resource], name: str) -> str | None:
    if name in resource.attrs:
        return resource.attrs[name]
    definition = globals_.get((resource.type, resource.key or ""))
    return definition.attrs.get(name) if definition is not None else None


def subtree_rule(view: ClusterView, service: Service, resource: str) -> SubtreeRule:
    """Find `resource` (`type:key`) in the service's tree; its kind comes from the nearest node at or above it
    carrying `__independent_subtree` (top-level services ignore it), its threshold from that same node."""
    globals_ = {(r.type, r.key or ""): r for r in view.resources}
    for node, ancestors in _walk(service.children, ()):
        if resource_id(node) != resource:
            continue
        for candidate in (node, *reversed(ancestors)):
            kind = subtree_kind(_attr(candidate, globals_, "__independent_subtree"))
            if kind:
                return SubtreeRule(kind, *_threshold(candidate, globals_))
        return NO_SUBTREE
    return NO_SUBTREE


def _threshold(node: Resource, globals_: dict[tuple[str, str], Resource]) -> tuple[int | None, int | None]:
    raw_max = _attr(node, globals_, "__max_restarts")
    raw_expire = _attr(node, globals_, "__restart_expire_time")
    if raw_max is None or raw_expire is None:
        return None, None
    try:
        return int(raw_max.strip()), parse_time(raw_expire)
    except ValueError:
        return None, None


def inline_allowed(rule: SubtreeRule, history: tuple[float, ...], now: float) -> tuple[bool, tuple[float, ...]]:
    """May the subtree be restarted inline once more? Returns the verdict and the history to store.
    Without a threshold there is no limit (and nothing to remember)."""
    if rule.max_restarts is None or rule.expire is None or rule.max_restarts <= 0:
        return True, ()
    counted = live_restarts(history, rule.expire, now)
    if len(counted) >= rule.max_restarts:
        return False, ()
    return True, (*counted, now)
