"""Websocket routes (luci_web.live.consumers)."""
from django.urls import path

from luci_web.live import consumers

websocket_urlpatterns = [
    path("ws/overview/", consumers.OverviewConsumer.as_asgi()),
    path("ws/clusters/<int:pk>/", consumers.ClusterConsumer.as_asgi()),
    path("ws/operations/<uuid:op_id>/", consumers.OperationConsumer.as_asgi()),
]
