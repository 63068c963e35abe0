"""`manage.py luci_watch [--interval SECONDS] [--once]`: the status watcher (luci_web.live.watcher).

Polls every cluster in luci's database through ricci every --interval seconds (default 0.25; 0.05..1), saves what
changed and pushes it to the open pages. SIGTERM or SIGINT stops it within 2 s. --once reads every cluster once,
saves and publishes the readings, and exits. A bad option prints one line `luci_watch: <message>` and exits 2.
"""
from __future__ import annotations

import signal
import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from luci_web.clusters import gateway
from luci_web.live.watcher import INTERVAL, Watcher

PROG = "luci_watch"
MIN_INTERVAL, MAX_INTERVAL = 0.05, 1.0


class Command(BaseCommand):
    help = "Watch every cluster's status through ricci and push changes to the open console pages"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=INTERVAL,
                            help=f"seconds between readings of one cluster (default {INTERVAL}; "
                                 f"{MIN_INTERVAL}..{MAX_INTERVAL})")
        parser.add_argument("--once", action="store_true", help="read every cluster once, save, publish, exit")

    def handle(self, *args: Any, **options: Any) -> None:
        interval = options["interval"]
        if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
            sys.stderr.write(f"{PROG}: --interval must be between {MIN_INTERVAL} and {MAX_INTERVAL} seconds, "
                             f"not {interval:g}\n")
            sys.exit(2)
        watcher = Watcher(interval=interval)
        try:
            if options["once"]:
                started = time.monotonic()
                count = watcher.read_once()
                self.stdout.write(f"{PROG}: read {count} cluster(s) in {time.monotonic() - started:.2f} s")
                return
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: watcher.stop())
            self.stdout.write(f"{PROG}: watching every cluster every {interval:g} s")
            self.stdout.flush()
            watcher.run()
        finally:
            gateway.reset()  # readings still waiting on a hung node fail now instead of delaying the exit
