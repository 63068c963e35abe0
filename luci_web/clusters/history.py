"""The configuration's history, shared by the console's History tab and the REST API: every accepted version (ricci's
history, with luci's notes of who pushed it and why), one version's document, the semantic diff of two, and
rollback: an old version's content pushed as a new version (current + 1)."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cluster_conf import ClusterConf, ConfigError
from cluster_conf.diff import ConfigDiff, diff
from luci_web.audit.log import record
from luci_web.clusters import configs
from luci_web.clusters.models import Cluster, ConfigNote, Operation

NOT_IN_HISTORY = "is not in the history"  # ricci's refusal of cluster.get_version for a version it does not hold


class VersionNotFound(Exception):
    """The nodes that answered do not hold this version (one line)."""


def versions_of(cluster: Cluster) -> tuple[list[dict[str, Any]], str, str]:
    """(versions newest first, the answering node, a note when none answered). Each version: version, hash, time (a
    datetime), author (ricci's), size, note_author / reason (luci's ConfigNote), current. Nodes are asked as
    configs.fetch asks them (the watcher's answering nodes first), and the call returns within configs.DEADLINE
    (3 s) however many nodes hang."""
    try:
        node, answer = configs.first_answer(configs.ordered_nodes(cluster), "cluster.versions", None,
                                            lambda node, answer: answer)
    except configs.NoAnswer as exc:
        return [], "", "no node gave its configuration history" + (f" ({exc.reasons[0]})" if exc.reasons else "")
    notes = {n.version: n for n in ConfigNote.objects.filter(cluster=cluster)}
    accepted = (answer.get("accepted") or {}).get("version")
    rows = []
    for entry in reversed(answer.get("versions") or []):
        version = int_or_none(entry.get("version")) or 0
        note = notes.get(version)
        rows.append({
            "version": version, "hash": str(entry.get("hash") or "")[:12],
            "time": time_of(entry.get("time")),
            "author": entry.get("author") or "", "size": entry.get("size"),
            "note_author": note.author if note else "", "reason": note.reason if note else "",
            "current": version == accepted,
        })
    return rows, node.name, ""


def time_of(value: Any) -> datetime:
    """Epoch seconds as an aware datetime (the epoch itself for anything unreadable)."""
    try:
        return datetime.fromtimestamp(float(value or 0), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return datetime.fromtimestamp(0, tz=UTC)


def int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def version_document(cluster: Cluster, version: int) -> ClusterConf:
    """One version from the nodes' history (configs.fetch_version); VersionNotFound when the nodes that answered
    do not hold it, ConfigUnavailable when none answered."""

    def accept(node: Any, answer: dict[str, Any]) -> ClusterConf:
        if answer.get("xml") is None:
            raise configs.Unusable(f"version {version} {NOT_IN_HISTORY} of this node (not UTF-8 text)")
        try:
            return ClusterConf.from_string(answer["xml"], source=f"{cluster.name} version {version}")
        except ConfigError as exc:
            raise configs.Unusable(str(exc)) from None

    try:
        return configs.first_answer(configs.ordered_nodes(cluster), "cluster.get_version", {"version": version},
                                    accept)[1]
    except configs.NoAnswer as exc:
        if exc.reasons and any(NOT_IN_HISTORY in r for r in exc.reasons):
            raise VersionNotFound(f"version {version} is not in the configuration's history") from None
        raise configs.ConfigUnavailable(f"no node has version {version} of the configuration") from None


def versions_diff(cluster: Cluster, old: int, new: int) -> ConfigDiff:
    """The semantic diff from version `old` to version `new` (secrets hidden by cluster_conf.diff)."""
    return diff(version_document(cluster, old), version_document(cluster, new))


def rollback_xml(old: ClusterConf, current_version: int) -> str:
    """The old content as version current+1: the version is set to the current one, then the editing API bumps it
    once (so the new copy beats every node's, whatever version the old content carried)."""
    old.root.set("config_version", str(current_version))
    old.bump_version()
    return old.to_string()


def prepare_rollback(cluster: Cluster, version: int, base_version: int | None) -> tuple[configs.Current, str]:
    """(current, the document to push) for rolling back to `version`. Raises ConfigConflict when the cluster moved
    on from `base_version` (None: no check), ConfigRejected when `version` is the current one or does not validate
    any more, VersionNotFound / ConfigUnavailable when no node gives it."""
    current = configs.fetch(cluster)
    if base_version is not None and current.version != base_version:
        raise configs.ConfigConflict(base_version, current.version,
                                     configs.conflict_diff(cluster, base_version, current))
    if version == current.version:
        raise configs.ConfigRejected(f"version {version} is the current version already")
    old = version_document(cluster, version)
    xml = rollback_xml(old, current.version)
    errors = [r for r in configs.errors_of(ClusterConf.from_string(xml)) if r["severity"] == "error"]
    if errors:
        raise configs.ConfigRejected(f"version {version} does not validate any more: {errors[0]['message']}")
    return current, xml


def rollback(cluster: Cluster, user: Any, version: int, base_version: int | None, reason: str = ""
             ) -> tuple[Operation, int]:
    """Start pushing version `version`'s content as a new version: (the push task, the new version number).
    A refusal is audited (config.rollback, refused) and raised (see prepare_rollback); QueueUnavailable when the
    push could not be queued (audited by configs.push)."""
    target = f"version {version}"
    try:
        current, xml = prepare_rollback(cluster, version, base_version)
    except (configs.ConfigConflict, configs.ConfigRejected, configs.ConfigUnavailable, VersionNotFound,
            ConfigError) as exc:
        record(user, "config.rollback", cluster=cluster, target=target, detail={"reason": reason},
               result="refused", message=str(exc))
        raise
    op = configs.push(cluster, user, xml, action="config.rollback", target=target, reason=reason,
                      detail={"from_version": version, "base_version": current.version})
    return op, current.version + 1
