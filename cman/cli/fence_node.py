"""fence_node: fence (or with -U unfence) one node with the methods of cluster.conf (rhcs-facts §4.5).

    fence_node [-U] [-v|-vv] [-h] [-V] NODE

The result goes to stderr: `fence NODE success` (exit 0), `fence NODE failed` (exit 1), `fence NODE undefined`
(no method configured, exit 2); with -U the same as `unfence NODE ...`. -v prints one line per device tried on
stdout, `fence NODE dev M.D agent AGENT result: success|error from agent|error no device|error config agent|
manual`; -vv also `agent args: k=v k=v` (secrets masked). A `fence_manual` device is not run: fence_node reports
failed and says to power the node off by hand and run `fence_ack_manual NODE` (which the daemon answers).

The config is $CLUSTER_ROOT/etc/cluster/cluster.conf. Every run is appended to the node's fence history
(var/lib/cluster/fence_history.jsonl, actor "fence_node"); after a successful fence the local cman daemon, if
it runs, is told (`fence_done`) so it does not fence the node again. The original also logged to syslog; this
one does not (the history file is the record).
"""
from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence

from cluster_conf.cli.common import CliError, Parser, default_config_path, run, version_text, warn

PROG = "fence_node"
EXIT_SUCCESS = 0
EXIT_FAILED = 1
EXIT_UNDEFINED = 2
TIMEOUT_ENV = "FENCE_NODE_TIMEOUT"  # seconds per agent (default 60)


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, _main, argv)


def _parser() -> Parser:
    parser = Parser(prog=PROG, usage=f"{PROG} [-U] [-v|-vv] [-h] [-V] <node>", add_help=False,
                    description="Fence (or unfence) a node with the fence methods of cluster.conf.",
                    epilog="Exit status: 0 success, 1 failed, 2 undefined (no fence method for the node).")
    parser.add_argument("-U", dest="unfence", action="store_true", help="unfence the node")
    parser.add_argument("-v", dest="verbose", action="count", default=0,
                        help="print each device's result (-vv: also the agent arguments, secrets masked)")
    parser.add_argument("-h", dest="help", action="store_true", help="print this help, then exit")
    parser.add_argument("-V", dest="version", action="store_true", help="print the version, then exit")
    parser.add_argument("node", nargs="?", help="the node to fence, as named in cluster.conf")
    return parser


def _main(argv: list[str]) -> int:
    parser = _parser()
    opts = parser.parse_args(argv)
    if opts.help:
        sys.stdout.write(parser.format_help())
        return 0
    if opts.version:
        sys.stdout.write(version_text(PROG))
        return 0
    if not opts.node:
        raise CliError(f"no node name given; usage: {parser.usage}")
    return fence_node(opts.node, unfence=opts.unfence, verbose=opts.verbose)


def fence_node(node: str, *, unfence: bool, verbose: int) -> int:
    from cluster_conf.cli.editing import cluster_root
    from cluster_conf.document import ClusterConf
    from cluster_conf.model import view
    from cman.fence_agents import DEFAULT_TIMEOUT, DeviceAttempt, FenceHistory, fence

    path = default_config_path()
    config = view(ClusterConf.load(path))
    if config.node(node) is None:
        raise CliError(f"node {node} is not in {path}")
    action = "unfence" if unfence else "fence"
    timeout = _timeout(os.environ.get(TIMEOUT_ENV), DEFAULT_TIMEOUT)

    def show(attempt: DeviceAttempt) -> None:
        if verbose:
            sys.stdout.write(f"{action} {node} dev {attempt.position} agent {attempt.agent or '-'} "
                             f"result: {attempt.result}\n")
            if verbose > 1:
                sys.stdout.write(f"agent args: {attempt.args}\n")
            sys.stdout.flush()

    outcome = fence(config, node, timeout=timeout, on_attempt=show, unfence=unfence)
    root = cluster_root()
    try:
        FenceHistory(root).append(outcome.history_entry(PROG, time.time()))
    except OSError as exc:
        warn(PROG, f"cannot record the fence history under {root}: {exc.strerror}")
    if outcome.ok and not unfence:
        _tell_daemon(root, outcome)
    if outcome.status == "success":
        sys.stderr.write(f"{action} {node} success\n")
        return EXIT_SUCCESS
    if outcome.status == "undefined":
        sys.stderr.write(f"{action} {node} undefined\n")
        return EXIT_UNDEFINED
    if outcome.status == "manual":
        sys.stderr.write(f"{PROG}: {node} needs a manual fence: power it off by hand, then run "
                         f"fence_ack_manual {node}\n")
    sys.stderr.write(f"{action} {node} failed\n")
    return EXIT_FAILED


def _timeout(value: str | None, default: float) -> float:
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise CliError(f"{TIMEOUT_ENV}={value!r} is not a number of seconds") from None
    if not 0 < seconds <= 3600:
        raise CliError(f"{TIMEOUT_ENV}={value!r} must be between 0 and 3600 seconds")
    return seconds


def _tell_daemon(root: str, outcome) -> None:  # outcome: cman.fence_agents.FenceOutcome
    """fenced is told of a successful fence so it will not fence the node again; no daemon: nothing to tell."""
    from cman.control import ControlError, request

    try:
        request(root, "fence_done", node=outcome.node, ok=True, message=outcome.message, method=outcome.method,
                device=outcome.device, agent=outcome.agent)
    except ControlError as exc:
        if exc.code != "not_running":
            warn(PROG, f"the cluster manager was not told of the fence: {exc.message}")


if __name__ == "__main__":
    sys.exit(main())
