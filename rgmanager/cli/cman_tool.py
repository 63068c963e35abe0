"""cman_tool: the cluster manager's admin tool (rhcs-facts §4.4). For now only `version`:

    cman_tool version            `<suite version> config <N>`: the configuration version this node runs
    cman_tool version -r         reload: check $CLUSTER_ROOT/etc/cluster/cluster.conf, have the local agent take
                                 it and pass it on to every node (the original ran ccs_sync for that)
    cman_tool version -r -S      reload on this node only (the file was distributed some other way)

Until the membership daemon exists (a later step), the configuration a node "runs" is the version its ricci
agent has accepted (the last one recorded in its history, `cluster.versions`); a local edit of cluster.conf is
not running until `cman_tool version -r` pushes it; the agent is found through etc/ricci/ricci.json.

Exit status: 0 success; 1 any other failure (one line `cman_tool: <message>`); 253 "Unable to retrive the new
config version" (no readable file or no config_version in it); 254 "Not reloading, config version older or equal
the running config". See docs/cli.md.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from cluster_conf.cli.common import CliError, Parser, UsageError, run, suite_version, version_text, warn

PROG = "cman_tool"
EXIT_NO_NEW_VERSION = 253
EXIT_NOT_NEWER = 254
NO_NEW_VERSION_TEXT = "Unable to retrive the new config version"  # sic: the original's spelling, kept for grep
NOT_NEWER_TEXT = "Not reloading, config version older or equal the running config"
# The original's other subcommands; they come with the membership daemon (a later step).
LATER = ("join", "leave", "kill", "expected", "votes", "wait", "status", "nodes", "services", "debug")

USAGE = """\
Usage:

cman_tool <join|leave|kill|expected|votes|version|wait|status|nodes|services|debug> [options]

Options:
  -h               Print this help, then exit
  -V               Print program version information, then exit

version
  -r               Reload cluster.conf and update config version.
  -S               Don't run ccs_sync to distribute cluster.conf (if appropriate)

Available now: version. The other commands come with the membership daemon.
Exit status: 0 success, 1 failure, 253 no new config version, 254 config version not newer.
"""


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    if not argv:
        sys.stderr.write(USAGE)
        return 1
    if argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        sys.stdout.write(version_text(PROG))
        return 0
    command, rest = argv[0], argv[1:]
    if command == "version":
        return cmd_version(_version_parser().parse_args(rest))
    if command in LATER:
        raise CliError(f"'{command}' is not available yet: it comes with the membership daemon")
    raise UsageError(f"Unknown command, {command}. Try 'cman_tool -h' for help.")


def _version_parser() -> Parser:
    parser = Parser(prog=f"{PROG} version", usage=f"{PROG} version [-r [-S]]",
                    description="Show the configuration version, or reload the configuration (-r)")
    parser.add_argument("-r", dest="reload", nargs="?", const=True, default=False, metavar="",
                        help="reload cluster.conf, distribute it and update the config version")
    parser.add_argument("-S", dest="no_sync", action="store_true",
                        help="reload on this node only: do not distribute cluster.conf")
    return parser


# -- version -----------------------------------------------------------------------------------------------
def cmd_version(opts: argparse.Namespace) -> int:
    if opts.reload not in (True, False):
        raise UsageError(
            f"-r takes no version number here (got {opts.reload}): raise config_version in the file, "
            "then run 'cman_tool version -r'"
        )
    if opts.no_sync and not opts.reload:
        raise UsageError("-S only goes with -r (cman_tool version -r -S)")
    from cluster_conf.cli.editing import agent_request, cluster_root

    agent = _agent(cluster_root())
    if not opts.reload:
        sys.stdout.write(f"{suite_version()} config {running_version(agent_request(agent, 'cluster.versions'))}\n")
        return 0
    return reload(agent, cluster_root(), sync=not opts.no_sync)


def _agent(root: str):  # -> LocalAgent
    from cluster_conf.cli.editing import AGENT_SETTINGS, local_agent

    agent = local_agent(root)
    if agent is None:
        raise CliError(f"this node has no ricci agent ({os.path.join(root, AGENT_SETTINGS)} is missing); "
                       "cannot tell the running config version")
    return agent


def running_version(versions_reply: dict) -> int:
    """The version the agent accepted (cluster.versions `accepted`: the last one recorded in its history, never a
    local edit of the live file): what this node runs. Agents that do not report it: the newest in the history.
    0 when none yet."""
    accepted = versions_reply.get("accepted")
    if isinstance(accepted, dict) and isinstance(accepted.get("version"), int):
        return accepted["version"]
    entries = versions_reply.get("versions")
    numbers = [e.get("version") for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []
    return max((n for n in numbers if isinstance(n, int)), default=0)


def reload(agent, root: str, *, sync: bool) -> int:  # agent: LocalAgent
    """`version -r [-S]`: validate the local file, refuse a version that is not newer than the running one, then
    have the agent take it (and, with `sync`, every node); unreachable nodes are named and catch up later."""
    from cluster_conf import validate
    from cluster_conf.cli.common import default_config_path
    from cluster_conf.cli.editing import AgentRefusal, agent_request, outcome_lines, push_config
    from cluster_conf.document import ClusterConf
    from cluster_conf.reports import ConfigError

    path = default_config_path({"CLUSTER_ROOT": root})
    if not os.path.isfile(path):
        raise CliError(NO_NEW_VERSION_TEXT, exit_code=EXIT_NO_NEW_VERSION, details=[f"{path}: no such file"])
    try:
        conf = ClusterConf.load(path)
    except ConfigError as exc:
        raise CliError(f"{path} is not valid; not reloading", details=[str(exc)]) from None
    new = conf.config_version
    if new is None:
        raise CliError(NO_NEW_VERSION_TEXT, exit_code=EXIT_NO_NEW_VERSION,
                       details=[f"{path}: <cluster> has no integer config_version"])
    errors = [r for r in validate(conf, lint=False) if r.is_error]
    if errors:
        raise CliError(f"{path} is not valid; not reloading", details=[r.format(path) for r in errors])
    running = running_version(agent_request(agent, "cluster.versions"))
    if new <= running:
        raise CliError(NOT_NEWER_TEXT, exit_code=EXIT_NOT_NEWER,
                       details=[f"running config_version {running}, {path} has {new}"])
    try:
        # The agent records the file as the version this node runs, also when it is already the live file (a hand
        # edit); unless -S, it distributes it too (the original's ccs_sync).
        result = push_config(agent, conf, propagate=sync)
    except AgentRefusal as exc:
        if exc.code in ("version_not_greater", "same_version_differs"):
            raise CliError(NOT_NEWER_TEXT, exit_code=EXIT_NOT_NEWER, details=[exc.message]) from None
        raise CliError(exc.message) from None
    unreachable = sorted(n for n, (outcome, _) in result.failed.items() if outcome == "unreachable")
    refused = sorted(n for n in result.failed if n not in unreachable)
    if refused:
        raise CliError(
            f"ccs_sync failed: config version {new} was refused by {', '.join(refused)}",
            details=[line.strip() for line in outcome_lines(result)],
        )
    for name in unreachable:
        warn(PROG, f"{name} did not get config version {new} (unreachable); it catches up when its agent is back")
    return 0


if __name__ == "__main__":
    sys.exit(main())
