"""Run one operation over a service's resource tree with the real agents, in the engine's order.

- start: the start sequence (parents before children, children by type level, rhcs-facts §2.8); the first
  failure ends the run (the rest are skipped) and the result is non-zero. A failed resource marked non-critical
  (`__independent_subtree="2"`) does not end the run: its subtree is skipped and the service is partial.
- stop: the stop sequence (children before parents); every resource is stopped even after a failure, each
  failure is reported, and the result is non-zero if any stop failed.
- status: every resource's status at the requested depth, in start order; non-zero if any check failed.

Each resource prints one line: `[start] script:httpd ok: <agent message>` or
`[start] script:httpd FAILED (err_generic): <agent message>`.

Timeouts: an explicit `agent_options["timeouts"]` wins, then the resource's own `<action ... timeout=>`
children, then the type's metadata, then the agents' defaults. Timeouts are always enforced (rgmanager did so
only with `__enforce_timeouts="1"`): a hung agent must never hang the service.

The tree is duck-typed: nodes need `.type`, `.attrs` (resolved, inherited values included) and `.id`; the two
sequence functions default to `rgmanager.restree.start_sequence` / `stop_sequence`.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from cluster_conf.schema import parse_time
from rgmanager.agents.base import OCF, OCF_NAMES, Agent, Result, UnknownAgentType, agent_for, unexpected

OPS = ("start", "stop", "status")


class ResourceLike(Protocol):
    type: str
    attrs: Mapping[str, str]
    id: str


Sequence = Callable[[Any], list[Any]]


def _default_sequences() -> tuple[Sequence, Sequence]:
    from rgmanager import restree  # imported late: the runner is usable (and testable) with other trees

    return restree.start_sequence, restree.stop_sequence


def _descendant_ids(node: Any) -> set[str]:
    found: set[str] = set()
    stack = list(getattr(node, "children", ()) or ())
    while stack:
        child = stack.pop()
        found.add(child.id)
        stack.extend(getattr(child, "children", ()) or ())
    return found


def _is_non_critical(node: Any) -> bool:
    """`__independent_subtree="2"`, read from the node's field if restree gives one, else from its attrs."""
    value = getattr(node, "non_critical", None)
    if value is not None:
        return bool(value)
    return str(node.attrs.get("__independent_subtree", "")).strip() == "2"


def _outcome(result: Result) -> str:
    if result.ok:
        return f"ok: {result.message}" if result.message else "ok"
    name = OCF_NAMES.get(result.rc, f"rc {result.rc}")
    timed = ", timed out" if result.timed_out else ""
    return f"FAILED ({name}{timed}): {result.message}"


def action_timeouts(node: Any, depth: int = 0) -> dict[str, float]:
    """Timeouts from the resource's own `<action name= timeout= [depth=]/>` children (restree's `.actions`).
    A status action applies when its depth is absent, "*" or the requested depth."""
    found: dict[str, float] = {}
    for action in getattr(node, "actions", ()) or ():
        name, timeout = action.get("name"), action.get("timeout")
        if not name or not timeout:
            continue
        if name in ("status", "monitor") and action.get("depth") not in (None, "*", str(depth)):
            continue
        try:
            seconds = parse_time(timeout)
        except ValueError:
            continue
        if seconds > 0:
            found["status" if name == "monitor" else name] = float(seconds)
    return found


def accepted_options(cls: type) -> set[str] | None:
    """The keyword arguments the constructors of `cls` (and its bases) name; None if one takes any keyword."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names  # this constructor is the last one the keywords can reach
    return None


def options_for(cls: type, options: Mapping[str, Any]) -> dict[str, Any]:
    """The agent options this agent class takes: `ocf_root` reaches the ocf agent and no other."""
    accepted = accepted_options(cls)
    return {k: v for k, v in options.items() if accepted is None or k in accepted}


def make_agent(node: Any, agent_factory: Callable[[str], type[Agent]], options: Mapping[str, Any],
               log: Callable[[str], None], depth: int = 0) -> Agent | Result:
    """The agent for a node, or a failed Result saying why there is none (never an exception)."""
    try:
        cls = agent_factory(node.type)
    except UnknownAgentType as exc:
        return Result(OCF.ERR_INSTALLED, str(exc))
    except Exception as exc:  # one line per resource, never a traceback
        return unexpected(f"{node.type}: choosing the agent", exc)
    try:
        options = dict(options)
        timeouts = {**action_timeouts(node, depth), **dict(options.pop("timeouts", None) or {})}
        return cls(node.attrs, log=log, timeouts=timeouts, **options_for(cls, options))
    except Exception as exc:
        return unexpected(f"{node.type}: creating the agent", exc)


def run_agent(agent: Agent | Result, op: str, depth: int) -> Result:
    """The agent's result for `op`; an exception escaping a (third-party) agent becomes one OCF 1 line."""
    if isinstance(agent, Result):
        return agent
    try:
        return agent.run(op, depth)
    except Exception as exc:
        return unexpected(f"{agent.type_name} {op}", exc)


def run_service(
    conf: object,
    tree: Any,
    op: str,
    *,
    log: Callable[[str], None] = print,
    depth: int = 0,
    start_sequence: Sequence | None = None,
    stop_sequence: Sequence | None = None,
    agent_factory: Callable[[str], type[Agent]] = agent_for,
    agent_options: Mapping[str, Any] | None = None,
) -> int:
    """Run `op` ("start", "stop" or "status") over the service tree rooted at `tree`; 0 on success, else 1.

    `conf` is the configuration the tree was built from; the built-in agents need nothing from it beyond the
    resolved attributes, so it may be None. `agent_options` are keyword arguments for the agents'
    constructors (`timeouts`, `run_dir`, `ocf_root`, ...): each agent gets the ones its constructor takes.
    An unexpected exception anywhere in an agent becomes that resource's OCF 1 line naming the exception type.
    """
    if op not in OPS:
        log(f"[{op}] unknown operation; use one of: {', '.join(OPS)}")
        return 2
    if start_sequence is None or stop_sequence is None:
        default_start, default_stop = _default_sequences()
        start_sequence = start_sequence or default_start
        stop_sequence = stop_sequence or default_stop
    nodes: Iterable[Any] = stop_sequence(tree) if op == "stop" else start_sequence(tree)
    options = dict(agent_options or {})
    failures = 0
    skipped: set[str] = set()
    for node in nodes:
        if node.id in skipped:
            log(f"[{op}] {node.id} skipped: a non-critical parent failed")
            continue
        result = run_agent(make_agent(node, agent_factory, options, log, depth), op, depth)
        log(f"[{op}] {node.id} {_outcome(result)}")
        if result.ok:
            continue
        if op == "start" and _is_non_critical(node):
            skipped |= _descendant_ids(node)
            log(f"[{op}] {node.id} is non-critical: its subtree stays stopped and the service is partial")
            continue
        failures += 1
        if op == "start":
            log(f"[{op}] stopping at the first failure; the remaining resources were not started")
            return 1
    if failures:
        log(f"[{op}] {failures} resource(s) failed")
        return 1
    return 0
