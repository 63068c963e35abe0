"""The ricci agent: a paramiko SSH server with one subsystem, `ricci`, serving the node's configuration store.

Threads: the accept loop (the caller's, which also does the housekeeping), one paramiko transport thread per
connection, one login monitor per connection until it authenticates, one handler per `ricci` channel, and the
catch-up loop.

Hardening (see docs/ricci-protocol.md):
- public-key authentication only, against `etc/ricci/authorized_keys` (re-read when it changes; the sessions of
  a key removed from it are closed);
- paramiko asks `check_auth_publickey` both for a key *query* (no signature yet) and before it verifies a
  signature, so that callback only answers whether the key is listed: a connection counts as authenticated, and
  "auth accepted" is logged, only once paramiko has verified a signature (`transport.is_authenticated()`);
- no shell, no exec, no pty, no port forwarding, no other subsystem; at most MAX_CHANNELS open sessions per
  connection;
- at most MAX_UNAUTHENTICATED connections that have not authenticated yet, MAX_UNAUTHENTICATED_PER_SOURCE of them
  from one address: more are closed at once, unread;
- `login_grace` seconds (ricci.json, default 10) to authenticate; at most MAX_AUTH_ATTEMPTS attempts (queries
  included) per connection; after MAX_AUTH_FAILURES failures (unknown keys, bad signatures, passwords) a delay
  of AUTH_FAILURE_DELAY seconds, then the connection is closed;
- every accepted and refused authentication is logged to `var/log/cluster/ricci.log`, with the key's fingerprint;
- requests longer than the message limit, malformed or unknown are answered with an error; the channel stays open.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import hmac
import logging
import os
import re
import select
import socket
import stat
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from cluster_conf.model import view
from cman.identity import read_hosts
from ricci_agent import keys
from ricci_agent.client import (
    LONG_REQUEST_TIMEOUT,
    AgentSettings,
    NodeResult,
    RicciClient,
    close_transport,
    settle_transport,
)
from ricci_agent.protocol import (
    AUTH_FAILED,
    BAD_ARGUMENTS,
    DAEMON_FAILED,
    DEFAULT_PORT,
    HOST_KEY_CHANGED,
    HOST_KEY_UNKNOWN,
    INTERNAL,
    MALFORMED,
    NO_ANSWER,
    NOT_AVAILABLE,
    PROTOCOL_VERSION,
    SUBSYSTEM,
    TOO_LARGE,
    TOO_LARGE_MARK,
    UNKNOWN_FUNCTION,
    LineReader,
    RicciError,
    error_line,
    ok_line,
    parse_request,
    xml_arg,
    xml_fields,
)
from ricci_agent.store import (
    LOCAL_EDIT_NOTE,
    NO_CONFIG,
    NOT_GREATER,
    RACE_LOST,
    RACE_TEXT,
    SAME_VERSION,
    Candidate,
    ConfigStore,
    Staging,
    StoredConfig,
    StoreRefusal,
    better_copy,
    check_candidate,
    check_version,
    validated_elsewhere,
    validator_version,
)

LOG_PATH = Path("var/log/cluster/ricci.log")
PORT_ATTRIBUTE = "ricci_port"  # on <clusternode>: the peer's agent port when it is not 11111
AGENT_VERSION = "rhcs-py ricci 0.1.0"

MAX_UNAUTHENTICATED = 10
MAX_UNAUTHENTICATED_PER_SOURCE = 3
MAX_AUTH_ATTEMPTS = 6  # userauth requests per connection, key queries included (OpenSSH's MaxAuthTries)
MAX_AUTH_FAILURES = 3
AUTH_FAILURE_DELAY = 2.0
MAX_CHANNELS = 4
KEEPALIVE = 30
HOUSEKEEPING = 0.5  # seconds between prunes of finished connections and authorized_keys checks
POLL_PEERS = 2  # peers that must answer at each periodic catch-up round (the next answering ones on the ring)
STARTUP_PEERS = 3  # peers that must answer at the catch-up round an agent makes when it starts (the same ring)
POLL_MIN, POLL_DEFAULT = 0.25, 1.0  # seconds; cman's ccsd_poll (ms) sets the interval
PEER_CONNECT_TIMEOUT, PEER_REQUEST_TIMEOUT = 3.0, 6.0
# A propagated update: the stage round costs at most connect + request; a commit may wait COMMIT_WAIT on a peer
# for a rival push's staging round to end; the whole push stays below the caller's long request timeout (30 s),
# so a hung peer shows in the reply as unreachable instead of the caller timing out on an update that applied.
STAGING_ROUND = PEER_CONNECT_TIMEOUT + PEER_REQUEST_TIMEOUT
COMMIT_WAIT = STAGING_ROUND + 1.0
PEER_COMMIT_TIMEOUT = COMMIT_WAIT + 2.0
PUSH_BUDGET = STAGING_ROUND + PEER_COMMIT_TIMEOUT + 1.0  # 22 s
assert PUSH_BUDGET < LONG_REQUEST_TIMEOUT
NO_ANSWER_OUTCOME = NO_ANSWER | {HOST_KEY_UNKNOWN, HOST_KEY_CHANGED, AUTH_FAILED}

# Cluster daemons node.start / node.stop manage, in start order (stopped in reverse): name, start command, stop
# command. The commands run with this agent's environment (CLUSTER_ROOT), so the daemons they start stay in the
# agent's process group (the lab stops, kills and pauses a node by that group). rgmanager joins in step 5.
DAEMONS: tuple[tuple[str, tuple[str, ...], tuple[str, ...], str], ...] = (
    ("cman", ("cman_tool", "join", "-w", "-t", "25"), ("cman_tool", "leave", "-w", "-t", "20"),
     "var/run/cluster/cman.sock"),
    ("rgmanager", ("rgmanager",), ("rgmanager", "--stop"), "var/run/cluster/rgmanager.sock"),
)
SERVICE_OPS = ("enable", "disable", "relocate", "restart", "stop", "freeze", "unfreeze", "migrate", "convalesce")
SERVICE_TIMEOUT = 28.0  # a service request waits for its outcome, below the caller's long request timeout (30 s)
DAEMON_TIMEOUT = 28.0  # below the client library's long request timeout (30 s): the caller hears the outcome
# node.reboot runs node.stop then node.start: up to four daemon commands, each bounded by DAEMON_TIMEOUT. Callers
# give it this timeout (the client library's long request timeout is 30 s).
REBOOT_TIMEOUT = 4 * DAEMON_TIMEOUT + 5.0
FENCE_TIMEOUT_ENV = "FENCE_NODE_TIMEOUT"  # fence_node's per-agent bound (cman.cli.fence_node)
NODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,254}")  # a name or an IPv4/IPv6 address, as dialled
MAX_TRUST_ENTRIES = 1024
MAX_AUTHKEY_BYTES = 4096
AUTHKEY_PATH = "etc/cluster/authkey"

log = logging.getLogger("ricci")


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    host: str
    port: int

    @property
    def key(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: the authenticated key (as shown in history and logs), the peer address, and the key's
    comment (what `author` of a stage request is attributed to) and (type, base64) (to notice its revocation)."""

    author: str
    address: str
    comment: str = ""
    key: tuple[str, str] = ("", "")


# -- the agent: functions over the store --------------------------------------------------------------------
class Agent:
    """What the agent knows and does; the SSH layer below only authenticates and carries requests."""

    def __init__(self, root: Path, settings: AgentSettings) -> None:
        self.root = root
        self.settings = settings
        self.store = ConfigStore(root)
        self.staging = Staging(self.store, commit_wait=COMMIT_WAIT)
        self.stop = threading.Event()
        self._no_config_logged = False
        self._poll_round = 0
        self._peers_client: RicciClient | None = None
        self._poll_client: RicciClient | None = None
        self._accepted: tuple[str, Candidate | None] | None = None  # (hash, the accepted copy as a Candidate)
        self.validator = validator_version()  # pinned when the agent starts (see store.validator_version)
        self.functions: dict[str, Callable[[dict[str, Any], Caller], dict[str, Any]]] = {
            "hello": self.hello,
            "cluster.get_config": self.get_config,
            "cluster.set_config": self.set_config,
            "cluster.stage": self.stage,
            "cluster.commit": self.commit,
            "cluster.abort": self.abort,
            "cluster.versions": self.versions,
            "cluster.get_version": self.get_version,
            "cluster.status": self.status,
            "cman.status": self.cman_status,
            "rgmanager.status": self.rg_status,
            **{f"service.{op}": self._service_function(op) for op in SERVICE_OPS},
            "service.lock": lambda args, caller: self._rg_request("lock", caller),
            "service.unlock": lambda args, caller: self._rg_request("unlock", caller),
            "node.start": self.node_start,
            "node.stop": self.node_stop,
            "node.reboot": self.node_reboot,
            "node.fence": self.node_fence,
            "node.trust": self.node_trust,
            "cluster.set_authkey": self.set_authkey,
            "log.get": self.log_get,
            "fence.history": self.fence_history,
        }
        self._client_key: str | None = None
        self._trust_lock = threading.Lock()

    # -- clients to the peers ------------------------------------------------------------------------------
    @property
    def source_address(self) -> str | None:
        """Talk to peers from the listening address (so their logs name this node), unless it is a wildcard."""
        return None if self.settings.address in ("0.0.0.0", "::", "") else self.settings.address

    @property
    def peers_client(self) -> RicciClient:
        if self._peers_client is None:
            self._peers_client = RicciClient.for_root(
                self.root, connect_timeout=PEER_CONNECT_TIMEOUT, request_timeout=PEER_REQUEST_TIMEOUT,
                source_address=self.source_address,
            )
        return self._peers_client

    @property
    def poll_client(self) -> RicciClient:
        if self._poll_client is None:
            self._poll_client = RicciClient.for_root(
                self.root, connect_timeout=PEER_CONNECT_TIMEOUT, request_timeout=PEER_REQUEST_TIMEOUT,
                max_connections=POLL_PEERS, source_address=self.source_address,
            )
        return self._poll_client

    def close(self) -> None:
        for client in (self._peers_client, self._poll_client):
            if client is not None:
                client.close()

    # -- dispatch ------------------------------------------------------------------------------------------
    def handle(self, fn: str, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        function = self.functions.get(fn)
        if function is None:
            raise RicciError(UNKNOWN_FUNCTION, f"unknown function '{fn[:80]}' (known: {', '.join(self.functions)})")
        try:
            return function(args, caller)
        except StoreRefusal as exc:
            raise RicciError(exc.code, exc.message, dict(exc.details)) from None

    # -- peers ---------------------------------------------------------------------------------------------
    def accepted_candidate(self) -> Candidate | None:
        """The accepted configuration (store.accepted: the last one recorded in the history, never a local edit
        of the live file) as a validated Candidate; None when there is none or it is not valid. A node's first
        configuration, found on disk while the history is empty, is adopted here.

        Validated once per copy (by hash): the poll loop, peers() and poll_interval() ask every round. A copy
        this agent installed is taken as the store's candidate without validating it again."""
        accepted = self.store.accepted()
        if accepted is None and self.store.adopt():
            accepted = self.store.accepted()
        if accepted is None:
            return None
        known = self._accepted
        if known is not None and known[0] == accepted.hash:
            return known[1]
        installed = self.store.installed
        cand: Candidate | None
        if installed is not None and installed.hash == accepted.hash:
            cand = installed
        else:
            try:
                cand = check_candidate(accepted.data, f"accepted cluster.conf version {accepted.version}")
            except StoreRefusal:
                cand = None
        self._accepted = (accepted.hash, cand)
        return cand

    def config_state(self) -> tuple[StoredConfig | None, dict[str, Any] | None]:
        """(the accepted copy, the local edit as `{version, hash, note}` or None): what hello, status and
        get_config report. A local edit is the live file when it differs from the accepted copy."""
        accepted = self.store.accepted()
        edit = self.store.local_edit()
        if edit is None:
            return accepted, None
        if not edit.hash:
            return accepted, {"version": None, "hash": None, "note": "cluster.conf is missing or unreadable"}
        return accepted, {"version": edit.version, "hash": edit.hash, "note": LOCAL_EDIT_NOTE}

    def peers(self, cand: Candidate | None = None) -> list[Peer]:
        """The other clusternodes of `cand` (default: the accepted config), with their agents' addresses."""
        if cand is None:
            cand = self.accepted_candidate()
            if cand is None:
                return []
        hosts = read_hosts(self.root)
        found = []
        for node in view(cand.conf).nodes:
            try:
                port = int(node.attrs.get(PORT_ATTRIBUTE, DEFAULT_PORT))
            except ValueError:
                port = DEFAULT_PORT
            host = hosts.get(node.name, node.name)
            if node.name == self.settings.node_name or (host, port) == (self.settings.address, self.settings.port):
                continue
            found.append(Peer(node.name, host, port))
        return found

    def poll_interval(self) -> float:
        cand = self.accepted_candidate()
        if cand is None:
            return POLL_DEFAULT
        value = (view(cand.conf).cman or {}).get("ccsd_poll")
        try:
            return max(POLL_MIN, int(value) / 1000.0) if value is not None else POLL_DEFAULT
        except ValueError:
            return POLL_DEFAULT

    # -- functions -----------------------------------------------------------------------------------------
    def hello(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """The accepted configuration's version and hash (what catch-up compares), and a local edit beside it."""
        accepted, edit = self.config_state()
        return {
            "protocol": PROTOCOL_VERSION,
            "agent": AGENT_VERSION,
            "hostname": socket.gethostname(),
            "node_name": self.settings.node_name,
            "cluster_name": accepted.cluster_name if accepted else None,
            "config_version": accepted.version if accepted else None,
            "config_hash": accepted.hash if accepted else None,
            "local_edit": edit,
            "client_key": self.client_key(),
        }

    def client_key(self) -> str:
        """This node's client public key line (created on first use): what a creator of a cluster authorises on
        the other nodes so this node can propagate to them."""
        if self._client_key is None:
            self._client_key = keys.ensure_client_key(self.root)
        return self._client_key

    def get_config(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """The accepted copy (what peers pull in catch-up), never a local edit of the live file."""
        accepted, edit = self.config_state()
        if accepted is None:
            raise RicciError(NO_CONFIG, f"{self.settings.node_name} has no accepted cluster.conf")
        return {**xml_fields(accepted.data), "version": accepted.version, "hash": accepted.hash, "local_edit": edit}

    def set_config(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        data = xml_arg(args)
        propagate = bool_arg(args, "propagate", False)
        cand = check_candidate(data)
        current = self.store.current()
        accepted = self.store.accepted() or current
        old_version = accepted.version if accepted else None
        reports = [r.to_dict() for r in cand.warnings]
        if not propagate:
            outcome = self.store.install(cand, caller.author)
            log.info("config_version %s installed (%s) by %s", cand.version, outcome, caller.author)
            return {"old_version": old_version, "new_version": cand.version, "reports": reports,
                    "nodes": {self.settings.node_name: {"outcome": outcome, "message": ""}}}
        if current is not None and current.hash != cand.hash:
            self.store.refuse_local_edit(current, cand)
            check_version(current, cand.version, cand.hash)
        nodes = self.propagate(cand, caller.author)
        return {"old_version": old_version, "new_version": cand.version, "reports": reports, "nodes": nodes}

    def stage(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        cand = self.staged_candidate(xml_arg(args), args)
        outcome = self.staging.stage(cand, stage_author(args, caller))
        return {"outcome": outcome, "version": cand.version, "hash": cand.hash,
                "reports": [r.to_dict() for r in cand.warnings]}

    def staged_candidate(self, data: bytes, args: dict[str, Any]) -> Candidate:
        """The copy a stage request carries, validated. A pushing agent that validated it in full names its
        `validator` and the copy's `hash`: when that validator is ours and the copy is for our cluster, validating
        again would compute the same answer (store.validated_elsewhere); else it is validated here in full."""
        digest, validator = args.get("hash"), args.get("validator")
        if isinstance(digest, str) and validator == self.validator:
            current = self.store.current()
            if current is not None and current.cluster_name is not None:
                cand = validated_elsewhere(data, digest, current.cluster_name)
                if cand is not None:
                    return cand
        return check_candidate(data)

    def commit(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        version, digest = int_arg(args, "version"), str_arg(args, "hash")
        outcome = self.staging.commit(version, digest)
        log.info("config_version %s committed (%s) by %s", version, outcome, caller.author)
        return {"outcome": outcome}

    def abort(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        self.staging.abort(int_arg(args, "version"), str_arg(args, "hash"))
        return {}

    def versions(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        current = self.store.current()
        accepted = self.store.accepted()
        return {
            "versions": [
                {**e.to_dict(), "current": current is not None and e.hash == current.hash}
                for e in self.store.versions()
            ],
            "current": {"version": current.version, "hash": current.hash} if current else None,
            "accepted": {"version": accepted.version, "hash": accepted.hash} if accepted else None,
        }

    def get_version(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        entry, data = self.store.get_version(int_arg(args, "version"))
        return {**xml_fields(data), **entry.to_dict()}

    def status(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """Each node's version and hash as it answers now, so drift is visible."""
        me = self.hello({}, caller)
        peers = self.peers()
        answers = self.peers_client.fan_out([(p.host, p.port) for p in peers], "hello", timeout=3.0) if peers else {}
        nodes: dict[str, dict[str, Any]] = {
            self.settings.node_name: {
                "address": self.settings.address, "port": self.settings.port, "reachable": True,
                "config_version": me["config_version"], "config_hash": me["config_hash"],
                "local_edit": me["local_edit"], "message": "",
            }
        }
        for peer in peers:
            answer = answers[peer.key]
            result = answer.result or {}
            edit = result.get("local_edit")
            nodes[peer.name] = {
                "address": peer.host, "port": peer.port, "reachable": answer.ok,
                "config_version": result.get("config_version"), "config_hash": result.get("config_hash"),
                "local_edit": edit if isinstance(edit, dict) else None, "message": answer.message or "",
            }
        copies = {(n["config_version"], n["config_hash"]) for n in nodes.values() if n["reachable"]}
        newest = max((c for c in copies if c[0] is not None), key=lambda c: (c[0], _neg(c[1])), default=None)
        edited = sorted(name for name, n in nodes.items() if n["reachable"] and n["local_edit"])
        for node in nodes.values():
            node["in_sync"] = node["reachable"] and (node["config_version"], node["config_hash"]) == newest
            if node["local_edit"] and not node["message"]:
                node["message"] = LOCAL_EDIT_NOTE
        return {
            "cluster_name": me["cluster_name"], "node_name": self.settings.node_name,
            "config_version": me["config_version"], "config_hash": me["config_hash"],
            "local_edit": me["local_edit"], "drift": len(copies) > 1 or bool(edited), "edited_locally": edited,
            "nodes": nodes,
            "cman": self._cman_summary(),
        }

    def _cman_summary(self) -> dict[str, Any]:
        """This node's view of the cluster manager, for cluster.status: membership, quorum and fencing states
        (cman.status has everything)."""
        full = self.cman_status({}, Caller("", ""))
        if not full.get("running"):
            return full
        return {key: full.get(key) for key in ("running", "membership_state", "generation", "members",
                                                "view_confirmed", "quorum", "fencing", "activity_blocked")}

    def node_start(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """Start this node's cluster daemons (cman first), as `service cman start` did; one already running is
        left alone."""
        log.info("node.start requested via %s", caller.author)
        return self._daemons("start", [(name, start, sock) for name, start, _, sock in DAEMONS])

    def node_stop(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        log.info("node.stop requested via %s", caller.author)
        return self._daemons("stop", [(name, stop, sock) for name, _, stop, sock in reversed(DAEMONS)])

    def node_reboot(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """node.stop then node.start: a restart of this node's cluster daemons (the agent cannot reboot the
        machine it runs on; the lab cannot reboot a machine at all). The reply is node.start's, with action
        "reboot" and `stopped` (node.stop's daemons)."""
        log.info("node.reboot requested via %s", caller.author)
        stopped = self._daemons("stop", [(name, stop, sock) for name, _, stop, sock in reversed(DAEMONS)])
        started = self._daemons("start", [(name, start, sock) for name, start, _, sock in DAEMONS])
        return {"action": "reboot", "daemons": started["daemons"], "stopped": stopped["daemons"]}

    def node_fence(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """`fence_node NODE` on this node (the methods of its cluster.conf), bounded by DAEMON_TIMEOUT: `{ok, exit,
        message}` (message: fence_node's last line, e.g. "fence node2 success"). A failed fence is a reply with
        ok false, not an error."""
        node = str_arg(args, "node")
        if not NODE_NAME.fullmatch(node):
            raise RicciError(BAD_ARGUMENTS, "'node' must be a cluster node name (letters, digits, '.', '_', '-', "
                             "not starting with '-')")
        log.info("node.fence %s requested via %s", node, caller.author)
        result = self._run_daemon_command(("fence_node", node), {FENCE_TIMEOUT_ENV: str(int(DAEMON_TIMEOUT) - 3)})
        result.setdefault("exit", None)
        log.info("node.fence %s: %s", node, result["message"] or ("ok" if result["ok"] else "failed"))
        return result

    def node_trust(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """Authorise client keys and pin peers' host keys (what a creator of a cluster does on every node so the
        nodes can talk among themselves). Every entry is checked before anything is written."""
        authorize = args.get("authorize", [])
        pin = args.get("pin", [])
        if not isinstance(authorize, list) or not all(isinstance(line, str) for line in authorize):
            raise RicciError(BAD_ARGUMENTS, "'authorize' must be a list of public key lines")
        if not isinstance(pin, list) or not all(isinstance(entry, dict) for entry in pin):
            raise RicciError(BAD_ARGUMENTS, "'pin' must be a list of {host, port, key} objects")
        if len(authorize) > MAX_TRUST_ENTRIES or len(pin) > MAX_TRUST_ENTRIES:
            raise RicciError(BAD_ARGUMENTS, f"at most {MAX_TRUST_ENTRIES} entries in 'authorize' and in 'pin'")
        for index, line in enumerate(authorize):
            _check_key_line(line, f"authorize[{index}]")
        pins = [_pin_entry(entry, index) for index, entry in enumerate(pin)]
        added = 0
        with self._trust_lock:
            for line in authorize:
                added += keys.authorize(self.root, line)
            for host, port, line in pins:
                keys.pin_host_key(self.root, host, port, line)
        log.info("node.trust via %s: %d key(s) authorised (%d new), %d host key(s) pinned", caller.author,
                 len(authorize), added, len(pins))
        return {"authorized": added, "pinned": len(pins)}

    def set_authkey(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """Install the cluster key (etc/cluster/authkey, 0600, atomically) when the node has none; the same key
        again is `changed: false`; another key is refused: replacing it would cut this node off its cluster."""
        from cman import wire

        text = str_arg(args, "key_b64")
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise RicciError(BAD_ARGUMENTS, "'key_b64' is not valid base64") from None
        if not wire.MIN_KEY_BYTES <= len(key) <= MAX_AUTHKEY_BYTES:
            raise RicciError(BAD_ARGUMENTS, f"the cluster key must be {wire.MIN_KEY_BYTES} to {MAX_AUTHKEY_BYTES} "
                             f"bytes, not {len(key)}")
        path = wire.key_path(self.root)
        with self._trust_lock:
            if path.exists():
                try:
                    same = hmac.compare_digest(path.read_bytes(), key)
                except OSError as exc:
                    raise RicciError(INTERNAL, f"cannot read {AUTHKEY_PATH}: {exc.strerror}") from None
                if not same:
                    log.warning("cluster.set_authkey via %s refused: this node holds another cluster key",
                                caller.author)
                    raise RicciError(BAD_ARGUMENTS, f"{self.settings.node_name} already holds another cluster key "
                                     f"({AUTHKEY_PATH}); it is never replaced remotely: remove it on the node "
                                     "first if it must change")
                return {"changed": False}
            wire.write_key(self.root, key)
        log.info("cluster key installed via %s", caller.author)
        return {"changed": True}

    def _daemons(self, action: str, commands: list[tuple[str, tuple[str, ...], str]]) -> dict[str, Any]:
        from cman import control

        results: dict[str, Any] = {}
        for name, argv, socket_name in commands:
            running = self._answers(control, socket_name)
            if (action == "start" and running) or (action == "stop" and not running):
                results[name] = {"ok": True, "message": f"{name} is already {'running' if running else 'stopped'}"}
                continue
            results[name] = self._run_daemon_command(argv)
            if not results[name]["ok"]:
                raise RicciError(DAEMON_FAILED, f"{action} of {name} failed: {results[name]['message']}")
        return {"action": action, "daemons": results}

    def _answers(self, control, socket_name: str) -> bool:
        try:
            control.request(self.root, "status", timeout=1.0, socket_name=socket_name)
        except control.ControlError:
            return False
        return True

    def _run_daemon_command(self, argv: tuple[str, ...], extra_env: dict[str, str] | None = None
                            ) -> dict[str, Any]:
        import shutil
        import subprocess
        import sys

        bindir = str(Path(sys.executable).parent)
        env = dict(os.environ, CLUSTER_ROOT=str(self.root), **(extra_env or {}))
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        program = shutil.which(argv[0], path=env["PATH"])
        if program is None:
            return {"ok": False, "exit": None, "message": f"{argv[0]} not found"}
        try:
            done = subprocess.run([program, *argv[1:]], env=env, cwd=self.root, stdin=subprocess.DEVNULL,
                                  capture_output=True, timeout=DAEMON_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return {"ok": False, "exit": None,
                    "message": f"{' '.join(argv)} did not finish within {DAEMON_TIMEOUT:.0f} s"}
        text = (done.stderr or done.stdout).decode(errors="replace").strip().splitlines()
        return {"ok": done.returncode == 0, "exit": done.returncode, "message": text[-1] if text else ""}

    def rg_status(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """rgmanager's status on this node (clustat --json's services and members), or `running: false`."""
        from cman import control
        from rgmanager.endpoints import RG_SOCKET

        try:
            return {"running": True, **control.request(self.root, "status", timeout=2.0, socket_name=RG_SOCKET)}
        except control.ControlError as exc:
            return {"running": False, "message": exc.message}

    def _service_function(self, op: str) -> Callable[[dict[str, Any], Caller], dict[str, Any]]:
        def function(args: dict[str, Any], caller: Caller) -> dict[str, Any]:
            service = args.get("service")
            target = args.get("target")
            if not isinstance(service, str) or not service or (target is not None and not isinstance(target, str)):
                raise RicciError(BAD_ARGUMENTS, f"service.{op} needs 'service' (and optionally 'target', a node)")
            log.info("service.%s %s%s requested via %s", op, service, f" -> {target}" if target else "",
                     caller.author)
            return self._rg_request("service", caller, op=op, service=service, target=target)
        return function

    def _rg_request(self, command: str, caller: Caller, **args: Any) -> dict[str, Any]:
        """Forward a request to this node's rgmanager (what clusvcadm does locally): its reply, RG code included."""
        from cman import control
        from rgmanager.endpoints import RG_SOCKET

        try:
            return control.request(self.root, command, timeout=SERVICE_TIMEOUT, socket_name=RG_SOCKET, **args)
        except control.ControlError as exc:
            raise RicciError(NOT_AVAILABLE, f"rgmanager on {self.settings.node_name}: {exc.message}") from None

    def cman_status(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """The cluster manager's status on this node (cman_tool status --json), or `running: false`."""
        from cman import control

        try:
            return {"running": True, **control.request(self.root, "status", timeout=2.0)}
        except control.ControlError as exc:
            return {"running": False, "message": exc.message}

    def log_get(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        age = int_arg(args, "age", 3600)
        tags = args.get("tags") or []
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise RicciError(BAD_ARGUMENTS, "'tags' must be a list of strings")
        return {"entries": read_log_entries(self.root / LOG_PATH.parent, age, set(tags))}

    def fence_history(self, args: dict[str, Any], caller: Caller) -> dict[str, Any]:
        """This node's fence history (what `cman_tool fence --history` prints), newest last."""
        from cman.fence_agents import FenceHistory

        limit = int_arg(args, "limit", 100)
        if not 1 <= limit <= 1000:
            raise RicciError(BAD_ARGUMENTS, "'limit' must be 1..1000")
        node = args.get("node")
        if node is not None and not isinstance(node, str):
            raise RicciError(BAD_ARGUMENTS, "'node' must be a string")
        return {"entries": FenceHistory(self.root).entries(node, limit)}

    # -- peers: the live configuration must be usable ------------------------------------------------------
    def _note_config_state(self) -> None:
        """Log once (until it is fixed) that the node has no valid config: catch-up cannot find its peers then."""
        usable = self.accepted_candidate() is not None
        if not usable and not self._no_config_logged:
            log.warning("no valid %s on this node: catch-up cannot find the peers until a valid configuration is "
                        "installed (cluster.set_config, or by hand on a node with no history yet)",
                        self.store.conf_path)
        self._no_config_logged = not usable

    # -- propagation (two-phase) ---------------------------------------------------------------------------
    def propagate(self, cand: Candidate, author: str) -> dict[str, dict[str, str]]:
        """Stage on this node and every peer in parallel, then commit where staged, within PUSH_BUDGET.

        Raises race_lost when a simultaneous update of the same version won everywhere; when some nodes took
        this copy and others refused it for the race, the reply lists both (a partial win, logged)."""
        deadline = time.monotonic() + PUSH_BUDGET
        peers = self.peers(cand)
        me = self.settings.node_name
        by_key = {p.key: p for p in peers}
        targets = [(p.host, p.port) for p in peers]
        # The copy's hash and our validator: a peer running the same validator need not validate it again.
        stage_args = {**xml_fields(cand.data), "author": author, "hash": cand.hash, "validator": self.validator}

        nodes: dict[str, dict[str, str]] = {}
        local_outcome, local_error = _attempt(lambda: self.staging.stage(cand, author))
        answers = (self.peers_client.fan_out(targets, "cluster.stage", stage_args, timeout=PEER_REQUEST_TIMEOUT)
                   if targets else {})
        conflict = local_error is not None and local_error.code in (RACE_LOST, SAME_VERSION, NOT_GREATER)
        if any(not a.ok and a.code in (RACE_LOST, SAME_VERSION) for a in answers.values()):
            conflict = True
        if conflict:
            staged = [k for k, a in answers.items() if a.ok and (a.result or {}).get("outcome") == "staged"]
            self._abort_everywhere(cand, local_outcome == "staged", staged)
            log.warning("update to config_version %s by %s lost a race with a simultaneous update", cand.version,
                        author)
            raise RicciError(RACE_LOST, RACE_TEXT, {"version": cand.version})
        if local_error is not None:
            raise local_error

        to_commit = [k for k, a in answers.items() if a.ok and (a.result or {}).get("outcome") == "staged"]
        for key, answer in answers.items():
            name = by_key[key].name
            if answer.ok and key not in to_commit:
                nodes[name] = {"outcome": "already", "message": ""}
            elif not answer.ok:
                nodes[name] = _failed_outcome(answer, "stage")

        commit_args = {"version": cand.version, "hash": cand.hash}
        local_result: list[tuple[str | None, RicciError | None]] = []
        local_thread = None
        if local_outcome == "staged":
            local_thread = threading.Thread(
                target=lambda: local_result.append(_attempt(lambda: self.staging.commit(cand.version, cand.hash)))
            )
            local_thread.start()
        commit_timeout = max(1.0, min(PEER_COMMIT_TIMEOUT, deadline - time.monotonic()))
        commits = (
            self.peers_client.fan_out([(by_key[k].host, by_key[k].port) for k in to_commit], "cluster.commit",
                                      commit_args, timeout=commit_timeout)
            if to_commit else {}
        )
        if local_thread is not None:
            local_thread.join()
            outcome, error = local_result[0]
        else:
            outcome, error = local_outcome, None
        for key, answer in commits.items():
            name = by_key[key].name
            nodes[name] = ({"outcome": (answer.result or {}).get("outcome", "updated"), "message": ""}
                           if answer.ok else _failed_outcome(answer, "commit"))
        took_it = (outcome == "updated" and error is None) or any(n["outcome"] == "updated" for n in nodes.values())
        if error is not None:
            if not took_it:
                if error.code == RACE_LOST:
                    raise RicciError(RACE_LOST, RACE_TEXT, {"version": cand.version, "nodes": nodes})
                raise error
            nodes = {me: {"outcome": "refused", "message": error.message}, **nodes}
        else:
            nodes = {me: {"outcome": outcome or "already", "message": ""}, **nodes}
        summary = ", ".join(f"{n}: {o['outcome']}" for n, o in nodes.items())
        if any(o["message"] == RACE_TEXT for o in nodes.values()):
            log.warning("Update of cluster.conf to config_version %s by %s partly lost a race with a simultaneous "
                        "update (catch-up settles every node on one copy): %s", cand.version, author, summary)
        else:
            log.info("Update of cluster.conf to config_version %s by %s: %s", cand.version, author, summary)
        return nodes

    def _abort_everywhere(self, cand: Candidate, local: bool, keys_: list[str]) -> None:
        if local:
            self.staging.abort(cand.version, cand.hash)
        if keys_:
            targets = [(k.rsplit(":", 1)[0], int(k.rsplit(":", 1)[1])) for k in keys_]
            self.peers_client.fan_out(targets, "cluster.abort", {"version": cand.version, "hash": cand.hash})

    # -- catch-up ------------------------------------------------------------------------------------------
    def catch_up_loop(self) -> None:
        """On start, and then every ccsd_poll, ask the next peers on the node ring until STARTUP_PEERS (on start)
        or POLL_PEERS of them answered (unanswering ones are skipped). A newer copy on any live node reaches every
        live node within ceil((live nodes - 1) / POLL_PEERS) rounds, however many nodes are down; an agent that
        starts costs its cluster STARTUP_PEERS connections, not one per node (a 64-node lab starting at once
        made ~4000 SSH handshakes when each agent asked every peer)."""
        first = True
        while not self.stop.is_set():
            try:
                peers = self.peers()
                if peers:
                    self._no_config_logged = False
                else:
                    self._note_config_state()
                if peers:
                    ring = ring_order(peers, self.settings.node_name)
                    if first:  # its connections stay open in peers_client for the pushes to come
                        self.catch_up(ring, self.peers_client, want=STARTUP_PEERS)
                    else:
                        self.catch_up(ring, self.poll_client, want=POLL_PEERS)
                first = False
            except Exception:  # the loop must survive anything a peer or the disk throws at it
                log.error("catch-up round failed: %s", traceback.format_exc().strip().splitlines()[-1])
            self.stop.wait(self.poll_interval())

    def ask_versions(self, peers: list[Peer], client: RicciClient, want: int | None = None
                     ) -> list[tuple[Peer, dict[str, Any]]]:
        """`hello` answers of `peers`: all of them at once, or (with `want`) in list order, batch after batch,
        until `want` answered or every peer was asked."""
        answered: list[tuple[Peer, dict[str, Any]]] = []
        asked = 0
        while asked < len(peers) and (want is None or len(answered) < want):
            size = len(peers) - asked if want is None else want - len(answered)
            batch = peers[asked:asked + size]
            asked += len(batch)
            results = client.fan_out([(p.host, p.port) for p in batch], "hello", timeout=3.0)
            answered += [(p, results[p.key].result or {}) for p in batch if results[p.key].ok]
        return answered

    def catch_up(self, peers: list[Peer], client: RicciClient, want: int | None = None) -> str | None:
        """Pull the best copy among `peers` (see ask_versions) if it beats ours; returns the peer it came from.

        Ours is the accepted copy; peers advertise and serve theirs. When this node's live file is a local edit,
        only a copy with a strictly greater version than the edit is pulled (the store then replaces the edit,
        keeping it as cluster.conf.old); a copy that cannot replace it is not fetched round after round."""
        current = self.store.accepted()
        if current is None:
            return None
        edit = self.store.local_edit()
        best: tuple[int, str, Peer] | None = None
        for peer, info in self.ask_versions(peers, client, want):
            if info.get("cluster_name") != current.cluster_name:
                continue
            version, digest = info.get("config_version"), info.get("config_hash")
            if not isinstance(version, int) or not isinstance(digest, str):
                continue
            if best is None or better_copy(version, digest, best[0], best[1]):
                best = (version, digest, peer)
        if best is None or not better_copy(best[0], best[1], current.version, current.hash):
            return None
        if edit is not None and edit.hash and best[0] <= edit.version:
            return None
        version, digest, peer = best
        try:
            remote = client.call(peer.host, peer.port, "cluster.get_config")
            cand = check_candidate(xml_arg(remote), f"cluster.conf from {peer.name}")
            if cand.hash != digest and not better_copy(cand.version, cand.hash, current.version, current.hash):
                return None
            if cand.conf.name != current.cluster_name:
                return None
            outcome = self.store.install(cand, f"catch-up from {peer.name}", tie_break=edit is None)
        except (RicciError, StoreRefusal) as exc:
            log.warning("catch-up from %s failed: %s", peer.name, getattr(exc, "message", exc))
            return None
        if outcome == "updated":
            log.info("Remote copy of cluster.conf is newer than local copy: config_version %s -> %s from %s",
                     current.version, cand.version, peer.name)
        return peer.name


def ring_order(peers: list[Peer], me: str) -> list[Peer]:
    """The peers in name order, starting after `me` and wrapping: each node polls its next live neighbours, so
    each agent keeps about POLL_PEERS poll connections however large the cluster."""
    ordered = sorted(peers, key=lambda p: p.name)
    return [p for p in ordered if p.name > me] + [p for p in ordered if p.name <= me]


def stage_author(args: dict[str, Any], caller: Caller) -> str:
    """The history author of a staged copy: the pushing agent passes who pushed to it ("<given> via <its key>");
    a caller cannot claim another identity without its own key showing."""
    given = args.get("author")
    if given is None:
        return caller.author
    if not isinstance(given, str):
        raise RicciError(BAD_ARGUMENTS, "'author' must be a string")
    given = " ".join(given.split())[:200]  # one line in history and logs
    return f"{given} via {caller.comment or caller.author}"


def _neg(digest: str | None) -> tuple[int, ...]:
    return tuple(-ord(c) for c in digest or "")


def _attempt(action: Callable[[], str]) -> tuple[str | None, RicciError | None]:
    try:
        return action(), None
    except StoreRefusal as exc:
        return None, RicciError(exc.code, exc.message, dict(exc.details))
    except RicciError as exc:
        return None, exc


def _failed_outcome(answer: NodeResult, phase: str) -> dict[str, str]:
    if answer.code in NO_ANSWER_OUTCOME:
        prefix = "" if phase == "stage" else "staged, but the commit was not acknowledged: "
        return {"outcome": "unreachable", "message": prefix + (answer.message or "")}
    return {"outcome": "refused", "message": answer.message or answer.code or "refused"}


def _check_key_line(line: str, where: str) -> None:
    """A single public key line we can use, else bad_arguments naming `where` (never the key itself)."""
    if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in line.strip()):
        raise RicciError(BAD_ARGUMENTS, f"{where}: the public key line contains a control character (a newline?)")
    try:
        keys.parse_public_key(line)
    except keys.KeyFileError as exc:
        raise RicciError(BAD_ARGUMENTS, f"{where}: {exc}") from None


def _pin_entry(entry: dict[str, Any], index: int) -> tuple[str, int, str]:
    where = f"pin[{index}]"
    host, port, line = entry.get("host"), entry.get("port", DEFAULT_PORT), entry.get("key")
    if not isinstance(host, str) or not HOST_NAME.fullmatch(host):
        raise RicciError(BAD_ARGUMENTS, f"{where}: 'host' must be a host name or address")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise RicciError(BAD_ARGUMENTS, f"{where}: 'port' must be a port number (1-65535)")
    if not isinstance(line, str):
        raise RicciError(BAD_ARGUMENTS, f"{where}: 'key' must be a public key line")
    _check_key_line(line, where)
    return host, port, line


# -- arguments -----------------------------------------------------------------------------------------------
def bool_arg(args: dict[str, Any], name: str, default: bool) -> bool:
    value = args.get(name, default)
    if not isinstance(value, bool):
        raise RicciError(BAD_ARGUMENTS, f"'{name}' must be true or false")
    return value


def int_arg(args: dict[str, Any], name: str, default: int | None = None) -> int:
    value = args.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RicciError(BAD_ARGUMENTS, f"'{name}' must be an integer" + ("" if name in args else " (missing)"))
    return value


def str_arg(args: dict[str, Any], name: str, default: str | None = None) -> str:
    value = args.get(name, default)
    if not isinstance(value, str):
        raise RicciError(BAD_ARGUMENTS, f"'{name}' must be a string" + ("" if name in args else " (missing)"))
    return value


# -- logs ----------------------------------------------------------------------------------------------------
LOG_FORMAT = "%(asctime)s %(name)s[%(process)d]: %(message)s"
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)\S* (\S+?)(?:\[(\d+)\])?: (.*)$")
MAX_LOG_ENTRIES = 2000
MAX_LOG_READ = 4 * 1024 * 1024  # bytes read from the end of each log file


class _IsoFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created)) + f".{int(record.msecs):03d}"


def read_log_entries(directory: Path, age: int, tags: set[str]) -> list[dict[str, Any]]:
    """Entries of the last `age` seconds from `directory/*.log`, oldest first, at most MAX_LOG_ENTRIES (the newest);
    `tags` filters by program name. Symlinks and anything but regular files are skipped (a link could point a
    reader at any file the agent can read; a FIFO would block)."""
    now = time.time()
    entries: list[dict[str, Any]] = []
    for path in sorted(directory.glob("*.log")):
        text = _read_log_tail(path)
        if text is None:
            continue
        newest: deque[dict[str, Any]] = deque(maxlen=MAX_LOG_ENTRIES)  # a file's lines are in time order
        for line in text.splitlines():
            match = LOG_LINE.match(line)
            if not match:
                continue
            stamp, tag, pid, message = match.groups()
            if tags and tag not in tags:
                continue
            try:
                when = time.mktime(time.strptime(stamp.split(".")[0], "%Y-%m-%dT%H:%M:%S"))
            except ValueError:
                continue
            if now - when > age:
                continue
            newest.append({"age": max(0, int(now - when)), "time": stamp, "tag": tag,
                           "pid": int(pid) if pid else None, "msg": message})
        entries += newest
        if len(entries) > MAX_LOG_ENTRIES:
            entries.sort(key=lambda e: e["time"])
            del entries[:-MAX_LOG_ENTRIES]
    entries.sort(key=lambda e: e["time"])
    return entries[-MAX_LOG_ENTRIES:]


def _read_log_tail(path: Path) -> str | None:
    """The last MAX_LOG_READ bytes of a regular file, not following a symlink; None when it is anything else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None  # a symlink (ELOOP), gone, or unreadable
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        f.seek(max(0, st.st_size - MAX_LOG_READ))
        return f.read(MAX_LOG_READ).decode("utf-8", "replace")


def setup_logging(root: Path) -> None:
    path = root / LOG_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(_IsoFormatter(LOG_FORMAT))
    for name, level in (("ricci", logging.INFO), ("paramiko", logging.CRITICAL)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


# -- the SSH layer -------------------------------------------------------------------------------------------
class _Authorized:
    """authorized_keys, re-read when the file changes; `generation` counts the changes seen."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._stamp: tuple[int, int, int] | None = None
        self._keys = keys.AuthorizedKeys((), ())
        self._lock = threading.Lock()
        self.generation = 0

    def get(self) -> keys.AuthorizedKeys:
        path = self.root / keys.AUTHORIZED_KEYS
        try:
            st = os.stat(path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = (0, 0, 0)
        with self._lock:
            if stamp != self._stamp:
                self._keys = keys.load_authorized_keys(self.root)
                self._stamp = stamp
                self.generation += 1
                for why in self._keys.ignored:
                    log.warning("%s", why)
            return self._keys


class _Session(paramiko.ServerInterface):
    """One SSH connection: authentication and channel policy.

    paramiko calls check_auth_publickey for a key query (no signature) and again before verifying a signature:
    it only says whether the key is listed. Who the caller is gets settled by `identify()`, once paramiko has
    verified a signature: then the last key this session approved is the one that signed."""

    def __init__(self, server: RicciServer, address: str, transport: paramiko.Transport) -> None:
        self.server = server
        self.address = address
        self.transport = transport
        self.attempts = 0
        self.failures = 0
        self.approved: tuple[keys.PublicKey, str] | None = None  # the last key found in authorized_keys, its fp
        self.awaiting_signature = False  # approved by the last check: a failure now means a bad signature
        self.caller: Caller | None = None
        self.gave_up = threading.Event()  # too many attempts or failures: the connection is to be closed
        self.settled = threading.Event()  # gave up, or the caller is identified: the login monitor may stop
        self._lock = threading.Lock()
        self.channels = 0
        self._accepted: list[paramiko.Channel] = []

    # -- authentication ------------------------------------------------------------------------------------
    def get_allowed_auths(self, username: str) -> str:
        # paramiko calls this only to send a failure; right after an approved key, that is a bad signature
        if self.awaiting_signature and self.approved is not None:
            self.awaiting_signature = False
            key, fp = self.approved
            self._refuse(f"publickey {key.key_type} {fp}: invalid signature")
        return "publickey"

    def check_auth_none(self, username: str) -> int:
        self._attempt()
        return paramiko.AUTH_FAILED

    def check_auth_password(self, username: str, password: str) -> int:
        if self._attempt():
            self._refuse("password authentication is not accepted")
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        if not self._attempt():
            return paramiko.AUTH_FAILED
        fp = keys.fingerprint_of_blob(key.asbytes())
        found = self.server.authorized.get().find(key.get_name(), key.get_base64())
        if found is None:
            return self._refuse(f"publickey {key.get_name()} {fp} is not in authorized_keys")
        self.approved = (found, fp)
        self.awaiting_signature = True
        return paramiko.AUTH_SUCCESSFUL  # "this key may sign": paramiko answers a query, or verifies the signature

    def _attempt(self) -> bool:
        """Count one userauth request; False (and give up on the connection) past MAX_AUTH_ATTEMPTS."""
        self.awaiting_signature = False
        self.attempts += 1
        if self.attempts <= MAX_AUTH_ATTEMPTS:
            return True
        if not self.gave_up.is_set():
            log.warning("closing the connection from %s after %d authentication attempts without success",
                        self.address, MAX_AUTH_ATTEMPTS)
            self.gave_up.set()
            self.settled.set()
        return False

    def _refuse(self, why: str) -> int:
        self.failures += 1
        log.warning("auth refused from %s: %s (failure %d of %d)", self.address, why, self.failures,
                    MAX_AUTH_FAILURES)
        if self.failures >= MAX_AUTH_FAILURES and not self.gave_up.is_set():
            time.sleep(AUTH_FAILURE_DELAY)  # this connection's transport thread only
            log.warning("closing the connection from %s after %d failed authentications", self.address,
                        self.failures)
            self.gave_up.set()
            self.settled.set()
        return paramiko.AUTH_FAILED

    def identify(self) -> Caller | None:
        """The authenticated caller, settled (and logged) once paramiko verified a signature; else None."""
        with self._lock:
            if self.caller is None and self.approved is not None and self.transport.is_authenticated():
                key, fp = self.approved
                self.caller = Caller(f"{key.comment or 'key'} ({fp})", self.address, key.comment,
                                     (key.key_type, key.blob_b64))
                log.info("auth accepted from %s: publickey %s %s%s", self.address, key.key_type, fp,
                         f" ({key.comment})" if key.comment else "")
                self.settled.set()
            return self.caller

    # -- channels ------------------------------------------------------------------------------------------
    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind != "session" or self.identify() is None:
            log.warning("refused a '%s' channel from %s", kind[:40], self.address)
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED
        with self._lock:
            if self.channels >= MAX_CHANNELS:
                return paramiko.OPEN_FAILED_RESOURCE_SHORTAGE
            self.channels += 1
        return paramiko.OPEN_SUCCEEDED

    def reap_channels(self) -> None:
        """Take the channels paramiko queued for accept() (it keeps them until then) and count the closed ones
        out of MAX_CHANNELS."""
        while (channel := self.transport.accept(0)) is not None:
            self._accepted.append(channel)
        closed = [c for c in self._accepted if c.closed]
        if closed:
            self._accepted = [c for c in self._accepted if not c.closed]
            with self._lock:
                self.channels = max(0, self.channels - len(closed))

    def check_channel_subsystem_request(self, channel: paramiko.Channel, name: str) -> bool:
        caller = self.identify()
        if name != SUBSYSTEM or caller is None:
            log.warning("refused subsystem '%s' from %s", name[:40], self.address)
            return False
        threading.Thread(target=self.server.serve_channel, args=(channel, caller), daemon=True,
                         name=f"ricci-channel-{self.address}").start()
        return True

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        return False

    def check_channel_shell_request(self, channel: paramiko.Channel) -> bool:
        return False

    def check_channel_pty_request(self, *args: Any) -> bool:
        return False

    def check_port_forward_request(self, address: str, port: int) -> bool:
        log.warning("refused port forwarding from %s", self.address)
        return False

    def check_channel_direct_tcpip_request(self, chanid: int, origin: Any, destination: Any) -> int:
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class RicciServer:
    """Listens, authenticates, and serves the `ricci` subsystem for one Agent."""

    def __init__(self, agent: Agent, host_key: paramiko.PKey) -> None:
        self.agent = agent
        self.host_key = host_key
        self.authorized = _Authorized(agent.root)
        self.max_message = agent.settings.max_message_bytes
        self.login_grace = agent.settings.login_grace
        self._unauthenticated = 0
        self._waiting_from: Counter[str] = Counter()  # unauthenticated connections per source address
        self._lock = threading.Lock()
        self._sessions: dict[paramiko.Transport, _Session] = {}  # authenticated connections
        self._generation = self.authorized.generation
        self.listener: socket.socket | None = None

    def bind(self, address: str, port: int) -> None:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((address, port))
        sock.listen(128)
        self.listener = sock

    def serve_forever(self) -> None:
        assert self.listener is not None
        next_housekeeping = time.monotonic() + HOUSEKEEPING
        while not self.agent.stop.is_set():
            readable, _, _ = select.select([self.listener], [], [], HOUSEKEEPING)
            if readable:
                try:
                    sock, addr = self.listener.accept()
                except OSError:
                    continue
                self._admit(sock, addr[0], addr[1])
            if time.monotonic() >= next_housekeeping:
                self.housekeeping()
                next_housekeeping = time.monotonic() + HOUSEKEEPING

    def housekeeping(self) -> None:
        """Forget finished connections, count closed channels out, and close the sessions of revoked keys."""
        current = self.authorized.get()
        revoked = self.authorized.generation != self._generation
        self._generation = self.authorized.generation
        with self._lock:
            for transport in [t for t in self._sessions if not t.is_active()]:
                del self._sessions[transport]
            sessions = list(self._sessions.items())
        for transport, session in sessions:
            caller = session.caller
            if revoked and caller is not None and current.find(*caller.key) is None:
                log.warning("closing the connection from %s: its key %s is no longer in authorized_keys",
                            caller.address, caller.author)
                close_transport(transport)
                with self._lock:
                    self._sessions.pop(transport, None)
                continue
            session.reap_channels()

    def _admit(self, sock: socket.socket, host: str, port: int) -> None:
        address = f"{host}:{port}"
        with self._lock:
            if self._unauthenticated >= MAX_UNAUTHENTICATED:
                why = f"{MAX_UNAUTHENTICATED} connections are already waiting to authenticate"
            elif self._waiting_from[host] >= MAX_UNAUTHENTICATED_PER_SOURCE:
                why = f"{MAX_UNAUTHENTICATED_PER_SOURCE} connections from {host} are already waiting to authenticate"
            else:
                why = ""
                self._unauthenticated += 1
                self._waiting_from[host] += 1
        if why:
            log.warning("refused connection from %s: %s", address, why)
            with contextlib.suppress(OSError):
                sock.close()
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._login, args=(sock, host, address), daemon=True,
                             name=f"ricci-login-{address}").start()
        except Exception:
            self._release(host)
            with contextlib.suppress(OSError):
                sock.close()
            raise

    def _release(self, host: str) -> None:
        with self._lock:
            self._unauthenticated -= 1
            self._waiting_from[host] -= 1
            if self._waiting_from[host] <= 0:
                del self._waiting_from[host]

    def _login(self, sock: socket.socket, host: str, address: str) -> None:
        """Run the SSH handshake and wait (bounded) until paramiko has verified a signature; then free the
        unauthenticated slot. The connection is closed when the grace time ends or the session gives up."""
        transport = None
        try:
            transport = paramiko.Transport(sock)
            session = _Session(self, address, transport)
            transport.add_server_key(self.host_key)
            grace = self.login_grace
            transport.banner_timeout = transport.handshake_timeout = transport.auth_timeout = grace
            transport.start_server(event=threading.Event(), server=session)
            deadline = time.monotonic() + grace
            # Woken as soon as the client opens its channel (identify()): a client that connects, asks and
            # closes in a few ms must not keep its unauthenticated slot for a polling period (sequential
            # connections from one address would hit MAX_UNAUTHENTICATED_PER_SOURCE).
            while not session.settled.wait(0.02):
                if not transport.is_active() or transport.is_authenticated() or time.monotonic() > deadline:
                    break
            caller = None if session.gave_up.is_set() else session.identify()
            if caller is None:
                if transport.is_active() and not session.gave_up.is_set():
                    log.warning("closing the connection from %s: no authentication within %g s", address, grace)
                transport.close()
                return
            transport.set_keepalive(KEEPALIVE)
            settle_transport(transport)
            with self._lock:
                self._sessions[transport] = session
        except Exception as exc:
            log.warning("connection from %s failed: %s", address, " ".join(str(exc).split()) or type(exc).__name__)
            if transport is not None:
                transport.close()
            else:
                sock.close()
        finally:
            self._release(host)

    def serve_channel(self, channel: paramiko.Channel, caller: Caller) -> None:
        """Requests in, replies out, one at a time, until the client closes the channel."""
        reader = LineReader(self.max_message)
        try:
            while not self.agent.stop.is_set():
                data = channel.recv(1 << 16)
                if not data:
                    # The client sent EOF: every request has its answer. An exit status tells command-line
                    # clients (OpenSSH's `ssh -s HOST ricci < requests`) that the session ended normally.
                    channel.send_exit_status(0)
                    break
                for line in reader.feed(data):
                    channel.sendall(self._answer(line, caller))
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                channel.close()  # the client may be gone already

    def _answer(self, line: bytes | object, caller: Caller) -> bytes:
        if line is TOO_LARGE_MARK:
            log.warning("request from %s refused: larger than %d bytes", caller.address, self.max_message)
            return error_line(None, RicciError(TOO_LARGE, f"the request is larger than {self.max_message} bytes",
                                               {"limit": self.max_message}))
        request_id = None
        try:
            request = parse_request(line)  # type: ignore[arg-type]
            request_id = request.id
            return ok_line(request.id, self.agent.handle(request.fn, request.args, caller))
        except RicciError as exc:
            if exc.code == MALFORMED:
                log.warning("malformed request from %s: %s", caller.address, exc.message)
            return error_line(request_id if request_id is not None else exc.details.get("id"), exc)
        except RecursionError:
            return error_line(request_id, RicciError(MALFORMED, "the request is nested too deeply"))
        except Exception:
            log.error("internal error answering %s: %s", caller.address, traceback.format_exc())
            return error_line(request_id, RicciError(INTERNAL, "internal error in the agent (see ricci.log)"))

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        with self._lock:
            transports = list(self._sessions)
            self._sessions.clear()
        for transport in transports:
            close_transport(transport)


def load_host_key(root: Path) -> paramiko.PKey:
    keys.ensure_host_key(root)
    return paramiko.Ed25519Key.from_private_key_file(str(root / keys.HOST_KEY))


def _boot_daemons(agent: Agent) -> None:
    try:
        agent.node_start({}, Caller("boot", "local"))
    except RicciError as exc:
        log.error("starting the cluster daemons at boot failed: %s", exc.message)


def serve(root: Path, address: str | None = None, port: int | None = None, ready: Callable[[str], None] | None = None,
          stop: threading.Event | None = None, boot: bool = False) -> None:
    """Run the agent until `stop` is set (the CLI sets it on SIGTERM/SIGINT). With `boot`, it also starts this
    node's cluster daemons once it listens (as a machine whose cman and rgmanager are enabled at boot does)."""
    settings = AgentSettings.load(root)
    if address is not None or port is not None:
        settings = dataclasses.replace(settings, address=address or settings.address, port=port or settings.port)
    setup_logging(root)
    host_key = load_host_key(root)
    agent = Agent(root, settings)
    if stop is not None:
        agent.stop = stop
    recovered = agent.store.recover()
    if recovered:
        log.warning("%s", recovered)
    server = RicciServer(agent, host_key)
    server.bind(settings.address, settings.port)
    fp = keys.fingerprint(f"{host_key.get_name()} {host_key.get_base64()}")
    log.info("listening on %s:%d as %s (host key %s)", settings.address, settings.port, settings.node_name, fp)
    catch_up = threading.Thread(target=agent.catch_up_loop, daemon=True, name="ricci-catch-up")
    catch_up.start()
    if boot:
        threading.Thread(target=_boot_daemons, args=(agent,), daemon=True, name="ricci-boot").start()
    if ready is not None:
        ready(fp)
    try:
        server.serve_forever()
    finally:
        agent.stop.set()
        server.close()
        agent.close()
        log.info("stopped")

