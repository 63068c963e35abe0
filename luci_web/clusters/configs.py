"""Every configuration change made through luci: read the cluster's accepted copy, apply an edit through the
cluster_conf editing API (so unknown XML is kept and config_version goes up exactly once), validate, refuse a
change based on an older version than the cluster's (optimistic concurrency: the caller sees the diff), then push
it as a Celery task (luci_web.clusters.tasks.push_config) whose per-node progress the page shows live.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cluster_conf import ClusterConf, ConfigError, validate
from cluster_conf.diff import diff
from luci_web.audit.log import record
from luci_web.clusters import gateway, operations
from luci_web.clusters.models import Cluster, Operation
from ricci_agent.protocol import RicciError


class ConfigUnavailable(Exception):
    """No node answered with its configuration (one line)."""


class ConfigConflict(Exception):
    """The change was made on version `base` but the cluster runs `current`; `diff_text` shows what moved."""

    def __init__(self, base: int, current: int, diff_text: str) -> None:
        super().__init__(f"the configuration moved on from version {base} to {current} since you loaded it; "
                         "nothing was changed")
        self.base, self.current, self.diff_text = base, current, diff_text


class ConfigRejected(Exception):
    """The edit itself was refused (one line) or the result does not validate (`reports`, errors first)."""

    def __init__(self, message: str, reports: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.reports = reports or []


@dataclass(frozen=True)
class Current:
    conf: ClusterConf
    version: int
    xml: str
    node: str  # the node that answered


def fetch(cluster: Cluster) -> Current:
    """The accepted configuration, from the first node that answers (nodes in luci's order)."""
    reasons = []
    for node in cluster.nodes.all():
        try:
            answer = gateway.call(node, "cluster.get_config")
        except RicciError as exc:
            reasons.append(f"{node.name}: {exc.message}")
            continue
        xml = answer.get("xml")
        if xml is None:
            reasons.append(f"{node.name}: configuration is not UTF-8 text")
            continue
        try:
            conf = ClusterConf.from_string(xml, source=f"{cluster.name}@{node.name}")
        except ConfigError as exc:
            reasons.append(f"{node.name}: {exc}")
            continue
        return Current(conf, int(answer.get("version") or conf.config_version or 0), xml, node.name)
    raise ConfigUnavailable("no node gave its configuration" + (f" ({reasons[0]})" if reasons else ""))


def fetch_version(cluster: Cluster, version: int) -> ClusterConf:
    """One version from the history of the first node that has it."""
    for node in cluster.nodes.all():
        try:
            answer = gateway.call(node, "cluster.get_version", {"version": version})
        except RicciError:
            continue
        if answer.get("xml") is not None:
            return ClusterConf.from_string(answer["xml"], source=f"{cluster.name} version {version}")
    raise ConfigUnavailable(f"no node has version {version} of the configuration")


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
        raise ConfigRejected(exc.report.message, [exc.report.to_dict()]) from None
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
    from luci_web.clusters.tasks import push_config

    op = operations.start(user, "push_config", cluster, [n.name for n in cluster.nodes.all()])
    push_config.delay(str(op.id), xml, {"action": action, "target": target, "reason": reason,
                                        "detail": detail or {}, "right": right})
    return op
