"""`ricci`: the node agent and its small admin tool.

    ricci serve [--address A] [--port P]        run the agent in the foreground (SIGTERM/SIGINT: clean exit 0)
    ricci keygen                                create the host key and this node's client key (if missing)
    ricci fingerprint [--client]                the host key's (or client key's) SHA256 fingerprint
    ricci authorize PUBKEY|FILE                 allow a client key (a public key line or a .pub file)
    ricci trust HOST[:PORT] --fingerprint SHA256:...   pin a peer's host key after checking its fingerprint
    ricci call HOST[:PORT] FUNCTION [ARGS]      one request; ARGS is a JSON object or key=value pairs; JSON out

Every command works on `$CLUSTER_ROOT` (default `/`); `serve` requires CLUSTER_ROOT to be set. paramiko is
imported only by the commands that speak SSH.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cluster_conf.cli.common import CliError, Parser, UsageError, print_json, run
from ricci_agent import keys
from ricci_agent.protocol import DEFAULT_PORT, RicciError

PROG = "ricci"


def build_parser() -> Parser:
    parser = Parser(prog=PROG, description="The ricci agent (SSH, port 11111) and its admin commands.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    serve = sub.add_parser("serve", help="run the agent in the foreground")
    serve.add_argument("--address", help="address to listen on (default: ricci.json's, else 127.0.0.1)")
    serve.add_argument("--port", help="port to listen on (default: ricci.json's, else 11111)")
    serve.add_argument("--boot", action="store_true",
                       help="also start this node's cluster daemons (cman, rgmanager) once listening")
    sub.add_parser("keygen", help="create the host key and this node's client key if missing")
    fp = sub.add_parser("fingerprint", help="print the host key's SHA256 fingerprint")
    fp.add_argument("--client", action="store_true", help="the client key's fingerprint instead")
    auth = sub.add_parser("authorize", help="add a client public key to authorized_keys")
    auth.add_argument("pubkey", metavar="PUBKEY", help="a public key line, or a file holding one")
    trust = sub.add_parser("trust", help="pin a peer's host key in known_hosts")
    trust.add_argument("target", metavar="HOST[:PORT]")
    trust.add_argument("--fingerprint", required=True, help="the SHA256:... fingerprint the peer must show")
    call = sub.add_parser("call", help="send one request to an agent and print the JSON reply")
    call.add_argument("target", metavar="HOST[:PORT]")
    call.add_argument("function", metavar="FUNCTION")
    call.add_argument("args", nargs="*", metavar="ARGS", help="a JSON object, or key=value pairs (value as JSON "
                      "when it parses, else text; key=@FILE reads a file)")
    call.add_argument("--timeout", type=float, default=None, help="request timeout in seconds (default 6)")
    return parser


def cluster_root(*, required: bool = False) -> Path:
    value = os.environ.get("CLUSTER_ROOT")
    if not value:
        if required:
            raise CliError("CLUSTER_ROOT is not set: it names the folder holding etc/cluster and etc/ricci")
        value = "/"
    return Path(value)


def parse_target(text: str) -> tuple[str, int]:
    host, port = text, DEFAULT_PORT
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, text)
    if not host:
        raise UsageError(f"'{text}' names no host; expected HOST[:PORT]")
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise UsageError(f"'{whole}': the port must be a number from 1 to 65535")
    return int(text)


def parse_call_args(tokens: list[str]) -> dict[str, Any]:
    if len(tokens) == 1 and tokens[0].lstrip().startswith("{"):
        try:
            value = json.loads(tokens[0])
        except ValueError as exc:
            raise UsageError(f"ARGS is not a valid JSON object: {exc}") from None
        if not isinstance(value, dict):
            raise UsageError("ARGS must be a JSON object")
        return value
    args: dict[str, Any] = {}
    for token in tokens:
        key, sep, text = token.partition("=")
        if not sep or not key:
            raise UsageError(f"argument '{token}' is not key=value (or pass one JSON object)")
        if text.startswith("@"):
            try:
                args[key] = Path(text[1:]).read_text()
            except OSError as exc:
                raise UsageError(f"{text[1:]}: {exc.strerror or exc}") from None
            continue
        try:
            args[key] = json.loads(text)
        except ValueError:
            args[key] = text
    return args


def _serve(opts: Any) -> int:
    from ricci_agent.server import serve

    root = cluster_root(required=True)
    port = _port(opts.port, opts.port) if opts.port is not None else None
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        serve(root, opts.address, port, stop=stop, boot=opts.boot)
    except OSError as exc:
        raise CliError(f"cannot listen: {exc.strerror or exc}") from None
    return 0


def _keygen(opts: Any) -> int:
    root = cluster_root()
    host_fp = keys.ensure_host_key(root)
    client = keys.ensure_client_key(root)
    sys.stdout.write(f"host key:   {host_fp}\nclient key: {keys.fingerprint(client)}\n{client}\n")
    return 0


def _fingerprint(opts: Any) -> int:
    root = cluster_root()
    if opts.client:
        path = keys.client_key_path(root).with_suffix(".pub")
        if not path.exists():
            raise CliError(f"{path}: no client key yet (run 'ricci keygen')")
        sys.stdout.write(keys.fingerprint(path.read_text()) + "\n")
    else:
        sys.stdout.write(keys.fingerprint(keys.host_public_key(root)) + "\n")
    return 0


def _authorize(opts: Any) -> int:
    text = opts.pubkey
    if not text.startswith(tuple(keys.KEY_TYPES)) and Path(text).is_file():
        text = Path(text).read_text().strip()
    added = keys.authorize(cluster_root(), text)
    fp = keys.fingerprint(text)
    sys.stdout.write(f"{'authorized' if added else 'already authorized'}: {fp}\n")
    return 0


def _trust(opts: Any) -> int:
    from ricci_agent.client import fetch_host_key

    host, port = parse_target(opts.target)
    offered = fetch_host_key(host, port)
    fp = keys.fingerprint(offered)
    if fp != opts.fingerprint.strip():
        raise CliError(f"{host}:{port} offers host key {fp}, not {opts.fingerprint.strip()}: not pinned")
    keys.pin_host_key(cluster_root(), host, port, offered)
    sys.stdout.write(f"pinned {keys.host_pattern(host, port)} {fp}\n")
    return 0


def _call(opts: Any) -> int:
    from ricci_agent.client import RicciClient

    host, port = parse_target(opts.target)
    args = parse_call_args(opts.args)
    with RicciClient.for_root(cluster_root()) as client:
        result = client.call(host, port, opts.function, args, timeout=opts.timeout)
    print_json(result)
    return 0


COMMANDS = {"serve": _serve, "keygen": _keygen, "fingerprint": _fingerprint, "authorize": _authorize,
            "trust": _trust, "call": _call}


def _main(argv: list[str]) -> int:
    opts = build_parser().parse_args(argv)
    try:
        return COMMANDS[opts.command](opts)
    except keys.KeyFileError as exc:
        raise CliError(str(exc)) from None
    except RicciError as exc:
        if opts.command == "call":
            print_json({"error": exc.to_dict()})
        raise CliError(f"{exc.code}: {exc.message}", exit_code=2) from None


def main(argv: Sequence[str] | None = None) -> int:
    return run(PROG, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
