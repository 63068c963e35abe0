"""fence_ack_manual: tell the local cman daemon that NODE, waiting for a manual fence, has been powered off.

    fence_ack_manual [-h] [-V] NODE

Sends the control command `fence_ack` {node} and prints the daemon's answer on stdout (exit 0). When no daemon
runs on this node, or the daemon refuses (the node is not waiting for a manual fence), one line
`fence_ack_manual: <why>` on stderr, exit 1. Unlike cman 2's script there is no interactive confirmation: the
command is meant to be run by an operator who has checked the node is off.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from cluster_conf.cli.common import CliError, Parser, run, version_text

PROG = "fence_ack_manual"


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, _main, argv)


def _parser() -> Parser:
    parser = Parser(prog=PROG, usage=f"{PROG} [-h] [-V] <node>", add_help=False,
                    description="Acknowledge that a node waiting for a manual fence has been powered off.")
    parser.add_argument("-h", dest="help", action="store_true", help="print this help, then exit")
    parser.add_argument("-V", dest="version", action="store_true", help="print the version, then exit")
    parser.add_argument("node", nargs="?", help="the node that was fenced by hand")
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
    from cluster_conf.cli.editing import cluster_root
    from cman.control import ControlError, request

    try:
        result = request(cluster_root(), "fence_ack", node=opts.node)
    except ControlError as exc:
        raise CliError(exc.message) from None
    sys.stdout.write(f"{PROG}: {opts.node}: {_message(result)}\n")
    return 0


def _message(result: object) -> str:
    """The daemon's answer: its `message` when it gives one, else the standard text."""
    if isinstance(result, dict) and isinstance(result.get("message"), str) and result["message"]:
        return result["message"]
    if isinstance(result, str) and result:
        return result
    return "manual fence acknowledged"


if __name__ == "__main__":
    sys.exit(main())
