"""Every configuration change made through luci: read the cluster's accepted copy, apply an edit through the
cluster_conf editing API (so unknown XML is kept and config_version goes up exactly once), validate, refuse a
change based on an older version than the cluster's (optimistic concurrency: the caller sees the diff), then push
it as a Celery task (luci_web.clusters.tasks.push_config) whose per-node progress the page shows live.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar

from cluster_conf import ClusterConf, ConfigError, validate
from cluster_conf.diff import diff
from luci_web.audit.log import record
from luci_web.clusters import gateway, operations
from luci_web.clusters.models import Cluster, Operation
from ricci_agent.protocol import TIMEOUT, RicciError

log = logging.getLogger("luci.configs")

T = TypeVar("T")

DEADLINE = 3.0  # seconds one question to "any node" (fetch, fetch_version, the History and Events reads) may take
HEDGE = 0.5  # seconds before the next node is asked as well, while the ones asked have not answered yet
WIDTH = 3  # nodes asked at once at most
CONTROL_CHARACTERS = "a value contains a control character (such as U+0001) that XML cannot hold; remove it"


class ConfigUnavailable(Exception):
    """No node answered with its configuration (one line)."""


class QueueUnavailable(ConfigUnavailable):
    """The task could not be queued (the broker, e.g. Redis, is not reachable): the operation is failed and
    audited already; the message is one line without the broker's address."""


class Unusable(Exception):
    """A node answered, but not with something the caller can use (one line: why)."""


class NoAnswer(Exception):
    """No node gave a usable answer within the deadline; `reasons`: one line per node, best node first."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__(reasons[0] if reasons else "no node to ask")
        self.reasons = reasons


# -- asking "any node" -----------------------------------------------------------------------------------------
def node_rank(status: dict[str, Any] | None) -> Callable[[Any], int]:
    """A sort key for Node rows from the watcher's last status: members seen online with their agent answering
    first, then nodes whose agent answered (offline members), then nodes the status does not name, then nodes
    seen unknown or unreachable (a hung node is asked last)."""
    members = {m.get("name"): m for m in (status or {}).get("members") or []}
    unreachable = set((status or {}).get("unreachable") or [])

    def rank(node: Any) -> int:
        member = members.get(node.name)
        if node.name in unreachable:
            return 3
        if member is None:
            return 2
        if member.get("state") == "online" and member.get("agent"):
            return 0
        if member.get("agent"):
            return 1
        return 3

    return rank


def ordered_nodes(cluster: Cluster) -> list[Any]:
    """The cluster's nodes in the order to ask them (node_rank; luci's order within a rank)."""
    return sorted(cluster.nodes.all(), key=node_rank(cluster.status))


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    """The threads that wait on nodes (created on first use: after a web worker forked)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="luci-ask")
        return _pool


def first_answer(nodes: Iterable[Any], function: str, args: dict[str, Any] | None,
                 accept: Callable[[Any, dict[str, Any]], T], *, deadline: float = DEADLINE, hedge: float = HEDGE,
                 width: int = WIDTH) -> tuple[Any, T]:
    """(node, accept(node, answer)) for the first node whose answer `accept` takes (it raises Unusable to refuse
    one), asking `nodes` in the order given: the first at once, the next one as soon as an asked node failed or
    every `hedge` seconds while none answered, at most `width` waiting at once.

    Bound: the whole call returns within `deadline` seconds (3 s by default), however many nodes hang: each
    request's timeout is what is left of the deadline, and requests still waiting then are abandoned (their
    threads end within the client's connect bound plus that timeout). NoAnswer lists why each node gave nothing.
    The threads only talk to nodes; `accept` runs in the caller's thread."""
    asked = list(nodes)
    queue = list(asked)
    end = time.monotonic() + deadline
    reasons: dict[str, str] = {}
    order = {id(n): i for i, n in enumerate(asked)}

    def ask(node: Any) -> dict[str, Any]:
        left = end - time.monotonic()
        if left <= 0.05:
            raise RicciError(TIMEOUT, f"{node.name}: not asked within {deadline:g} s")
        return gateway.call(node, function, args, timeout=left)

    waiting: dict[Future[dict[str, Any]], Any] = {}
    next_launch = time.monotonic()
    while queue or waiting:
        now = time.monotonic()
        if now >= end:
            break
        if queue and len(waiting) < width and (not waiting or now >= next_launch):
            node = queue.pop(0)
            waiting[_executor().submit(ask, node)] = node
            next_launch = now + hedge
            continue
        until = end if not queue or len(waiting) >= width else min(end, next_launch)
        done, _ = wait(list(waiting), timeout=max(0.0, until - now), return_when=FIRST_COMPLETED)
        for future in sorted(done, key=lambda f: order[id(waiting[f])]):
            node = waiting.pop(future)
            try:
                answer = future.result()
                return node, accept(node, answer)
            except RicciError as exc:
                reasons[node.name] = exc.message
            except Unusable as exc:
                reasons[node.name] = str(exc)
            except Exception as exc:  # a bug must not hide the other nodes' answers
                log.warning("asking %s for %s failed: %s", node.name, function, type(exc).__name__)
                reasons[node.name] = f"internal error ({type(exc).__name__})"
        if done:
            next_launch = time.monotonic()  # a node gave nothing usable: ask the next one now
    for node in [*waiting.values(), *queue]:
        reasons.setdefault(node.name, f"no answer within {deadline:g} s")
    raise NoAnswer([f"{n.name}: {reasons[n.name]}" for n in asked if n.name in reasons])


class ConfigConflict(Exception):
    """The change was made on version `base` but the cluster runs `current`; `diff_text` shows what moved."""

    def __init__(self, base: int, current: int, diff_text: str) -> None:
        super().__init__(f"the configuration moved on from version {base} to {current} since you loaded it; "
                         "nothing was changed")
        self.base, self.current, self.diff_text = base, current, diff_text


class ConfigRejected(Exception):
    """The edit itself was refused (one line; `in_edit`: the edit raised it, e.g. no such domain) or the result
    does not validate (`reports`, errors first)."""

    def __init__(self, message: str, reports: list[dict[str, Any]] | None = None, *, in_edit: bool = False) -> None:
        super().__init__(message)
        self.reports = reports or []
        self.in_edit = in_edit


@dataclass(frozen=True)
class Current:
    conf: ClusterConf
    version: int
    xml: str
    node: str  # the node that answered


def fetch(cluster: Cluster) -> Current:
    """The accepted configuration, from the first node that answers: nodes the watcher last saw answering are
    asked first (ordered_nodes), and the call returns within DEADLINE (3 s) however many nodes hang
    (first_answer); ConfigUnavailable otherwise."""

    def accept(node: Any, answer: dict[str, Any]) -> Current:
        xml = answer.get("xml")
        if xml is None:
            raise Unusable("configuration is not UTF-8 text")
        try:
            conf = ClusterConf.from_string(xml, source=f"{cluster.name}@{node.name}")
        except ConfigError as exc:
            raise Unusable(str(exc)) from None
        try:
            version = int(answer.get("version") or conf.config_version or 0)
        except (TypeError, ValueError):
            raise Unusable(f"version {str(answer.get('version'))[:20]!r} is not a number") from None
        return Current(conf, version, xml, node.name)

    try:
        return first_answer(ordered_nodes(cluster), "cluster.get_config", None, accept)[1]
    except NoAnswer as exc:
        raise ConfigUnavailable("no node gave its configuration" + (f" ({exc.reasons[0]})" if exc.reasons else "")
                                ) from None


def fetch_version(cluster: Cluster, version: int) -> ClusterConf:
    """One version from the history of the first node that has it (nodes in ordered_nodes' order; the call
    returns within DEADLINE, 3 s, however many nodes hang)."""

    def accept(node: Any, answer: dict[str, Any]) -> ClusterConf:
        if answer.get("xml") is None:
            raise Unusable(f"no version {version}")
        return ClusterConf.from_string(answer["xml"], source=f"{cluster.name} version {version}")

    try:
        return first_answer(ordered_nodes(cluster), "cluster.get_version", {"version": version}, accept)[1]
    except NoAnswer:
        raise ConfigUnavailable(f"no node has version {version} of the configuration") from None


def conflict_diff(cluster: Cluster, base: int, current: Current) -> str:
    try:
        old = fetch_version(cluster, base)
    except (ConfigUnavailable, ConfigError):
        return f"(version {base} is not in the nodes' history)"
    return diff(old, current.conf).to_text() or "(no semantic difference)"


def errors_of(conf: ClusterConf) -> list[dict[str, Any]]:
    """Validation reports (errors first, then warnings) as dicts: code, severity, message, line, path, hint."""
    reports = validate(conf)
    reports.sort(key=lambda r: (not r.is_error, r.line or 0))
    return [r.to_dict() for r in reports]


def prepare(cluster: Cluster, base_version: int | None, edit: Callable[[ClusterConf], None]) -> tuple[Current, str]:
    """Apply `edit` to the current configuration: (current, new XML). Raises ConfigConflict when the cluster has
    moved on from `base_version` (None: no check), ConfigRejected when the edit fails or validation finds errors."""
    current = fetch(cluster)
    if base_version is not None and current.version != base_version:
        raise ConfigConflict(base_version, current.version, conflict_diff(cluster, base_version, current))
    conf = current.conf
    try:
        with conf.transaction():
            edit(conf)
    except ConfigError as exc:
        raise ConfigRejected(exc.report.message, [exc.report.to_dict()], in_edit=True) from None
    except ValueError as exc:  # lxml refuses a string XML cannot hold (control characters), e.g. in element.set()
        if "XML compatible" in str(exc) or "control char" in str(exc):
            raise ConfigRejected(CONTROL_CHARACTERS) from None
        raise ConfigRejected("a value was refused: it cannot be written into cluster.conf") from None
    reports = errors_of(conf)
    if any(r["severity"] == "error" for r in reports):
        raise ConfigRejected("the change does not validate", reports)
    return current, conf.to_string()


def change(cluster: Cluster, user: Any, base_version: int | None, edit: Callable[[ClusterConf], None], *,
           action: str, target: str = "", reason: str = "", detail: dict[str, Any] | None = None) -> Operation:
    """Prepare the change and start pushing it; refusals are audited and raised (see prepare)."""
    try:
        _, xml = prepare(cluster, base_version, edit)
    except (ConfigConflict, ConfigRejected, ConfigUnavailable) as exc:
        record(user, action, cluster=cluster, target=target, detail=detail, result="refused", message=str(exc))
        raise
    return push(cluster, user, xml, action=action, target=target, reason=reason, detail=detail)


def push(cluster: Cluster, user: Any, xml: str, *, action: str, target: str = "", reason: str = "",
         detail: dict[str, Any] | None = None, right: str = "config") -> Operation:
    """Start the push task for a prepared document; the task re-checks `right` (config; membership for adding
    and deleting nodes, as the original's "Can Add and Delete Nodes") and audits the result."""
    from luci_web.clusters.tasks import enqueue, push_config

    op = operations.start(user, "push_config", cluster, [n.name for n in cluster.nodes.all()])
    enqueue(op, user, action, push_config, str(op.id), xml, {"action": action, "target": target, "reason": reason,
                                                             "detail": detail or {}, "right": right},
            target=target, detail=detail)
    return op
