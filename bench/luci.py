"""python -m bench.luci: the console's dashboard server time on a synthetic 16-node, 1000-service cluster.

The cluster lives only in luci's database (its status as the watcher would have stored it; no node is reached),
so the figures are the server's own work: URL routing, the rights check, the database read and the template
rendering, through Django's test client (in process, no network). Each page is fetched once untimed, then
`--runs` times; p50 and p95 are printed with the target (p95 <= 50 ms, issue 7 §6).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import machine

TARGET_P95 = 0.050


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))]


def synthetic_status(nodes: int, services: int) -> dict:
    names = [f"node{i}" for i in range(1, nodes + 1)]
    members = [{"name": n, "nodeid": i, "online": True, "local": i == 1, "rgmanager": True, "master": i == 1,
                "estranged": False, "qdisk": False, "agent": True, "state": "online", "config_version": 7,
                "message": ""} for i, n in enumerate(names, 1)]
    rows = []
    for i in range(services):
        state = "started" if i % 50 else "failed"
        rows.append({"name": f"service:svc{i:04d}", "state": 112 if state == "started" else 119,
                     "state_str": state, "flags": 0, "flags_str": "", "owner": names[i % nodes],
                     "last_owner": names[(i + 1) % nodes], "restarts": i % 3, "last_transition": None})
    return {"cluster": {"name": "big", "id": 4242, "generation": 16001}, "quorum": {"quorate": True,
            "groupmember": True}, "rgmanager": "running", "members": members, "services": rows,
            "reported_by": "node1", "at": time.time(), "config_version": 7, "drift": False, "edited_locally": [],
            "unreachable": [], "message": ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.luci", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="timed fetches per page (default 200)")
    parser.add_argument("--size", default="16x1000", help="nodes x services (default 16x1000)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    nodes, services = (int(x) for x in args.size.split("x"))
    info = machine()
    print("Machine: " + "; ".join(f"{k}: {v}" for k, v in info))
    figures: dict = {"machine": dict(info), "pages": {}}
    with tempfile.TemporaryDirectory(prefix="bench-luci-") as tmp:
        os.environ["DATABASE_URL"] = f"sqlite:///{tmp}/luci.sqlite3"
        os.environ["LUCI_HOME"] = str(Path(tmp) / "home")
        os.environ.pop("REDIS_URL", None)
        os.environ["ALLOWED_HOSTS"] = "testserver"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "luci_web.settings")
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client
        from django.urls import NoReverseMatch, reverse
        from django.utils import timezone

        from luci_web.clusters.models import Cluster

        call_command("migrate", verbosity=0)
        admin = get_user_model().objects.create_superuser("bench", password="bench-password-1")
        cluster = Cluster.objects.create(name="big", status=synthetic_status(nodes, services), status_at=timezone.now())
        client = Client()
        client.force_login(admin)
        pages = [("overview", ()), ("overview_fragment", ()), ("cluster_head", (cluster.pk,)),
                 ("services", (cluster.pk,)), ("services_fragment", (cluster.pk,)), ("nodes_fragment", (cluster.pk,))]
        for name, pargs in pages:
            try:
                url = reverse(f"console:{name}", args=pargs)
            except NoReverseMatch:
                print(f"{name}: n/a (no such page)")
                continue
            first = client.get(url)
            if first.status_code != 200:
                print(f"{name}: n/a (HTTP {first.status_code})")
                continue
            times = []
            for _ in range(args.runs):
                started = time.perf_counter()
                response = client.get(url)
                times.append(time.perf_counter() - started)
                assert response.status_code == 200
            p50, p95 = statistics.median(times), percentile(times, 95)
            figures["pages"][name] = {"p50_s": p50, "p95_s": p95, "bytes": len(first.content)}
            print(f"{name} ({url}, {len(first.content) // 1024} KiB): p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms;"
                  f" target p95 <= {TARGET_P95 * 1000:.0f} ms: {'ok' if p95 <= TARGET_P95 else 'OVER'}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
