"""python -m bench.api: the REST API's cluster status on a synthetic 16-node, 1000-service cluster.

The cluster lives only in luci's database (its status as the watcher would have stored it, bench.luci's
synthetic_status; no node is reached), and a user holding only the view right on it asks with an API token.

(a) Server time: GET /api/v1/clusters/<c>/status/ through Django's test client, in process (URL routing, token
    authentication, the rights check, the database read, JSON rendering), once untimed then `--runs` times; p50
    and p95 against the target p50 <= 20 ms (issue 8 §4).
(b) Throughput: the same GET over loopback HTTP/1.1 (keep-alive), `--connections` concurrent clients sending
    `--requests` in all, against ONE server process at a time: daphne, and uvicorn when it is installed. Each
    server is started on a free 127.0.0.1 port and stopped at the end; a run is bounded by `--timeout` seconds.
    The clients run in this process (asyncio), on the same 2 cores as the server.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.__main__ import machine
from bench.luci import percentile, synthetic_status

TARGET_P50 = 0.020
CLUSTER = "big"
READY_TIMEOUT = 30.0  # seconds for a server to answer its first status GET
SERVERS = {
    "daphne": ["-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "-v", "0", "luci_web.asgi:application"],
    "uvicorn": ["-m", "uvicorn", "--host", "127.0.0.1", "--port", "{port}", "--workers", "1", "--no-access-log",
                "--log-level", "warning", "luci_web.asgi:application"],
}


# -- the database --------------------------------------------------------------------------------------------
def prepare(tmp: Path, nodes: int, services: int) -> str:
    """A fresh luci database in `tmp` with the synthetic cluster and a view-only user; returns that user's token.
    The environment is set for this process and the servers it starts."""
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/luci.sqlite3"
    os.environ["LUCI_HOME"] = str(tmp / "home")
    os.environ.pop("REDIS_URL", None)
    os.environ["ALLOWED_HOSTS"] = "testserver,127.0.0.1"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "luci_web.settings")
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from luci_web.access.rights import set_cluster_rights
    from luci_web.api import tokens
    from luci_web.clusters.models import Cluster

    call_command("migrate", verbosity=0)
    cluster = Cluster.objects.create(name=CLUSTER, status=synthetic_status(nodes, services), status_at=timezone.now())
    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    set_cluster_rights(user, cluster, {"view"})
    return tokens.issue(user, "bench")[1]


def status_path() -> str:
    from django.urls import reverse

    return reverse("api:cluster_status", args=[CLUSTER])


# -- (a) server time, in process -----------------------------------------------------------------------------
def server_time(token: str, runs: int) -> dict:
    from django.test import Client

    client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    url = status_path()
    first = client.get(url)
    if first.status_code != 200:
        raise SystemExit(f"bench.api: GET {url} answered {first.status_code}: {first.content[:200]!r}")
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        times.append(time.perf_counter() - started)
        assert response.status_code == 200
    return {"p50_s": statistics.median(times), "p95_s": percentile(times, 95), "runs": runs,
            "bytes": len(first.content)}


# -- (b) throughput over loopback ----------------------------------------------------------------------------
@dataclass(slots=True)
class Load:
    done: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0
    first_error: str = ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, int]:
    """One HTTP/1.1 response: (status, body length); Content-Length or chunked bodies."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
        return status, len(body)
    total = 0
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            total += size
            if size == 0:
                return status, total
    raise ValueError("a response without Content-Length nor chunked encoding")


async def client(port: int, request: bytes, load: Load, budget: list[int], deadline: float) -> None:
    """One keep-alive connection sending requests until the shared budget is spent or the deadline passes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while budget[0] > 0 and time.monotonic() < deadline:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(request)
            await writer.drain()
            status, _ = await asyncio.wait_for(read_response(reader), max(0.1, deadline - time.monotonic()))
            if status == 200:
                load.done += 1
                load.latencies.append(time.perf_counter() - started)
            else:
                load.errors += 1
                load.first_error = load.first_error or f"HTTP {status}"
    except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        load.errors += 1
        load.first_error = load.first_error or f"{type(exc).__name__}: {exc}"
    finally:
        writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await writer.wait_closed()


async def drive(port: int, request: bytes, connections: int, requests: int, timeout: float) -> Load:
    load = Load()
    # warm-up: one request per connection, untimed
    warm = Load()
    await asyncio.gather(*(client(port, request, warm, [1], time.monotonic() + timeout) for _ in range(connections)))
    budget = [requests]
    started = time.perf_counter()
    deadline = time.monotonic() + timeout
    await asyncio.gather(*(client(port, request, load, budget, deadline) for _ in range(connections)))
    load.seconds = time.perf_counter() - started
    return load


def wait_ready(port: int, request: bytes, process: subprocess.Popen, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(request.replace(b"keep-alive", b"close"))
            if sock.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.2)
    raise RuntimeError(f"no answer on port {port} within {timeout:.0f} s")


def throughput(server: str, token: str, connections: int, requests: int, timeout: float, logs: Path) -> dict:
    port = free_port()
    request = (f"GET {status_path()} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
               "Accept: application/json\r\nConnection: keep-alive\r\n\r\n").encode()
    argv = [sys.executable] + [a.format(port=port) for a in SERVERS[server]]
    log = (logs / f"{server}.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               cwd=Path(__file__).resolve().parents[1])
    try:
        wait_ready(port, request, process)
        load = asyncio.run(drive(port, request, connections, requests, timeout))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        log.close()
    figures = {"connections": connections, "requests": requests, "completed": load.done, "errors": load.errors,
               "seconds": load.seconds, "requests_per_s": load.done / load.seconds if load.seconds else 0.0}
    if load.latencies:
        figures |= {"latency_p50_s": statistics.median(load.latencies),
                    "latency_p95_s": percentile(load.latencies, 95)}
    if load.first_error:
        figures["first_error"] = load.first_error
    return figures


# -- the program ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="timed in-process GETs (default 200)")
    parser.add_argument("--size", default="16x1000", help="nodes x services (default 16x1000)")
    parser.add_argument("--servers", default="daphne,uvicorn", help="servers for the throughput runs (default "
                        "daphne,uvicorn; uvicorn is skipped when not installed; 'none' for no run)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections (default 16)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per server run (default 1000)")
    parser.add_argument("--timeout", type=float, default=120.0, help="bound of each server run, s (default 120)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    nodes, services = (int(x) for x in args.size.split("x"))
    info = machine()
    print("Machine: " + "; ".join(f"{k}: {v}" for k, v in info))
    figures: dict = {"machine": dict(info), "size": args.size, "server_time": {}, "throughput": {}}
    with tempfile.TemporaryDirectory(prefix="bench-api-") as tmp:
        token = prepare(Path(tmp), nodes, services)
        timing = figures["server_time"] = server_time(token, args.runs)
        verdict = "ok" if timing["p50_s"] <= TARGET_P50 else "OVER"
        print(f"\nGET {status_path()} ({nodes} nodes, {services} services, {timing['bytes'] // 1024} KiB JSON), "
              f"server time in process, {args.runs} runs:")
        print(f"  p50 {timing['p50_s'] * 1000:.1f} ms, p95 {timing['p95_s'] * 1000:.1f} ms; "
              f"target p50 <= {TARGET_P50 * 1000:.0f} ms: {verdict}")
        wanted = [s for s in args.servers.split(",") if s and s != "none"]
        if wanted:
            print(f"\nThroughput: {args.connections} keep-alive connections on 127.0.0.1, {args.requests} requests, "
                  "one server process")
            print(f"  {'server':<10} {'req/s':>8} {'done':>6} {'errors':>6} {'latency p50':>12} {'p95':>9}")
        for server in wanted:
            if server not in SERVERS:
                print(f"  {server:<10} n/a (unknown server; known: {', '.join(SERVERS)})")
                continue
            if importlib.util.find_spec(server) is None:
                print(f"  {server:<10} n/a (missing: pip install {server})")
                continue
            try:
                run = throughput(server, token, args.connections, args.requests, args.timeout, Path(tmp))
            except RuntimeError as exc:
                print(f"  {server:<10} failed: {exc}")
                continue
            figures["throughput"][server] = run
            latency = (f"{run['latency_p50_s'] * 1000:>9.0f} ms {run['latency_p95_s'] * 1000:>6.0f} ms"
                       if "latency_p50_s" in run else "")
            print(f"  {server:<10} {run['requests_per_s']:>8.1f} {run['completed']:>6} {run['errors']:>6} {latency}"
                  + (f"  ({run['first_error']})" if run.get("first_error") else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
