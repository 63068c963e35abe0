"""rg_test: rgmanager's developer tool, compatible with the original (rhcs-facts §3, docs/rg_test.md).

    rg_test [AGENTDIR] test FILE                          resource list and resource tree (2007 format)
    rg_test [AGENTDIR] noop FILE start|stop service NAME  the start/stop order, without running anything
    rg_test [AGENTDIR] delta OLD NEW                      both lists and trees with NEEDSTOP/NEEDSTART marks
    rg_test [AGENTDIR] test FILE start|stop|status service NAME   run the agents (rgmanager.runner)
    rg_test [AGENTDIR] FILE start|stop|status service NAME        the same
    rg_test place ... / rg_test simulate ...              what-if tools (rgmanager.cli.whatif)

AGENTDIR (the original's first argument, e.g. `../../resources`) is accepted and ignored: the resource-type
metadata is built in (`cluster_conf.schema.RESOURCE_TYPES`).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from cluster_conf.cli.common import UsageError, printable, run
from rgmanager.reconfig import Change, Delta, delta
from rgmanager.restree import Resource, ResourceNode, ResourceTrees, build_trees, start_sequence, stop_sequence

PROG = "rg_test"
MODES = ("test", "noop", "delta", "place", "simulate")
RUN_OPS = ("start", "stop", "status")
USAGE = """\
usage: rg_test [AGENTDIR] test FILE
       rg_test [AGENTDIR] noop FILE start|stop service NAME
       rg_test [AGENTDIR] delta OLD NEW
       rg_test [AGENTDIR] test FILE start|stop|status service NAME
       rg_test [AGENTDIR] FILE start|stop|status service NAME
       rg_test place FILE --online N1,N2,... [options]
       rg_test simulate FILE --state STATE.json --event EVENT ... [options]
"""

NodeFlags = Callable[[ResourceNode], Change]
ResourceFlags = Callable[[Resource], Change]


def _no_flags(_: object) -> Change:
    return Change.NONE


# -- the 2007 output formats -------------------------------------------------------------------------------
def _param_flag_words(resource: Resource, name: str) -> str:
    param = resource.rtype.param(name)
    if param is None:
        return ""
    words = [w for w, on in (("primary", param.primary), ("unique", param.unique), ("required", param.required),
                             ("reconfig", param.reconfig)) if on]
    return f" [ {' '.join(words)} ]" if words else ""


def format_resource(resource: Resource, instances: int, flags: Change = Change.NONE) -> list[str]:
    """One block of the resource list (`Resource type: ...` up to the blank line)."""
    head = f"Resource type: {resource.type}"
    if resource.inline:
        head += " [INLINE]"
    if Change.NEEDSTART in flags:
        head += " [NEEDSTART]"
    if Change.NEEDSTOP in flags:
        head += " [NEEDSTOP]"
    if Change.RECONFIG in flags:
        head += " [RECONFIG]"
    lines = [head]
    if resource.rtype.max_instances is not None:
        lines.append(f"Instances: {instances}/{resource.rtype.max_instances}")
    lines += [f"Agent: {resource.rtype.agent}", "Attributes:"]
    own = resource.attrs
    for param in resource.rtype.params:
        if param.name in own:
            lines.append(f"  {param.name} = {own[param.name]}{_param_flag_words(resource, param.name)}")
        elif param.inherit:
            lines.append(f'  {param.name} [ inherit("{param.inherit}") ]')
    known = {p.name for p in resource.rtype.params}
    lines += [f"  {name} = {value}" for name, value in own.items() if name not in known]  # open types (ocf)
    lines.append("")
    return lines


def format_resource_list(trees: ResourceTrees, flags: ResourceFlags = _no_flags) -> list[str]:
    lines: list[str] = []
    for resource in trees.resources:
        lines += format_resource(resource, trees.instance_count(resource), flags(resource))
    return lines


def _node_flag_words(flags: Change) -> str:
    words = [w for w, f in (("NEEDSTOP", Change.NEEDSTOP), ("NEEDSTART", Change.NEEDSTART),
                            ("RECONFIG", Change.RECONFIG)) if f in flags]
    return f" [ {' '.join(words)} ]" if words else ""


def format_tree(node: ResourceNode, flags: NodeFlags = _no_flags, level: int = 0) -> list[str]:
    """A node in the 2007 tree format. An inherited parameter that did not resolve leaves its indentation on
    the next line, as the original did (the conformance files show it; the runner ignores whitespace)."""
    pad = "  " * level
    inner = pad + "  "
    lines: list[str] = []
    carry = ""  # stray indentation of unresolved inherited parameters
    lines.append(f"{pad}{node.type}{_node_flag_words(flags(node))} {{")
    attrs = node.attrs
    for param in node.rtype.params:
        if param.name in attrs:
            lines.append(f'{carry}{inner}{param.name} = "{attrs[param.name]}";')
            carry = ""
        elif param.inherit:
            carry += inner
    known = {p.name for p in node.rtype.params}
    for name, value in attrs.items():
        if name not in known:
            lines.append(f'{carry}{inner}{name} = "{value}";')
            carry = ""
    for child in node.children:
        child_lines = format_tree(child, flags, level + 1)
        child_lines[0] = carry + child_lines[0]
        carry = ""
        lines += child_lines
    lines.append(f"{carry}{pad}}}")
    return lines


def format_test(trees: ResourceTrees) -> list[str]:
    lines = [*trees.warnings, "=== Resources List ==="]
    lines += format_resource_list(trees)
    lines.append("=== Resource Tree ===")
    for tree in trees.trees:
        lines += format_tree(tree)
    return lines


def format_noop(trees: ResourceTrees, service: ResourceNode, op: str) -> list[str]:
    name = service.primary
    if op == "start":
        lines = [f"Starting {name}..."]
        lines += [f"[start] {n.id}" for n in start_sequence(service)]
        lines.append(f"Start of {name} complete")
    else:
        lines = [f"Stopping {name}..."]
        lines += [f"[stop] {n.id}" for n in stop_sequence(service)]
        lines.append(f"Stop of {name} complete")
    return [*trees.warnings, *lines]


def format_delta(result: Delta) -> list[str]:
    lines = [*result.old.warnings, *result.new.warnings]
    lines.append("=== Old Resource List ===")
    lines += format_resource_list(result.old, result.resource_flags)
    lines.append("=== New Resource List ===")
    lines += format_resource_list(result.new, result.resource_flags)
    lines.append("=== Old Resource Tree ===")
    for tree in result.old.trees:
        lines += format_tree(tree, result.node_flags)
    lines.append("=== New Resource Tree ===")
    for tree in result.new.trees:
        lines += format_tree(tree, result.node_flags)
    return lines


# -- command line --------------------------------------------------------------------------------------------
def _load(path: str):  # -> ClusterConf
    from cluster_conf.document import ClusterConf

    return ClusterConf.load(path)


def _emit(lines: Sequence[str]) -> None:
    sys.stdout.write("".join(line + "\n" for line in lines))


def _find_service(trees: ResourceTrees, kind: str, name: str, path: str) -> ResourceNode:
    if kind not in ("service", "vm"):
        raise UsageError(f"expected 'service NAME' or 'vm NAME', got '{printable(kind)}'")
    node = trees.tree(f"{kind}:{name}")
    if node is None and kind == "service":
        node = trees.tree(f"vm:{name}")  # the original looked a name up among all top-level groups
    if node is None:
        raise UsageError(f"{path}: no {kind} named '{printable(name)}'", exit_code=1)
    return node


def _strip_agentdir(args: list[str]) -> list[str]:
    """Drop the original's leading AGENTDIR argument: a first word that is not a mode but is followed by one,
    or that precedes `FILE start|stop|status service NAME`."""
    if len(args) < 2 or args[0] in MODES:
        return args
    if args[1] in MODES or (len(args) == 5 and args[2] in RUN_OPS):
        return args[1:]
    return args


def _body(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write(USAGE)
        return 2
    if argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    args = _strip_agentdir(argv)
    mode = args[0]
    if mode == "place":
        return _whatif("place_main", args[1:])
    if mode == "simulate":
        return _whatif("simulate_main", args[1:])
    if mode == "test":
        if len(args) == 2:
            trees = build_trees(_load(args[1]))
            _emit(format_test(trees))
            return 0
        if len(args) == 5 and args[2] in RUN_OPS:
            return _run(args[1], args[2], args[3], args[4])
        raise UsageError("usage: rg_test test FILE [start|stop|status service NAME]", exit_code=2)
    if mode == "noop":
        if len(args) != 5 or args[2] not in ("start", "stop"):
            raise UsageError("usage: rg_test noop FILE start|stop service NAME", exit_code=2)
        trees = build_trees(_load(args[1]))
        service = _find_service(trees, args[3], args[4], args[1])
        _emit(format_noop(trees, service, args[2]))
        return 0
    if mode == "delta":
        if len(args) != 3:
            raise UsageError("usage: rg_test delta OLD NEW", exit_code=2)
        old = build_trees(_load(args[1]))
        new = build_trees(_load(args[2]))
        _emit(format_delta(delta(old, new)))
        return 0
    if len(args) == 4 and args[1] in RUN_OPS:  # rg_test FILE start|stop|status service NAME
        return _run(args[0], args[1], args[2], args[3])
    raise UsageError(f"unknown mode '{printable(mode)}'; try 'rg_test --help'", exit_code=2)


def _run(path: str, op: str, kind: str, name: str) -> int:
    conf = _load(path)
    trees = build_trees(conf)
    tree = _find_service(trees, kind, name, path)
    try:
        from rgmanager.runner import run_service  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise UsageError(f"running agents is not available: {exc}", exit_code=1) from None
    for warning in trees.warnings:
        sys.stdout.write(warning + "\n")
    result = run_service(conf, tree, op)
    return _exit_status(result)


def _exit_status(result: object) -> int:
    if isinstance(result, bool):
        return 0 if result else 1
    if isinstance(result, int):
        return result
    code = getattr(result, "exit_code", None)
    if isinstance(code, int):
        return code
    ok = getattr(result, "ok", None)
    if isinstance(ok, bool):
        return 0 if ok else 1
    return 0


def _whatif(entry: str, rest: list[str]) -> int:
    try:
        from rgmanager.cli import whatif  # type: ignore[attr-defined,unused-ignore]
    except ImportError as exc:
        raise UsageError(f"the what-if tools are not available: {exc}", exit_code=1) from None
    func = getattr(whatif, entry, None)
    if func is None:
        raise UsageError(f"the what-if tools are not available: rgmanager.cli.whatif has no {entry}", exit_code=1)
    return int(func(rest))


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, _body, argv)


if __name__ == "__main__":
    sys.exit(main())
