"""Websocket consumers: a page subscribes to the overview, one cluster, or one operation; the subscription is
refused unless the session's user may view it. Messages are {"kind": ..., "payload": ...} (luci_web.live.publish).

The right is checked again while the socket is open: before a message is delivered, if the last check is older
than RECHECK_SECONDS, the user is read afresh from the database and the rule asked again; when the right is gone
(grant withdrawn, user deactivated or deleted) the message is dropped and the socket closed with 4403."""
from __future__ import annotations

import time
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.contrib.auth import get_user_model

from luci_web.access.rights import can
from luci_web.clusters.models import Cluster, Operation
from luci_web.clusters.operations import may_see
from luci_web.live.publish import OVERVIEW, cluster_group, operation_group

RECHECK_SECONDS = 5.0  # at most one database check per socket in this time, however many messages arrive


class _Subscription(AsyncJsonWebsocketConsumer):
    group: str | None = None
    checked_at: float = 0.0

    def permitted(self, user: Any) -> bool:
        """Whether `user` may follow this stream (runs in a thread: database access allowed)."""
        raise NotImplementedError

    def stream_group(self) -> str:
        raise NotImplementedError

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await database_sync_to_async(self.permitted)(user):
            await self.close(code=4403)
            return
        self.checked_at = time.monotonic()
        self.group = self.stream_group()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self._leave()

    async def _leave(self) -> None:
        if self.group is not None:
            group, self.group = self.group, None
            await self.channel_layer.group_discard(group, self.channel_name)

    def still_permitted(self) -> bool:
        """The rule again, for the user as the database holds them now (not the object loaded at connect)."""
        user_id = self.scope["user"].pk
        user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
        return user is not None and self.permitted(user)

    async def live_message(self, event: dict) -> None:
        if self.group is None:
            return  # closed for a withdrawn right: nothing more is sent
        now = time.monotonic()
        if now - self.checked_at >= RECHECK_SECONDS:
            if not await database_sync_to_async(self.still_permitted)():
                await self._leave()
                await self.close(code=4403)
                return
            self.checked_at = now
        await self.send_json({"kind": event["kind"], "payload": event["payload"]})


class OverviewConsumer(_Subscription):
    def permitted(self, user: Any) -> bool:
        return True  # any signed-in user: the overview's fragments filter by visible_clusters

    def stream_group(self) -> str:
        return OVERVIEW


class ClusterConsumer(_Subscription):
    def permitted(self, user: Any) -> bool:
        cluster = Cluster.objects.filter(pk=self.scope["url_route"]["kwargs"]["pk"]).first()
        return cluster is not None and can(user, cluster, "view")

    def stream_group(self) -> str:
        return cluster_group(self.scope["url_route"]["kwargs"]["pk"])


class OperationConsumer(_Subscription):
    def permitted(self, user: Any) -> bool:
        op = Operation.objects.select_related("cluster").filter(pk=self.scope["url_route"]["kwargs"]["op_id"]).first()
        return op is not None and may_see(user, op)

    def stream_group(self) -> str:
        return operation_group(self.scope["url_route"]["kwargs"]["op_id"])
