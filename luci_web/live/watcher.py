"""The status watcher: one subscription per cluster in luci's database, pushing changes to the open pages.

ricci offers no event stream, so a cluster's subscription is polling: `read_status` every `interval` (0.25 s by
default; the issue allows polling at <= 1 s when that is all a node offers). Each cluster has its own thread, so a
hung node of one cluster never delays another; within a cluster a new reading starts every interval even while an
earlier one still waits on a hung node (at most MAX_IN_FLIGHT at once; each is bounded by read_status's 1.5 s
timeouts), and a reading older than the last one applied is dropped. So a node that hangs shows as "unknown" one
timeout (1.5 s) plus at most one interval after it stopped answering, while the other nodes' changes keep coming.

When a reading differs from the last one in anything but `at`, the watcher saves Cluster.status/status_at, records
a ServiceEvent for each service whose state or owner changed (or that it never recorded), and publishes
{"at", "config_version", "quorate"} to `cluster-<pk>` and an empty payload to `overview` (every logged-in user
listens there: it names no cluster). Nothing changed: nothing is published, and status_at is saved once every
HEARTBEAT seconds (the page's "as of" stays fresh).

A database error (a locked SQLite file, a restarted Postgres) never ends the watcher: it is logged, the
connection is closed (the next query opens a new one), and the cluster's loop, or the sync of the cluster list,
tries again after a backoff that doubles from RETRY_FIRST up to RETRY_MAX seconds and resets after a success.
"""
from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import close_old_connections, connection

from luci_web.clusters.models import Cluster, ServiceEvent
from luci_web.clusters.status import read_status
from luci_web.live import publish as live

log = logging.getLogger("luci.watcher")

INTERVAL = 0.25  # seconds between readings of one cluster
HEARTBEAT = 5.0  # status_at is saved at least this often while nothing changes
REFRESH = 3.0  # how often the Cluster and Node tables are read again (clusters added/removed, nodes changed)
MAX_IN_FLIGHT = 8  # readings of one cluster waiting at once (a hung node makes each take ~1.5 s)
RETRY_FIRST = 1.0  # seconds before trying again after a database error; doubled for each error in a row
RETRY_MAX = 30.0  # ... up to this


def backoff(failures: int) -> float:
    """The wait after `failures` errors in a row (1 → RETRY_FIRST)."""
    return min(RETRY_MAX, RETRY_FIRST * 2 ** max(0, failures - 1))


def reset_connection() -> None:
    """Drop this thread's database connection after an error: the next query opens a fresh one."""
    try:
        connection.close()
    except Exception as exc:  # a connection that is broken may fail to close: it is dropped all the same
        log.debug("closing the database connection failed: %s", type(exc).__name__)

Publisher = Callable[[str, str, dict[str, Any]], None]
Reader = Callable[[list[Any], str], dict[str, Any]]


def comparable(status: dict[str, Any]) -> dict[str, Any]:
    """The reading without its time: two readings that differ only in `at` are the same state."""
    return {k: v for k, v in status.items() if k != "at"}


def service_changes(status: dict[str, Any], known: dict[str, tuple[str, str]]) -> list[tuple[str, str, str]]:
    """(service, state, owner) for every service of `status` whose state or owner differs from `known`
    ({service: (state, owner)}, the last recorded), including one never recorded. A reading no node answered
    says nothing about services."""
    if status.get("reported_by") is None:
        return []
    changed = []
    for row in status.get("services") or []:
        name = str(row.get("name") or "")
        now = (str(row.get("state_str") or ""), str(row.get("owner") or ""))
        if name and known.get(name) != now:
            changed.append((name, *now))
    return changed


class ClusterWatch:
    """One cluster's subscription: a scheduler thread that starts readings and applies them in order."""

    def __init__(self, cluster_id: int, *, interval: float = INTERVAL, publish: Publisher = live.publish,
                 reader: Reader = read_status, stopping: threading.Event | None = None) -> None:
        self.cluster_id = cluster_id
        self.interval = interval
        self.publish = publish
        self.reader = reader
        self.stopping = stopping or threading.Event()
        self.done = threading.Event()  # set when this cluster alone must stop (it was removed)
        self.thread = threading.Thread(target=self._run, name=f"luci-watch-{cluster_id}", daemon=True)
        self.readings = 0  # readings applied (changed or not)
        self._results: list[tuple[int, dict[str, Any] | None]] = []
        self._results_lock = threading.Lock()
        self._wake = threading.Event()
        self._in_flight = 0
        self._seq = 0
        self._applied_seq = 0
        self._last: dict[str, Any] | None = None
        self._last_saved = 0.0
        self._known: dict[str, tuple[str, str]] | None = None

    # -- the scheduler thread ------------------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self._wake.set()

    def _stopped(self) -> bool:
        return self.stopping.is_set() or self.done.is_set()

    def _run(self) -> None:
        cluster = None
        nodes: list[Any] = []
        loaded = 0.0
        failures = 0
        next_reading = time.monotonic()
        try:
            while not self._stopped():
                try:
                    now = time.monotonic()
                    if cluster is None or now - loaded >= REFRESH:
                        close_old_connections()
                        cluster = Cluster.objects.filter(pk=self.cluster_id).first()
                        if cluster is None:
                            return
                        nodes = list(cluster.nodes.all())
                        loaded = now
                    if now >= next_reading:
                        self._start_reading(nodes, cluster.name)
                        next_reading = max(next_reading + self.interval, now)
                    self._wake.clear()  # before applying: a reading finishing from here on wakes the wait below
                    self._apply_finished(cluster)
                    failures = 0
                except Exception as exc:  # a lost database (or a bug) must neither end the watch nor spin
                    failures += 1
                    wait = backoff(failures)
                    log.warning("watching cluster %s failed (%s: %s); trying again in %g s", self.cluster_id,
                                type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "", wait)
                    reset_connection()
                    cluster = None  # read again, and the next reading saved whatever it says
                    self._last, self._known = None, None
                    self._pause(wait)
                    next_reading = time.monotonic()
                    continue
                self._wake.wait(max(0.0, min(next_reading - time.monotonic(), self.interval)))
        finally:
            reset_connection()

    def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less when the watch is stopped meanwhile."""
        end = time.monotonic() + seconds
        while not self._stopped() and time.monotonic() < end:
            self.stopping.wait(min(0.1, max(0.0, end - time.monotonic())))

    def _start_reading(self, nodes: list[Any], name: str) -> None:
        with self._results_lock:
            if self._in_flight >= MAX_IN_FLIGHT:
                return
            self._in_flight += 1
            self._seq += 1
            seq = self._seq
        # a daemon thread: a reading stuck on a hung node never delays the process' exit
        threading.Thread(target=self._read, args=(seq, nodes, name), name=f"luci-read-{self.cluster_id}",
                         daemon=True).start()

    def _read(self, seq: int, nodes: list[Any], name: str) -> None:
        try:
            status: dict[str, Any] | None = self.reader(nodes, name)
        except Exception as exc:  # read_status reports unreachable nodes itself; this is a bug or a closed client
            log.warning("reading cluster %s failed: %s", name, exc)
            status = None
        with self._results_lock:
            self._in_flight -= 1
            self._results.append((seq, status))
        self._wake.set()

    def _apply_finished(self, cluster: Cluster) -> None:
        with self._results_lock:
            finished, self._results = sorted(self._results, key=lambda r: r[0]), []
        if finished:
            close_old_connections()  # a connection the database closed meanwhile is replaced, not used
        for seq, status in finished:
            if seq <= self._applied_seq or status is None or self._stopped():
                continue  # an older reading than one already applied says nothing new
            self._applied_seq = seq
            self.apply(cluster, status)

    # -- one reading -------------------------------------------------------------------------------------------
    def apply(self, cluster: Cluster, status: dict[str, Any]) -> bool:
        """Save, record and publish `status` if it differs from the last reading; True when it did."""
        self.readings += 1
        at = dt.datetime.fromtimestamp(float(status.get("at") or time.time()), tz=dt.UTC)
        now = time.monotonic()
        if self._last is not None and comparable(status) == self._last:
            if now - self._last_saved >= HEARTBEAT:
                Cluster.objects.filter(pk=cluster.pk).update(status_at=at)
                self._last_saved = now
            return False
        self._last = comparable(status)
        if not Cluster.objects.filter(pk=cluster.pk).update(status=status, status_at=at):
            self.done.set()  # the cluster was removed from luci meanwhile
            return False
        cluster.status, cluster.status_at = status, at
        self._last_saved = now
        self._record_events(cluster, status, at)
        self.publish(live.cluster_group(cluster.pk), "status", {
            "at": status.get("at"), "config_version": status.get("config_version"),
            "quorate": (status.get("quorum") or {}).get("quorate")})
        self.publish(live.OVERVIEW, "status", {})  # no id: every logged-in user listens on the overview
        return True

    def _record_events(self, cluster: Cluster, status: dict[str, Any], at: dt.datetime) -> None:
        if self._known is None:  # what was recorded before this watcher started (a restart records no duplicates)
            self._known = {}
            for event in ServiceEvent.objects.filter(cluster=cluster).order_by("at", "id"):
                self._known[event.service] = (event.state, event.owner)
        changes = service_changes(status, self._known)
        reporter = str(status.get("reported_by") or "")
        ServiceEvent.objects.bulk_create([
            ServiceEvent(cluster=cluster, service=name, state=state, owner=owner, at=at, reported_by=reporter)
            for name, state, owner in changes])
        for name, state, owner in changes:
            self._known[name] = (state, owner)


class Watcher:
    """Every cluster in luci's database watched by its own ClusterWatch; clusters added or removed are picked up
    within REFRESH seconds. `run()` blocks until `stop()` (a signal handler may call it)."""

    def __init__(self, *, interval: float = INTERVAL, publish: Publisher = live.publish,
                 reader: Reader = read_status) -> None:
        self.interval = interval
        self.publish = publish
        self.reader = reader
        self.stopping = threading.Event()
        self.watches: dict[int, ClusterWatch] = {}

    def stop(self) -> None:
        self.stopping.set()
        for watch in list(self.watches.values()):
            watch.stop()

    def sync(self) -> None:
        """Start a ClusterWatch for each new cluster, stop those of removed ones."""
        close_old_connections()
        present = set(Cluster.objects.values_list("pk", flat=True))
        for pk in present - set(self.watches):
            if self.stopping.is_set():
                return
            watch = ClusterWatch(pk, interval=self.interval, publish=self.publish, reader=self.reader,
                                 stopping=self.stopping)
            self.watches[pk] = watch
            watch.start()
        for pk in set(self.watches) - present:
            self.watches.pop(pk).stop()
        for pk, watch in list(self.watches.items()):  # a thread that ended on an error is started again
            if not watch.thread.is_alive() and pk in present:
                self.watches.pop(pk)

    def run(self) -> None:
        failures = 0
        try:
            while not self.stopping.is_set():
                try:
                    self.sync()
                    failures = 0
                except Exception as exc:  # e.g. "database is locked": the clusters being watched go on
                    failures += 1
                    log.warning("reading luci's clusters failed (%s: %s); trying again in %g s",
                                type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "",
                                max(REFRESH, backoff(failures)))
                    reset_connection()
                self.stopping.wait(max(REFRESH, backoff(failures)) if failures else REFRESH)
        finally:
            self.stop()
            self.join(2.0)
            connection.close()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for watch in list(self.watches.values()):
            watch.thread.join(max(0.0, deadline - time.monotonic()))

    def read_once(self) -> int:
        """One reading of every cluster, applied (saved and published when changed); the number of clusters."""
        close_old_connections()
        count = 0
        for cluster in Cluster.objects.all():
            watch = ClusterWatch(cluster.pk, interval=self.interval, publish=self.publish, reader=self.reader)
            watch.apply(cluster, self.reader(list(cluster.nodes.all()), cluster.name))
            count += 1
        return count
