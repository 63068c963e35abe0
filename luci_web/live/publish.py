"""Pushing to open pages through the channel layer. Groups: `overview` (every cluster's summary), `cluster-<id>`
(one cluster's status), `operation-<uuid>` (one long operation's progress). Consumers (luci_web.live.consumers)
check the subscriber's rights before joining a group; publishing never blocks on a slow page.

Every logged-in user may listen on `overview`, so what is published there names no cluster (no name, no id):
`overview_changed` sends an empty payload, and the overview fragment the page then fetches filters by rights."""
from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

log = logging.getLogger("luci.live")

OVERVIEW = "overview"


def cluster_group(cluster_id: int) -> str:
    return f"cluster-{cluster_id}"


def operation_group(operation_id: Any) -> str:
    return f"operation-{operation_id}"


def publish(group: str, kind: str, payload: dict[str, Any]) -> None:
    """Send {"type": "live.message", "kind": kind, "payload": payload} to `group`; a failure is logged, never raised
    (a page that misses one message gets the next reading)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, {"type": "live.message", "kind": kind, "payload": payload})
    except Exception as exc:  # the layer's server went away: the page catches up on its next message
        log.warning("publish to %s failed: %s", group, exc)


def overview_changed(kind: str) -> None:
    """Tell the overview pages that something changed (`kind`: "status", "clusters"), without saying what: the
    payload is empty (every logged-in user listens on `overview`)."""
    publish(OVERVIEW, kind, {})
