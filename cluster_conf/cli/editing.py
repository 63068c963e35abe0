"""How ccs_tool changes a file: load, edit inside a transaction (config_version + 1), refuse new errors, save;
and how a new configuration reaches the cluster: through this node's ricci agent (`ccs_tool update`,
`cman_tool version -r`).

A file that already has errors can still be edited: only errors the edit *introduces* block the write, so an
admin can repair a broken configuration one command at a time.
"""
from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from cluster_conf.cli.common import CliError
from cluster_conf.document import ClusterConf
from cluster_conf.reports import Report

T = TypeVar("T")
STDOUT = "-"


def load(path: str) -> ClusterConf:
    """Load `path`; a missing, unreadable or malformed file raises ConfigError (a one-line report)."""
    return ClusterConf.load(path)


def error_reports(conf: ClusterConf) -> list[Report]:
    from cluster_conf import validate

    return [r for r in validate(conf, lint=False) if r.is_error]


def _key(report: Report) -> tuple[str, str]:
    # Lines and paths move when elements are added or removed; code + message identifies a finding.
    return report.code, report.message


def new_errors(before: list[Report], after: list[Report], tolerated: Collection[str] = ()) -> list[Report]:
    """Errors in `after` that were not in `before` (as many times), ignoring the `tolerated` codes."""
    remaining = Counter(_key(r) for r in before)
    fresh = []
    for report in after:
        key = _key(report)
        if remaining[key] > 0:
            remaining[key] -= 1
        elif report.code not in tolerated:
            fresh.append(report)
    return fresh


def apply_edit(
    conf: ClusterConf,
    change: Callable[[ClusterConf], T],
    *,
    tolerated: Collection[str] = (),
) -> T:
    """Run `change` in a transaction (config_version + 1) and refuse a result with new validation errors.

    The edited document is validated first; only when it has errors is the original validated too (parsed
    again from its bytes), to tell new errors from old ones. The common case validates once.
    """
    original = conf.to_bytes()
    with conf.transaction():
        result = change(conf)
    after = error_reports(conf)
    if not after:
        return result
    before = error_reports(ClusterConf.from_bytes(original, conf.source))
    fresh = new_errors(before, after, tolerated)
    if fresh:
        raise CliError(
            f"not writing {conf.source}: the change would make the configuration invalid",
            details=[r.format(conf.source) for r in fresh],
        )
    return result


def write(conf: ClusterConf, output: str | None) -> None:
    """Save atomically where it was loaded from (or to `output`), keeping `.old`; `-` writes to stdout."""
    if output == STDOUT:
        sys.stdout.write(conf.to_string())
        return
    target = output or conf.source
    try:
        conf.save(target)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None


def edit_file(
    path: str,
    output: str | None,
    change: Callable[[ClusterConf], T],
    *,
    tolerated: Collection[str] = (),
) -> T:
    conf = load(path)
    result = apply_edit(conf, change, tolerated=tolerated)
    write(conf, output)
    return result


# -- pushing through the local ricci agent (ccs_tool update, cman_tool version -r) ---------------------------
# The agent is a separate package (ricci_agent, paramiko); it is imported only here, lazily, when a command
# actually talks to it, so cluster_conf itself never depends on it (docs/architecture.md).
AGENT_SETTINGS = "etc/ricci/ricci.json"  # {"node_name", "address", "port"}: where this node's agent listens
OK_OUTCOMES = frozenset({"updated", "already"})


@dataclass(frozen=True, slots=True)
class LocalAgent:
    """This node's agent, as `$CLUSTER_ROOT/etc/ricci/ricci.json` describes it (read by ricci_agent.client)."""

    root: str
    node_name: str
    address: str
    port: int

    @property
    def where(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True, slots=True)
class PushResult:
    """What the agent did with a pushed configuration: versions before and after, and each node's outcome."""

    old_version: int | None
    new_version: int
    nodes: dict[str, tuple[str, str]]  # node name → (outcome, message)

    @property
    def failed(self) -> dict[str, tuple[str, str]]:
        return {name: o for name, o in self.nodes.items() if o[0] not in OK_OUTCOMES}


class AgentRefusal(CliError):
    """The agent answered with an error (`code` from docs/ricci-protocol.md); `details` as it sent them."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.agent_details = details or {}


def cluster_root(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    return env.get("CLUSTER_ROOT") or "/"


def local_agent(root: str) -> LocalAgent | None:
    """This node's agent (ricci_agent.client.AgentSettings), None when the node has none (no ricci.json)."""
    if not os.path.exists(os.path.join(root, AGENT_SETTINGS)):
        return None
    from ricci_agent.client import AgentSettings, RicciError

    try:
        settings = AgentSettings.load(root)
    except RicciError as exc:
        raise CliError(f"cannot use this node's agent settings: {exc.message}") from None
    return LocalAgent(root, settings.node_name, settings.address, settings.port)


def _call_agent(agent: LocalAgent, function: str, args: dict[str, Any], *, timeout: float | None = None
                ) -> dict[str, Any]:
    """One request to the local agent; no answer is a CliError naming the agent, an error reply AgentRefusal.
    `timeout` defaults to the client library's: its long request timeout for an update that the agent stages and
    commits on every peer before it answers (ricci_agent.client.LONG_FUNCTIONS), else the short one."""
    from ricci_agent.client import RicciClient
    from ricci_agent.protocol import NO_ANSWER, RicciError

    try:
        with RicciClient.for_root(agent.root) as client:
            return client.call(agent.address, agent.port, function, args, timeout=timeout)
    except RicciError as exc:
        if exc.code in NO_ANSWER:
            raise CliError(
                f"cannot reach the local ricci agent at {agent.where}: {exc.message}; is 'ricci serve' running?"
            ) from None
        raise AgentRefusal(exc.code, exc.message, exc.details) from None


def agent_request(agent: LocalAgent, function: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    """A short request to the local agent (hello, cluster.versions, ...)."""
    return _call_agent(agent, function, args or {})


def push_config(agent: LocalAgent, conf: ClusterConf, *, propagate: bool) -> PushResult:
    """Hand `conf` to the local agent (cluster.set_config); with `propagate`, the agent passes it on to every
    node of the cluster in two phases. Refusals come back as AgentRefusal with the agent's code and details."""
    from ricci_agent.protocol import xml_fields

    reply = _call_agent(agent, "cluster.set_config", {**xml_fields(conf.to_bytes()), "propagate": propagate})
    nodes: dict[str, tuple[str, str]] = {}
    for name, outcome in (reply.get("nodes") or {}).items():
        if isinstance(outcome, dict):
            nodes[str(name)] = (str(outcome.get("outcome", "")), str(outcome.get("message", "")))
    old = reply.get("old_version")
    new = reply.get("new_version")
    return PushResult(old if isinstance(old, int) else None, new if isinstance(new, int) else 0, nodes)


OUTCOME_WORDS = {
    "updated": "updated",
    "already": "already had it",
    "unreachable": "unreachable",
    "refused": "refused",
}


def outcome_lines(result: PushResult) -> list[str]:
    """`  node1: updated`, `  node3: unreachable (connection refused)`, ... in node-name order."""
    width = max((len(name) for name in result.nodes), default=0)
    lines = []
    for name in sorted(result.nodes):
        outcome, message = result.nodes[name]
        text = OUTCOME_WORDS.get(outcome, outcome)
        if message and outcome not in OK_OUTCOMES:
            text += f" ({message})"
        lines.append(f"  {name + ':':<{width + 1}} {text}")
    return lines
