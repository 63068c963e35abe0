"""Websocket consumers: a page subscribes to the overview, one cluster, or one operation; the subscription is
refused unless the session's user may view it. Messages are {"kind": ..., "payload": ...} (luci_web.live.publish)."""
from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from luci_web.access.rights import can
from luci_web.clusters.models import Cluster, Operation
from luci_web.live.publish import OVERVIEW, cluster_group, operation_group


class _Subscription(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def allowed(self) -> str | None:
        """The group to join, or None to refuse."""
        raise NotImplementedError

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        self.group = await self.allowed()
        if self.group is None:
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def live_message(self, event: dict) -> None:
        await self.send_json({"kind": event["kind"], "payload": event["payload"]})


class OverviewConsumer(_Subscription):
    async def allowed(self) -> str | None:
        return OVERVIEW


class ClusterConsumer(_Subscription):
    async def allowed(self) -> str | None:
        pk = self.scope["url_route"]["kwargs"]["pk"]
        user = self.scope["user"]

        def check() -> bool:
            cluster = Cluster.objects.filter(pk=pk).first()
            return cluster is not None and can(user, cluster, "view")

        return cluster_group(pk) if await database_sync_to_async(check)() else None


class OperationConsumer(_Subscription):
    async def allowed(self) -> str | None:
        op_id = self.scope["url_route"]["kwargs"]["op_id"]
        user = self.scope["user"]

        def check() -> bool:
            op = Operation.objects.select_related("cluster").filter(pk=op_id).first()
            if op is None:
                return False
            mine = op.user_id == user.pk or user.is_superuser
            return mine or (op.cluster is not None and can(user, op.cluster, "view"))

        return operation_group(op_id) if await database_sync_to_async(check)() else None
