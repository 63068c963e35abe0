"""`manage.py demo`: the suite's one-command tour (what `make demo` runs).

It brings up everything the console needs and supervises it until Ctrl-C:
  1. Redis: REDIS_URL, else an embedded server (luci_web/embedded_redis.py), exported to every child;
  2. the database (`migrate`) and an admin user `admin` with a new random password on every run;
  3. a local lab cluster (ricci_agent.lab: `localcluster up --nodes 3`, the sample service `webservice`);
  4. luci's key authorised on each lab node, and the cluster added to luci through the normal "add an existing
     cluster" flow (luci_web.clusters.registry), each host key's fingerprint checked against the node's own key;
  5. daphne on 127.0.0.1:8084, a Celery worker and the live-status watcher (`manage.py luci_watch`), supervised
     (luci_web/supervisor.py);
then prints `URL: ...`, `username: admin` and `password: ...`. Ctrl-C or SIGTERM stops the children, the lab
(unless --keep-lab, or the lab was already running before the demo: a lab the demo did not start is never stopped
by it) and the embedded Redis, checks nothing is left and exits 0. `--exit-after SECONDS` checks
that every part answers, then stops the same way (tests, CI).

`manage.py demo --walkthrough` is the older scripted tour of ccs_tool and rg_test in a temporary folder.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cluster_conf.schema import is_secret
from luci_web.clusters import registry
from luci_web.embedded_redis import RedisUnavailable, ensure_redis
from luci_web.supervisor import ChildFailed, Supervisor
from ricci_agent import keys
from ricci_agent.lab import DEFAULT_DIR, FIRST_ADDRESS, Lab, LabError, LabNode, node_processes
from ricci_agent.protocol import RicciError

PROG = "demo"
HOST = "127.0.0.1"
ADMIN = "admin"
READY_TIMEOUT = 60.0  # daphne answering /login/ after the children start
CHECK_TIMEOUT = 30.0  # --exit-after: each part must answer within this
TICK = 0.2


class DemoError(Exception):
    """A step failed: one line for the user."""


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:  # http://127.0.0.1 only
            return int(reply.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def wait_for(predicate: Callable[[], Any], timeout: float, tick: Callable[[], None] = lambda: None) -> Any:
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes (None); `tick` runs
    between polls (the supervisor's restart policy)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        tick()
        time.sleep(TICK)


def confirm_host_key(node: LabNode, offered: str, fingerprint: str) -> str:
    """The fingerprint luci was offered for `node`, checked against the node's own host key file: the demo
    confirms what an admin would compare by eye. DemoError on any difference."""
    own = keys.host_public_key(node.root)
    expected = keys.fingerprint(own)
    if fingerprint != expected or offered.split()[:2] != own.split()[:2]:
        raise DemoError(f"{node.name} ({node.key}) offered host key {fingerprint}, but the node's own key is "
                        f"{expected}: refusing to add it")
    return expected


class Demo:
    """One run of the demo: set up step by step, supervise, tear down whatever was set up (in reverse)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.port: int = options["port"]
        self.nodes: int = options["nodes"]
        self.lab = Lab(options["dir"])
        self.first_address: str = options["first_address"]
        self.keep_lab: bool = options["keep_lab"]
        self.exit_after: float | None = options["exit_after"]
        self.hint: bool = not options["no_browser_hint"]
        self.supervisor = Supervisor(sys.stdout)
        self.redis_url = ""
        self.redis_stop: Callable[[], None] | None = None
        self.lab_owned = False  # the demo brought the lab up (or began to): its teardown stops it
        self.lab_found_running = False  # a complete lab was running before the demo: left running on exit
        self.cluster_name = ""
        self.cluster_pk: int | None = None
        self.children_started_at = 0.0
        self._deferring = False
        self._pending = False
        self._stopping = False

    # -- output and signals ------------------------------------------------------------------------------------
    def say(self, line: str) -> None:
        self.supervisor.say(line)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._stopping:
            return  # already stopping: a second Ctrl-C must not cut the cleanup short
        if self._deferring:
            self._pending = True
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred_signals(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM wait until the block is done: a process spawned inside it is always recorded, so
        the teardown finds it."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
        if self._pending:
            raise KeyboardInterrupt

    # -- the run -----------------------------------------------------------------------------------------------
    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        code = 0
        try:
            code = self.set_up_and_serve()
        except KeyboardInterrupt:
            self.say("Stopping (interrupted).")
        except (DemoError, LabError, RedisUnavailable, ChildFailed, RicciError, registry.RegistryError,
                keys.KeyFileError) as exc:
            self.say(f"{PROG}: {' '.join(str(exc).split())}")
            code = 1
        finally:
            self._stopping = True
            problems = self.tear_down()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if problems:
            for problem in problems:
                self.say(f"{PROG}: {problem}")
            return 1
        return code

    def set_up_and_serve(self) -> int:
        self.start_redis()
        self.say("[2/6] Database: migrate")
        call_command("migrate", interactive=False, verbosity=0)
        password = self.admin_user()
        self.say(f"[3/6] Lab: {self.nodes} nodes in {self.lab.directory} (ricci agents, cman, rgmanager)")
        lab_nodes = self.start_lab()
        self.say("[4/6] Adding the lab cluster to luci (the 'add an existing cluster' flow)")
        self.add_cluster(lab_nodes)
        self.say(f"[5/6] Starting daphne on {HOST}:{self.port}, the Celery worker and the status watcher")
        self.start_children()
        url = f"http://{HOST}:{self.port}/"
        if not wait_for(lambda: http_status(url + "login/") == 200, READY_TIMEOUT, self.tick):
            raise DemoError(f"{url}login/ did not answer 200 within {READY_TIMEOUT:g} s")
        self.say("[6/6] Ready.")
        self.say("")
        self.say(f"URL: {url}")
        self.say(f"username: {ADMIN}")
        self.say(f"password: {password}")
        self.say("")
        if self.hint:
            self.say(f"Open the URL in a browser and log in: the cluster '{self.cluster_name}' is on the overview, "
                     "its nodes and the service 'webservice' update live.")
            self.say(f"Try, in another terminal: .venv/bin/python manage.py localcluster kill node1 "
                     f"--dir {self.lab.directory}")
        self.say("Press Ctrl-C to stop everything." if self.exit_after is None
                 else f"Stopping after {self.exit_after:g} s (--exit-after).")
        return self.serve()

    def tick(self) -> None:
        with self.deferred_signals():
            events = self.supervisor.poll()
        for event in events:
            self.say(f"{PROG}: {event}")

    def serve(self) -> int:
        started = time.monotonic()
        code = 0
        if self.exit_after is not None:
            code = self.check_everything()
        while self.exit_after is None or time.monotonic() - started < self.exit_after:
            self.tick()
            time.sleep(TICK)
        return code

    # -- steps -------------------------------------------------------------------------------------------------
    def start_redis(self) -> None:
        home = Path(settings.LUCI_HOME)
        home.mkdir(parents=True, exist_ok=True)
        with self.deferred_signals():
            self.redis_url, what, self.redis_stop = ensure_redis(home)
        shown = self.redis_url.split("@")[-1]  # never a password from REDIS_URL
        self.say(f"[1/6] Redis: {what} ({shown})")

    def admin_user(self) -> str:
        """`admin`, a superuser, with a new random password (the old one, if any, stops working)."""
        from django.contrib.auth import get_user_model

        password = secrets.token_urlsafe(12)
        user_model = get_user_model()
        user = user_model.objects.filter(username=ADMIN).first() or user_model(username=ADMIN)
        user.is_superuser = user.is_staff = user.is_active = True
        user.set_password(password)
        user.save()
        return password

    def start_lab(self) -> list[LabNode]:
        lab = self.lab
        if lab.exists() and any(node_processes(n) for n in lab.nodes):
            if len(lab.nodes) == self.nodes and all(s.answering for s in lab.status()):
                self.say("  the lab is already running: using it (the demo leaves it running when it stops)")
                self.lab_found_running = True
                return lab.nodes
            self.say("  a part of the lab is running: stopping it first")
            lab.down()
        self.lab_owned = True  # from here on, the teardown stops it (Lab.up undoes its own partial start)
        nodes = lab.up(self.nodes, first_address=self.first_address)
        for node in nodes:
            self.say(f"  {node.name:<8} {node.key:<22} pid {node.pid}")
        return nodes

    def add_cluster(self, lab_nodes: list[LabNode]) -> None:
        from django.contrib.auth import get_user_model

        from luci_web.clusters import gateway
        from luci_web.clusters.models import Cluster

        luci_key = gateway.luci_public_key()
        for node in lab_nodes:
            keys.authorize(node.root, luci_key)
        self.say(f"  luci's key authorised on {', '.join(n.name for n in lab_nodes)}")
        by_name = {n.name: n for n in lab_nodes}
        first = lab_nodes[0]
        host_key, fingerprint = registry.probe(first.address, first.port)
        confirm_host_key(first, host_key, fingerprint)
        discovery = registry.discover(first.address, first.port, host_key)
        for candidate in discovery.nodes:
            if candidate.error:
                raise DemoError(f"{candidate.name}: {candidate.error}")
            node = by_name.get(candidate.name)
            if node is None:
                raise DemoError(f"{first.name}'s cluster.conf names {candidate.name}, which is not a lab node")
            confirm_host_key(node, candidate.host_key, candidate.fingerprint)
            self.say(f"  {candidate.name:<8} {candidate.address}:{candidate.port}  {candidate.fingerprint}  "
                     "= the node's own host key")
        user = get_user_model().objects.get(username=ADMIN)
        wanted = {(c.name, c.address, int(c.port), c.host_key.strip()) for c in discovery.nodes}
        existing = Cluster.objects.filter(name=discovery.cluster_name).first()
        if existing is not None:
            have = {(n.name, n.address, int(n.port), n.host_key.strip()) for n in existing.nodes.all()}
            if have == wanted:
                self.say(f"  cluster {existing.name} is already in luci with these nodes: kept")
                self.cluster_name, self.cluster_pk = existing.name, existing.pk
                return
            self.say(f"  cluster {existing.name} is in luci with other nodes: replaced")
            registry.remove(user, existing)
        cluster = registry.add_existing(user, discovery.cluster_name, discovery.nodes)
        self.cluster_name, self.cluster_pk = cluster.name, cluster.pk
        self.say(f"  cluster {cluster.name} (config version {discovery.config_version}) added, "
                 f"{len(discovery.nodes)} nodes")

    def child_environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "CLUSTER_ROOT"}  # never taken for a lab node's process
        env.update({
            "REDIS_URL": self.redis_url,
            "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "luci_web.settings"),
            "LUCI_HOME": str(settings.LUCI_HOME),
            "SECRET_KEY": os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),  # one per run, shared
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def start_children(self) -> None:
        env = self.child_environment()
        python = sys.executable
        manage = str(Path(settings.BASE_DIR) / "manage.py")
        access_log = Path(settings.LUCI_HOME) / "log" / "access.log"  # the console's pages poll: not on screen
        access_log.parent.mkdir(parents=True, exist_ok=True)
        self.supervisor.add("daphne", [python, "-m", "daphne", "-b", HOST, "-p", str(self.port), "--access-log",
                                       str(access_log), "luci_web.asgi:application"], env)
        self.supervisor.add("worker", [python, "-m", "celery", "-A", "luci_web.celery", "-q", "worker", "--pool",
                                       "threads", "-c", "4", "-l", "warning"], env)
        self.supervisor.add("watcher", [python, manage, "luci_watch"], env)
        self.children_started_at = time.time()
        with self.deferred_signals():
            self.supervisor.start()

    # -- --exit-after: does every part answer? -----------------------------------------------------------------
    def check_everything(self) -> int:
        checks: list[tuple[str, Callable[[], Any]]] = [
            ("redis", self.redis_answers),
            ("lab", lambda: all(s.answering for s in self.lab.status(timeout=2.0))),
            ("worker", self.worker_answers),
            ("watcher", self.watcher_reported),
        ]
        failed = []
        for name, check in checks:
            if wait_for(check, CHECK_TIMEOUT, self.tick):
                self.say(f"check: {name} answers")
            else:
                failed.append(name)
                self.say(f"check: {name} did not answer within {CHECK_TIMEOUT:g} s")
        if failed:
            self.say(f"{PROG}: not answering: {', '.join(failed)}")
            return 1
        return 0

    def redis_answers(self) -> bool:
        import redis

        try:
            client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
            with contextlib.closing(client):
                return bool(client.ping())
        except redis.RedisError:
            return False

    def worker_answers(self) -> bool:
        from celery import Celery

        from luci_web.settings import celery_url

        app = Celery("demo-check", broker=celery_url(self.redis_url))
        try:
            return bool(app.control.ping(timeout=1.0))
        except Exception:  # any broker error means "not yet"
            return False
        finally:
            app.close()

    def watcher_reported(self) -> bool:
        """The watcher wrote the lab cluster's status after it started."""
        from luci_web.clusters.models import Cluster

        cluster = Cluster.objects.filter(pk=self.cluster_pk).first()
        return bool(cluster and cluster.status_at and cluster.status_at.timestamp() >= self.children_started_at)

    # -- teardown ----------------------------------------------------------------------------------------------
    def tear_down(self) -> list[str]:
        """Stop the children, the lab (only if the demo started it, and not with --keep-lab) and the embedded
        Redis, in that order; each step runs whatever the one before raised. Return what could not be stopped, one
        line each (empty: nothing the demo started is left running)."""
        problems: list[str] = []
        stopped: list[str] = []
        self._teardown_step("stopping daphne, the worker and the watcher", problems,
                            lambda: self._stop_children(problems, stopped))
        with contextlib.suppress(Exception):
            from luci_web.clusters import gateway

            gateway.reset()
        if self.lab_owned and not self.keep_lab:
            self._teardown_step("stopping the lab", problems, lambda: self._stop_lab(problems, stopped))
        elif self.lab_owned:
            self.say(f"The lab keeps running (--keep-lab): manage.py localcluster down --dir {self.lab.directory}")
        elif self.lab_found_running:
            self.say(f"The lab was running before the demo: left running (manage.py localcluster down --dir "
                     f"{self.lab.directory} stops it)")
        if self.redis_stop is not None:
            self._teardown_step("stopping redis", problems, lambda: self._stop_redis(stopped))
        if not problems:
            kept = " (the lab keeps running)" if self.lab_found_running or (self.lab_owned and self.keep_lab) else ""
            self.say(f"Stopped {', '.join(stopped)}: nothing left running{kept}." if stopped
                     else "Nothing was started.")
        return problems

    @staticmethod
    def _teardown_step(what: str, problems: list[str], step: Callable[[], None]) -> None:
        """Run one teardown step; whatever it raises becomes one line in `problems` and the teardown goes on."""
        try:
            step()
        except Exception as exc:  # the next steps must run whatever this one raised
            text = " ".join(str(exc).split())
            if not isinstance(exc, LabError):
                text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
            problems.append(f"{what}: {text}")

    def _stop_children(self, problems: list[str], stopped: list[str]) -> None:
        if not self.supervisor.children:
            return
        self.say("Stopping daphne, the worker and the watcher ...")
        survivors = self.supervisor.stop()
        if survivors:
            problems.append(f"still running after SIGKILL: {', '.join(survivors)}")
        unreaped = [c.name for c in self.supervisor.children if c.process is not None and c.process.returncode is None]
        if unreaped and not survivors:
            problems.append(f"not collected after stopping: {', '.join(unreaped)}")
        stopped.append("daphne, worker, watcher")

    def _stop_lab(self, problems: list[str], stopped: list[str]) -> None:
        self.say("Stopping the lab ...")
        try:
            self.lab.down()
            stopped.append("the lab")
        finally:  # what is left is reported even when down() failed (an unreadable lab.json: nothing to check)
            with contextlib.suppress(LabError, OSError):
                left_nodes = [n.name for n in self.lab.nodes if node_processes(n)] if self.lab.exists() else []
                if left_nodes:
                    problems.append(f"lab nodes still running: {', '.join(left_nodes)}")

    def _stop_redis(self, stopped: list[str]) -> None:
        stop, self.redis_stop = self.redis_stop, None
        if stop is not None:
            stop()
            stopped.append("redis")


class Command(BaseCommand):
    help = ("Run the suite's demo: a 3-node lab cluster in luci, with daphne, a Celery worker and the live status "
            "watcher, until Ctrl-C (docs/deploy.md for production).")
    requires_system_checks: ClassVar[list[str]] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=int(settings.LUCI_PORT),
                            help=f"daphne's port on {HOST} (default {settings.LUCI_PORT})")
        parser.add_argument("--nodes", type=int, default=3, help="lab nodes (default 3)")
        parser.add_argument("--dir", default=DEFAULT_DIR, help=f"the lab's folder (default {DEFAULT_DIR})")
        parser.add_argument("--first-address", default=FIRST_ADDRESS,
                            help=f"the first lab node's address for a new lab (default {FIRST_ADDRESS})")
        parser.add_argument("--keep-lab", action="store_true", help="leave the lab running on exit")
        parser.add_argument("--exit-after", type=float, default=None, metavar="SECONDS",
                            help="check that every part answers, run SECONDS more, then stop (tests, CI)")
        parser.add_argument("--no-browser-hint", action="store_true", help="do not print what to try")
        parser.add_argument("--walkthrough", action="store_true",
                            help="the scripted ccs_tool/rg_test tour in a temporary folder instead")
        parser.add_argument("--keep", action="store_true", help="--walkthrough: keep its folder")

    def handle(self, *args: object, **options: Any) -> None:
        if options["walkthrough"]:
            walkthrough(self, keep=options["keep"])
            return
        problem = self.bad_option(options)
        if problem:
            sys.stderr.write(f"{PROG}: {problem}\n")
            raise SystemExit(1)
        code = Demo(options).run()
        sys.stdout.flush()
        if code:
            raise SystemExit(code)

    @staticmethod
    def bad_option(options: dict[str, Any]) -> str:
        port = options["port"]
        if not 1 <= port <= 65535:
            return f"--port {port} is not between 1 and 65535"
        if not 1 <= options["nodes"] <= 16:
            return f"--nodes {options['nodes']} is not between 1 and 16"
        if options["exit_after"] is not None and options["exit_after"] < 0:
            return "--exit-after must not be negative"
        if port_in_use(HOST, port):
            return f"{HOST}:{port} is already in use (another luci?); stop it or choose another --port"
        return ""


# -- the scripted walkthrough (--walkthrough) --------------------------------------------------------------------
WALKTHROUGH: list[tuple[str, list[str]]] = [
    ("Create a cluster called 'lab'", ["ccs_tool", "create", "lab"]),
    ("Keep a copy of version 1 to compare with later", ["cp", "{conf}", "{root}/cluster.conf.v1"]),
    (
        "Add a fence device (the password never shows up in listings)",
        ["ccs_tool", "addfence", "apc", "fence_apc", "ipaddr=127.0.0.1", "login=admin", "passwd=secret"],
    ),
    ("Add three nodes fenced by it", ["ccs_tool", "addnode", "-n", "1", "-f", "apc", "node1", "port=1"]),
    ("", ["ccs_tool", "addnode", "-n", "2", "-f", "apc", "node2", "port=2"]),
    ("", ["ccs_tool", "addnode", "-n", "3", "-f", "apc", "node3", "port=3"]),
    ("List the nodes", ["ccs_tool", "lsnode"]),
    ("List the fence devices, verbosely", ["ccs_tool", "lsfence", "-v"]),
    (
        "Add an ordered failover domain",
        ["ccs_tool", "adddomain", "--ordered", "webdomain", "node1:1", "node2:2", "node3:3"],
    ),
    ("Add a floating IP address as a global resource", ["ccs_tool", "addresource", "ip", "address=127.0.0.50"]),
    (
        "Add a web service in that domain, using the address",
        ["ccs_tool", "addservice", "web", "domain=webdomain", "recovery=relocate"],
    ),
    ("", ["ccs_tool", "addserviceresource", "web", "ip", "ref=127.0.0.50"]),
    ("List the services and their resource trees", ["ccs_tool", "lsservice", "-v"]),
    ("Validate the configuration", ["ccs_config_validate", "-f", "{conf}"]),
    ("What changed since version 1", ["ccs_tool", "diff", "{root}/cluster.conf.v1", "{conf}"]),
    ("Query it with XPath", ["ccs_tool", "query", "/cluster/@config_version"]),
    ("The order in which the engine would start the web service", ["rg_test", "noop", "{conf}", "start", "service",
                                                                     "web"]),
    ("Where every service should run with all three nodes up", ["rg_test", "place", "{conf}", "--online",
                                                                "node1,node2,node3"]),
    (
        "What the engine does when node1 fails, then comes back (failback to the better node)",
        ["rg_test", "simulate", "{conf}", "--event", "quorum-formed", "--event", "node-down node1", "--event",
         "node-up node1"],
    ),
]


def _masked(arg: str) -> str:
    """`passwd=…` shown as `passwd=********`: secrets never appear in output, even the demo's own."""
    key, sep, _ = arg.partition("=")
    return f"{key}=********" if sep and is_secret(key) else arg


def _script(name: str) -> str:
    """The console script installed next to this Python (the venv's bin), else whatever is on PATH."""
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else (shutil.which(name) or name)


def walkthrough(command: BaseCommand, *, keep: bool = False) -> None:
    """Create a three-node cluster in a temporary CLUSTER_ROOT with ccs_tool, add fencing, a failover domain, a
    resource and a service, list and validate it, diff it against version 1, and ask rg_test for the start order,
    the placement and a failure; each step runs the real console scripts and the first failure stops it."""
    root = Path(tempfile.mkdtemp(prefix="rhcs-demo-"))
    conf = root / "etc" / "cluster" / "cluster.conf"
    conf.parent.mkdir(parents=True)
    env = {**os.environ, "CLUSTER_ROOT": str(root)}
    command.stdout.write(f"rhcs-py demo: a cluster.conf walkthrough in {root}\n")
    try:
        for title, argv in WALKTHROUGH:
            argv = [part.format(conf=conf, root=root) for part in argv]
            _run_step(command, title, argv, env, root)
    finally:
        if keep:
            command.stdout.write(f"\nThe files are in {root}\n")
        else:
            shutil.rmtree(root, ignore_errors=True)
    done = "\nDemo complete: the cluster was created, edited, listed and validated."
    command.stdout.write(command.style.SUCCESS(done))


def _run_step(command: BaseCommand, title: str, argv: list[str], env: dict[str, str], root: Path) -> None:
    if title:
        command.stdout.write(f"\n## {title}")
    shown = " ".join(shlex.quote(_masked(a).replace(str(root), "$CLUSTER_ROOT")) for a in argv)
    command.stdout.write(f"$ {shown}")
    resolved = [_script(argv[0]) if argv[0] != "cp" else "cp", *argv[1:]]
    result = subprocess.run(resolved, env=env, capture_output=True, text=True, timeout=60, check=False)
    for stream in (result.stdout, result.stderr):
        if stream.strip():
            command.stdout.write(stream.rstrip("\n").replace(str(root), "$CLUSTER_ROOT"))
    if result.returncode != 0:
        raise CommandError(f"step failed with exit status {result.returncode}: {shown}")
