"""Long operations run in a REAL Celery worker over Redis, and their per-node progress reaches a websocket
subscriber through the Redis channel layer: the production path of `manage.py demo`, without mocks.

Processes (one set per Redis-protocol server: Debian's redis-server on a unix socket, and fakeredis over TCP, both
started by luci_web.embedded_redis.ensure_redis):
- a 2-node lab: real ricci agents on a free 127.x block (no cluster daemons);
- the *driver*: this very module run as `python -m tests.test_luci_worker`, a Django process with REDIS_URL,
  DATABASE_URL, LUCI_HOME set in its environment (settings read them at import). It plays the console's side: it
  registers the lab (registry.probe, host keys pinned, luci's key authorised on each node), grants and withdraws
  rights, and calls configs.change, which creates the Operation and enqueues luci.push_config on Redis. It answers
  JSON lines on stdin/stdout;
- the worker: `python -m celery -A luci_web.celery worker --pool threads -c 2 -l warning`, as demo starts it;
- this pytest process: a channels_redis layer joined to `operation-<uuid>`, i.e. what the websocket consumer of
  the operation's page does, and the reader of the nodes' cluster.conf files.

Why a driver subprocess rather than pytest-django's test database: the worker must see the rows the console side
writes, so both use one file-based SQLite database (migrated once with `manage.py migrate`), and the console side
must enqueue on the Redis broker. Settings read REDIS_URL at import and re-pointing the project's Celery app
mid-session leaves its producer pool on the old broker (stack-notes §6, gotcha 1), so the console side runs in a
process of its own whose environment says where Redis and the database are. Nothing in this process touches the
Django database.

The driver holds configs.change for one handshake between creating the Operation and enqueueing it (it wraps
operations.start, in the driver only): the subscriber joins the group the moment the uuid is known, so no progress
message can be published before anyone listens. The worker, the broker and the layer are untouched.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
PREFIX = "@@"  # the driver's answers on stdout start with this; anything else it prints is diagnostics
# Generous bounds: the machine has 2 cores shared with other test runs.
DRIVER_TIMEOUT = 240.0  # one driver request (the first imports Django, paramiko and probes the lab)
MIGRATE_TIMEOUT = 300.0
WORKER_READY_TIMEOUT = 180.0  # until the worker answers a control ping through the broker
OPERATION_TIMEOUT = 180.0  # from enqueue until the operation's final message reaches the subscriber
STOP_TIMEOUT = 60.0
USERNAME = "operator"


# ==============================================================================================================
# The driver: the console's side, in its own Django process (python -m tests.test_luci_worker)
# ==============================================================================================================
def _emit(answer: dict[str, Any]) -> None:
    print(PREFIX + json.dumps(answer), flush=True)


def _cluster_and_user(name: str) -> tuple[Any, Any]:
    from django.contrib.auth import get_user_model

    from luci_web.clusters.models import Cluster

    return Cluster.objects.get(name=name), get_user_model().objects.get(username=USERNAME)


def _setup(cluster: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The lab registered in luci as an admin would add it: luci's key authorised on each node, each host key
    probed and pinned; one user holding view+config on it."""
    from django.contrib.auth import get_user_model

    from luci_web.access.models import ClusterGrant
    from luci_web.clusters import gateway, registry
    from luci_web.clusters.models import Cluster, Node
    from ricci_agent import keys

    row, _ = Cluster.objects.get_or_create(name=cluster)
    for node in nodes:
        keys.authorize(node["root"], gateway.luci_public_key())
        line, fingerprint = registry.probe(node["address"], node["port"])
        Node.objects.update_or_create(cluster=row, name=node["name"], defaults={
            "address": node["address"], "port": node["port"], "host_key": line, "fingerprint": fingerprint})
    user, _ = get_user_model().objects.get_or_create(username=USERNAME)
    ClusterGrant.objects.update_or_create(user=user, cluster=row, defaults={"view": True, "config": True})
    return {"cluster": row.pk, "nodes": [n.name for n in row.nodes.all()]}


def _grant(cluster: str, config: bool) -> dict[str, Any]:
    from luci_web.access.models import ClusterGrant
    from luci_web.access.rights import can

    row, user = _cluster_and_user(cluster)
    ClusterGrant.objects.filter(user=user, cluster=row).update(config=config)
    return {"config": can(user, row, "config")}


def _change(cluster: str, domain: str, hold: bool) -> dict[str, Any]:
    """configs.change adding failover domain `domain` (every node a member) on the version the nodes run now.
    With `hold`, announce the new Operation's id and wait for "go" on stdin before it is enqueued."""
    from cluster_conf import edit
    from luci_web.clusters import configs, operations

    row, user = _cluster_and_user(cluster)
    members = [(name, i) for i, name in enumerate(row.nodes.values_list("name", flat=True), 1)]
    base = configs.fetch(row).version
    original = operations.start

    def start_then_wait(*args: Any, **kwargs: Any) -> Any:
        op = original(*args, **kwargs)
        _emit({"event": "created", "id": str(op.id)})
        if sys.stdin.readline().strip() != "go":
            raise RuntimeError("driver: expected 'go' before enqueueing")
        return op

    if hold:
        operations.start = start_then_wait  # type: ignore[assignment]
    try:
        op = configs.change(row, user, base, lambda conf: edit.add_domain(conf, domain, ordered=True, members=members),
                            action="domain.add", target=domain)
    finally:
        operations.start = original  # type: ignore[assignment]
    op.refresh_from_db()
    return {"id": str(op.id), "base": base, "state": op.state}


def _status(operation: str, domain: str) -> dict[str, Any]:
    """The Operation as the pages show it, the audit entries of the change, and the task results the worker
    stored (CELERY_RESULT_BACKEND django-db; a task run eagerly in the enqueuing process stores none)."""
    from django_celery_results.models import TaskResult

    from luci_web.audit.models import AuditEntry
    from luci_web.clusters.models import Operation
    from luci_web.clusters.operations import as_dict

    entries = AuditEntry.objects.filter(action="domain.add", target=domain).order_by("pk")
    return {"operation": as_dict(Operation.objects.get(pk=operation)),
            "audit": [{"username": e.username, "cluster": e.cluster_name, "result": e.result, "message": e.message,
                       "detail": e.detail} for e in entries],
            "tasks": [{"status": t.status, "result": json.loads(t.result or "null")}
                      for t in TaskResult.objects.order_by("pk")]}


def driver_main() -> None:
    """Answer one JSON request per stdin line ({"op": ..., "args": {...}}) with one PREFIX line until EOF."""
    import django

    django.setup()
    handlers = {"setup": _setup, "grant": _grant, "change": _change, "status": _status}
    _emit({"event": "ready"})
    while True:
        line = sys.stdin.readline()
        if not line:
            return
        try:
            request = json.loads(line)
            _emit(handlers[request["op"]](**request.get("args", {})))
        except Exception:  # the test shows it; the driver keeps answering
            _emit({"error": traceback.format_exc()})


# ==============================================================================================================
# The test side
# ==============================================================================================================
pytestmark = pytest.mark.slow
pytest.importorskip("paramiko", reason="paramiko is not installed (pip install -e .[node])")
pytest.importorskip("channels_redis", reason="channels-redis is not installed (pip install -e .[web])")


def _tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _stop_group(proc: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM to the process group (a warm shutdown), SIGKILL to whatever is left after `timeout`."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group's stragglers too (the leader may be gone already)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)


class Driver:
    """The driver subprocess, one request at a time; its answers are read by a thread into a queue."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.other: list[str] = []
        self.answers: queue.Queue[dict[str, Any]] = queue.Queue()
        with log.open("ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "tests.test_luci_worker"], cwd=REPO, env=env,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
                                         process_group=0)
        threading.Thread(target=self._read, daemon=True, name="driver-reader").start()
        assert self.receive().get("event") == "ready"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(PREFIX):
                self.answers.put(json.loads(line[len(PREFIX):]))
            else:
                self.other.append(line.rstrip("\n"))

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float = DRIVER_TIMEOUT) -> dict[str, Any]:
        try:
            answer = self.answers.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"the driver did not answer within {timeout:g} s (exit {self.proc.poll()}):\n"
                                 + "\n".join(self.other[-20:]) + "\n" + _tail(self.log)) from None
        if "error" in answer:
            raise AssertionError("the driver failed:\n" + answer["error"])
        return answer

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        self.send(json.dumps({"op": op, "args": args}))
        return self.receive()

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # EOF: the driver returns
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(30)
        _stop_group(self.proc, 5)


class Subscriber:
    """A channels_redis layer in this process joined to one group, as the websocket consumer of an operation's
    page is: every message it receives is kept; `final` is set once an operation message says done or failed."""

    def __init__(self, url: str, group: str) -> None:
        self.url, self.group = url, group
        self.messages: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.joined, self.final, self._stop = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True, name="subscriber")
        self._thread.start()
        if not self.joined.wait(60) or self.error is not None:
            self.close()
            raise AssertionError(f"could not join {group} on {url}: {self.error!r}")

    async def _run(self) -> None:
        from channels_redis.core import RedisChannelLayer

        layer = RedisChannelLayer(hosts=[self.url])
        pump: asyncio.Task | None = None
        channel = ""
        try:
            channel = await layer.new_channel()
            await layer.group_add(self.group, channel)

            async def receive_all() -> None:
                while True:
                    message = await layer.receive(channel)
                    self.messages.append(message)
                    if message.get("kind") == "operation" and message["payload"].get("state") in ("done", "failed"):
                        self.final.set()

            pump = asyncio.create_task(receive_all())
            self.joined.set()
            deadline = time.monotonic() + OPERATION_TIMEOUT + WORKER_READY_TIMEOUT + 60
            while not self._stop.is_set() and not pump.done() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            if pump.done() and not pump.cancelled() and pump.exception() is not None:
                self.error = pump.exception()
        except BaseException as exc:  # shown by the test
            self.error = exc
        finally:
            if pump is not None and not pump.done():
                pump.cancel()
                with contextlib.suppress(BaseException):
                    await pump
            if channel:
                with contextlib.suppress(Exception):
                    await layer.group_discard(self.group, channel)
            await layer.close_pools()
            self.joined.set()

    def wait_final(self, timeout: float, worker_log: Path) -> dict[str, Any]:
        if not self.final.wait(timeout):
            raise AssertionError(f"no final message on {self.group} within {timeout:g} s (got "
                                 f"{[m.get('payload', {}).get('state') for m in self.messages]}, error "
                                 f"{self.error!r}); worker log:\n{_tail(worker_log)}")
        return self.messages[-1]["payload"]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)


@dataclass
class Stack:
    flavour: str
    url: str
    env: dict[str, str]
    base: Path
    lab: Any
    driver: Driver

    @property
    def worker_log(self) -> Path:
        return self.base / "worker.log"


@pytest.fixture(scope="module")
def worker_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Two real ricci agents on a free 127.x block, no cluster daemons; stopped even on failure."""
    from tests.ricci_fixtures import lab_up

    with lab_up(tmp_path_factory.mktemp("workerlab") / "lab", 2, no_daemons=True) as lab:
        yield lab


@pytest.fixture(scope="module", params=["redis-server", "fakeredis"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, worker_lab: Any) -> Iterator[Stack]:
    """Redis of one flavour, a migrated file database, LUCI_HOME, and the driver with the lab registered."""
    from luci_web.embedded_redis import ensure_redis

    flavour = request.param
    if flavour == "redis-server" and shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); the fakeredis run still covers "
                    "the path")
    base = tmp_path_factory.mktemp(f"luciworker-{flavour}")
    url, _, stop_redis = ensure_redis(base, {"LUCI_EMBEDDED_REDIS": flavour})
    driver: Driver | None = None
    try:
        env = {**os.environ, "REDIS_URL": url, "DATABASE_URL": f"sqlite:///{base / 'luci.sqlite3'}",
               "LUCI_HOME": str(base / "home"), "DJANGO_SETTINGS_MODULE": "luci_web.settings",
               "PYTHONUNBUFFERED": "1"}
        env.pop("CELERY_EAGER", None)  # the point is a real worker
        migrated = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=MIGRATE_TIMEOUT)
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        driver = Driver(env, base / "driver.log")
        nodes = [{"name": n.name, "address": n.address, "port": n.port, "root": str(n.root)} for n in worker_lab.nodes]
        registered = driver.call("setup", cluster=worker_lab.cluster_name, nodes=nodes)
        assert sorted(registered["nodes"]) == sorted(n.name for n in worker_lab.nodes)
        yield Stack(flavour, url, env, base, worker_lab, driver)
    finally:
        if driver is not None:
            driver.close()
        stop_redis()


def _worker_answers(url: str) -> bool:
    """The worker answers a control ping through the broker (how `manage.py demo` waits for it)."""
    from celery import Celery

    from luci_web.settings import celery_url

    app = Celery("luci-worker-test-ping", broker=celery_url(url))
    try:
        return bool(app.control.ping(timeout=1.0))
    except Exception:  # any broker error means "not yet"
        return False
    finally:
        app.close()


@contextlib.contextmanager
def running_worker(stack: Stack) -> Iterator[subprocess.Popen]:
    """The Celery worker as `manage.py demo` runs it (own process group), answering pings; stopped afterwards
    (warm shutdown, then SIGKILL to the group), failures included."""
    with stack.worker_log.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "luci_web.celery", "worker", "--pool",
                                 "threads", "-c", "2", "-l", "warning"], cwd=REPO, env=stack.env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, process_group=0)
    try:
        deadline = time.monotonic() + WORKER_READY_TIMEOUT
        while not _worker_answers(stack.url):
            assert proc.poll() is None, f"the worker exited ({proc.returncode}):\n{_tail(stack.worker_log)}"
            assert time.monotonic() < deadline, (f"the worker did not answer within {WORKER_READY_TIMEOUT:g} s:\n"
                                                 f"{_tail(stack.worker_log)}")
            time.sleep(0.5)
        yield proc
    finally:
        _stop_group(proc)


def _versions(lab: Any) -> dict[str, int]:
    from cluster_conf import ClusterConf

    return {n.name: ClusterConf.load(n.config_path).config_version for n in lab.nodes}


def _domains(lab: Any) -> dict[str, set[str]]:
    from cluster_conf import ClusterConf
    from cluster_conf.model import view

    return {n.name: {d.name for d in view(ClusterConf.load(n.config_path)).domains} for n in lab.nodes}


def test_push_runs_in_the_worker_and_progress_reaches_the_subscriber(stack: Stack) -> None:
    lab, driver = stack.lab, stack.driver
    domain = f"pref-{stack.flavour}"
    assert driver.call("grant", cluster=lab.cluster_name, config=True) == {"config": True}
    before = _versions(lab)
    assert len(set(before.values())) == 1, before

    with running_worker(stack):
        driver.send(json.dumps({"op": "change", "args": {"cluster": lab.cluster_name, "domain": domain,
                                                         "hold": True}}))
        op_id = driver.receive()["id"]  # the Operation exists, nothing enqueued yet
        subscriber = Subscriber(stack.url, f"operation-{op_id}")
        try:
            driver.send("go")
            enqueued = driver.receive()
            assert enqueued["id"] == op_id and enqueued["base"] == next(iter(before.values()))
            final = subscriber.wait_final(OPERATION_TIMEOUT, stack.worker_log)
        finally:
            subscriber.close()
        status = driver.call("status", operation=op_id, domain=domain)

    assert subscriber.error is None, subscriber.error
    version = next(iter(before.values())) + 1
    # the worker ran the push: every node runs base+1 with the new domain
    assert _versions(lab) == {name: version for name in before}
    assert all(domain in names for names in _domains(lab).values()), _domains(lab)
    op = status["operation"]
    assert (op["state"], op["message"]) == ("done", f"version {version} accepted"), op
    assert op["result"]["version"] == version
    assert final["state"] == "done" and final["id"] == op_id

    # its progress reached this process through the Redis channel layer, node by node, while it ran
    payloads = [m["payload"] for m in subscriber.messages]
    assert all(m["type"] == "live.message" and m["kind"] == "operation" for m in subscriber.messages)
    assert payloads[0]["state"] == "running" and set(payloads[0]["progress"]) == set(before)
    for name in before:
        assert any(p["state"] == "running" and p["progress"][name]["state"] == "updated" for p in payloads), \
            (name, payloads)
    assert all(final["progress"][name]["state"] == "updated" for name in before), final

    assert {"status": "SUCCESS", "result": {"ok": True, "version": version}} in status["tasks"], status["tasks"]

    # one audit entry, written by the worker with the result
    assert [(e["username"], e["cluster"], e["result"], e["detail"].get("version")) for e in status["audit"]] == [
        (USERNAME, lab.cluster_name, "ok", version)], status["audit"]


def test_right_withdrawn_before_the_worker_runs_is_refused(stack: Stack) -> None:
    lab, driver = stack.lab, stack.driver
    domain = f"late-{stack.flavour}"
    assert driver.call("grant", cluster=lab.cluster_name, config=True) == {"config": True}
    before, domains_before = _versions(lab), _domains(lab)

    # queued on Redis while no worker runs: the console's process does not run it itself
    enqueued = driver.call("change", cluster=lab.cluster_name, domain=domain, hold=False)
    op_id = enqueued["id"]
    assert enqueued["state"] == "pending"
    assert driver.call("grant", cluster=lab.cluster_name, config=False) == {"config": False}
    assert driver.call("status", operation=op_id, domain=domain)["operation"]["state"] == "pending"

    subscriber = Subscriber(stack.url, f"operation-{op_id}")
    try:
        with running_worker(stack):
            final = subscriber.wait_final(OPERATION_TIMEOUT, stack.worker_log)
            status = driver.call("status", operation=op_id, domain=domain)
    finally:
        subscriber.close()

    assert subscriber.error is None, subscriber.error
    op = status["operation"]
    assert op["state"] == "failed", op
    assert op["message"] == "you may not change the cluster configuration on this cluster", op
    assert final["state"] == "failed" and final["message"] == op["message"]
    assert all(p["state"] == "waiting" for p in op["progress"].values()), op["progress"]  # no node was called
    # nothing was pushed
    assert _versions(lab) == before
    assert _domains(lab) == domains_before and all(domain not in names for names in domains_before.values())
    assert [(e["result"], e["message"]) for e in status["audit"]] == [("refused", op["message"])], status["audit"]
    # the worker ran the task (an eager run stores no result) and it answered a refusal, not a crash
    refusals = [t["result"] for t in status["tasks"] if t["status"] == "SUCCESS"]
    assert {"ok": False, "refused": True} in refusals, status["tasks"]


if __name__ == "__main__":
    driver_main()
